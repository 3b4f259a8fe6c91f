"""A minimal PDF 1.4 writer for report text: Helvetica, A4, wrapped lines, several pages.

Hand-built (no dependency): a catalog, a page tree, one content stream per page, and the
built-in Helvetica font with WinAnsi encoding (characters outside Latin-1 become '?').
"""

from __future__ import annotations

import textwrap

WIDTH, HEIGHT, MARGIN, SIZE, LEADING = 595, 842, 56, 10.5, 14
CHARS_PER_LINE = 92


def _escape(text: str) -> str:
    text = text.encode("latin-1", "replace").decode("latin-1")
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _lines(title: str, body: str) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = [(title, True), ("", False)]
    for para in body.replace("\r\n", "\n").split("\n"):
        bold = para.strip().endswith(":") and para.strip()[:-1].isupper()
        wrapped = textwrap.wrap(para, CHARS_PER_LINE) or [""]
        out += [(w, bold) for w in wrapped]
    return out


def report_pdf(title: str, body: str, footer: str) -> bytes:
    """The PDF bytes of a report: ``title`` in bold, ``body`` wrapped, ``footer`` on every page."""
    per_page = int((HEIGHT - 2 * MARGIN - 2 * LEADING) / LEADING)
    lines = _lines(title, body)
    pages = [lines[i:i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    objects: list[bytes] = []

    def add(obj: bytes) -> int:
        objects.append(obj)
        return len(objects)

    catalog = add(b"")  # filled in below
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    bold = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
    kids = []
    for n, page in enumerate(pages, 1):
        ops = ["BT", f"{MARGIN} {HEIGHT - MARGIN} Td", f"{LEADING} TL"]
        for text, is_bold in page:
            ops.append(f"/{'F2' if is_bold else 'F1'} {SIZE} Tf ({_escape(text)}) Tj T*")
        ops += ["ET", "BT", f"/F1 8 Tf {MARGIN} {MARGIN - 20} Td ({_escape(f'{footer}  -  page {n} of {len(pages)}')}) Tj",
                "ET"]
        stream = "\n".join(ops).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {WIDTH} {HEIGHT}] "
                        f"/Resources << /Font << /F1 {font} 0 R /F2 {bold} 0 R >> >> /Contents {content} 0 R >>".encode()))
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {tree} 0 R >>".encode()
    objects[tree - 1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
