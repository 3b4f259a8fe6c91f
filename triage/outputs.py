"""Files written by ``telerad analyze --out DIR``: maps and RAPID-style PNG summaries.

Layout of ``DIR``::

    result.json                 the --json object
    maps.npz                    every map (Z, Y, X) plus ``affine`` (LPS) and ``spacing_mm``
    nifti/<map>.nii.gz          the same maps as NIfTI (RAS affine, float32 or uint8 masks)
    slices/slice_<zzz>.png      one overlay per slice: grey baseline, core magenta, Tmax > 6 s green
    summary.png                 one page: title, volumes, verdicts, warnings and a slice montage

Every PNG carries the volumes, the algorithm name and version, the quality
warnings and the disclaimer "Automated result — not a diagnosis".
Images are shown in radiological convention for axial acquisitions (the
patient's right on the viewer's left, anterior up) and labelled R/L.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from triage.report import DISCLAIMER, eligibility_line, headline, warning_lines
from triage.result import TriageResult
from triage.series import PerfusionSeries

__all__ = ["CORE_RGB", "TMAX6_RGB", "baseline_image", "render_slice", "render_summary", "write_outputs"]

CORE_RGB = (255, 0, 255)  # magenta
TMAX6_RGB = (0, 220, 0)  # green
_WINDOW = (0.0, 80.0)  # brain window, HU
_TEXT = (235, 235, 235)
_DIM = (170, 170, 170)
_WARN = (255, 200, 60)
_TRIALS = (("defuse3", "DEFUSE 3"), ("extend_ia", "EXTEND-IA"))


_FONT_FILES = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_FONTS: dict[int, ImageFont.ImageFont] = {}


def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans when installed (it has the em dash), else Pillow's default font."""
    if size not in _FONTS:
        font = None
        for name in _FONT_FILES:
            try:
                font = ImageFont.truetype(name, size)
                break
            except OSError:
                continue
        if font is None:
            try:
                font = ImageFont.load_default(size=size)
            except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
                font = ImageFont.load_default()
        _FONTS[size] = font
    return _FONTS[size]


def _printable(text: str, font) -> str:
    """Replace characters a fallback font would draw as boxes."""
    if "DejaVu" in str(getattr(font, "path", "")):
        return text
    return text.replace("\u2014", "-").replace("\u2265", ">=").replace("\u2264", "<=")


def baseline_image(series: PerfusionSeries, n_frames: int = 3) -> np.ndarray:
    """Mean of the first ``n_frames`` frames (before contrast): (Z, Y, X) float32 HU."""
    return series.hu[: max(1, min(n_frames, series.hu.shape[0]))].mean(axis=0, dtype=np.float32)


def _overlay(base: np.ndarray, core: np.ndarray | None, tmax6: np.ndarray | None) -> np.ndarray:
    """(Y, X) HU + masks -> (Y, X, 3) uint8: windowed grey, Tmax>6 s green, core magenta on top."""
    lo, hi = _WINDOW
    grey = np.clip((base - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for mask, colour, alpha in ((tmax6, TMAX6_RGB, 0.5), (core, CORE_RGB, 0.7)):
        if mask is not None and mask.any():
            rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour, np.float32)
    return rgb.astype(np.uint8)


def _side_labels(affine: np.ndarray) -> tuple[str, str]:
    """Letters for the left and right image edges from the x axis of a voxel->LPS affine."""
    x_dir = affine[:3, 0]
    if abs(x_dir[0]) < 0.5 * np.linalg.norm(x_dir):
        return "", ""
    return ("R", "L") if x_dir[0] > 0 else ("L", "R")


def _tile(rgb: np.ndarray, size: int, spacing_yx: tuple[float, float]) -> Image.Image:
    """Resize keeping the physical aspect ratio; the longer side becomes ``size`` pixels."""
    ny, nx = rgb.shape[:2]
    h_mm, w_mm = ny * spacing_yx[0], nx * spacing_yx[1]
    scale = size / max(h_mm, w_mm)
    img = Image.fromarray(rgb, "RGB").resize((max(1, round(w_mm * scale)), max(1, round(h_mm * scale))),
                                            Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return canvas


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int, font) -> None:
    for colour, label in ((CORE_RGB, "core (rCBF < 30%)"), (TMAX6_RGB, "Tmax > 6 s")):
        draw.rectangle((x, y + 3, x + 14, y + 15), fill=colour)
        draw.text((x + 20, y), label, fill=_TEXT, font=font)
        x += 30 + int(draw.textlength(label, font=font))


def _wrap(text: str, width_px: int, draw: ImageDraw.ImageDraw, font) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width_px or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    return lines + ([line] if line else [])


def _text_block(lines: list[tuple[str, tuple, int]], width: int) -> Image.Image:
    """Render (text, colour, font size) lines, wrapped, on a black band ``width`` wide."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rendered: list[tuple[str, tuple, ImageFont.ImageFont, int]] = []
    for text, colour, size in lines:
        font = _font(size)
        for part in _wrap(_printable(text, font), width - 16, probe, font) or [""]:
            rendered.append((part, colour, font, size + 5))
    band = Image.new("RGB", (width, 10 + sum(r[3] for r in rendered)), (0, 0, 0))
    draw = ImageDraw.Draw(band)
    y = 5
    for text, colour, font, step in rendered:
        draw.text((8, y), text, fill=colour, font=font)
        y += step
    return band


def _info_lines(d: dict, *, full: bool) -> list[tuple[str, tuple, int]]:
    algo = d.get("algorithm") or {}
    quality = d.get("quality") or {}
    ok = d.get("status") == "ok"
    lines = [(headline(d), _TEXT if ok else _WARN, 16)]
    if ok and full:
        lines.append((f"Tmax>10s {d.get('tmax10_ml', 0):.1f} mL | side: {d.get('affected_side') or 'none found'} | "
                      f"{'reliable' if quality.get('reliable') else 'NOT RELIABLE'}", _TEXT, 14))
        elig = d.get("eligibility") or {}
        lines += [(eligibility_line(k, label, elig.get(k) or {}), _TEXT, 13) for k, label in _TRIALS]
    warns = warning_lines(d)
    shown = warns if full else warns[:3]
    lines += [(w, _WARN, 13) for w in shown]
    if len(warns) > len(shown):
        lines.append((f"... {len(warns) - len(shown)} more warnings in result.json", _WARN, 13))
    lines.append((f"{algo.get('name', '?')} {algo.get('version', '?')}"
                  + (f" ({algo['backend']})" if algo.get("backend") else ""), _DIM, 12))
    lines.append((DISCLAIMER, _WARN, 14))
    return lines


def render_slice(d: dict, base: np.ndarray, core: np.ndarray | None, tmax6: np.ndarray | None, *,
                 affine: np.ndarray, spacing_yx: tuple[float, float], title: str, size: int = 512) -> Image.Image:
    """One slice: base (Y, X) HU, masks (Y, X) bool or None, and the result text. Returns an RGB image."""
    tile = _tile(_overlay(base, core, tmax6), size, spacing_yx)
    draw = ImageDraw.Draw(tile)
    font = _font(16)
    left, right = _side_labels(affine)
    draw.text((6, size // 2 - 8), left, fill=_TEXT, font=font)
    draw.text((size - 18, size // 2 - 8), right, fill=_TEXT, font=font)
    draw.text((6, 4), title, fill=_TEXT, font=font)
    band = _text_block(_info_lines(d, full=False), size)
    legend = Image.new("RGB", (size, 24), (0, 0, 0))
    _legend(ImageDraw.Draw(legend), 8, 3, _font(13))
    page = Image.new("RGB", (size, tile.height + legend.height + band.height), (0, 0, 0))
    page.paste(tile, (0, 0))
    page.paste(legend, (0, tile.height))
    page.paste(band, (0, tile.height + legend.height))
    return page


def _slice_title(series: PerfusionSeries, z: int) -> str:
    pos = series.affine[:3, 3] + z * series.affine[:3, 2]
    return f"slice {z + 1}/{series.hu.shape[1]}  z={pos[2]:.1f} mm"


def render_summary(result: TriageResult, series: PerfusionSeries, *, base: np.ndarray | None = None,
                   max_tiles: int = 12, tile: int = 256, columns: int = 4) -> Image.Image:
    """The one-page summary: title, volumes, verdicts, warnings, then a montage of slices."""
    d = result.to_json_dict()
    base = baseline_image(series) if base is None else base
    nz = base.shape[0]
    picks = np.unique(np.linspace(0, nz - 1, min(nz, max_tiles)).round().astype(int))
    rows = -(-len(picks) // columns)
    width = tile * columns
    spacing_yx = (float(series.spacing_mm[1]), float(series.spacing_mm[2]))
    montage = Image.new("RGB", (width, rows * tile), (0, 0, 0))
    draw = ImageDraw.Draw(montage)
    font = _font(13)
    left, right = _side_labels(series.affine)
    for i, z in enumerate(picks):
        rgb = _overlay(base[z], _mask(result, "core", z), _mask(result, "tmax6", z))
        x, y = (i % columns) * tile, (i // columns) * tile
        montage.paste(_tile(rgb, tile, spacing_yx), (x, y))
        draw.text((x + 4, y + 2), f"{z + 1}", fill=_TEXT, font=font)
        draw.text((x + 4, y + tile // 2 - 7), left, fill=_DIM, font=font)
        draw.text((x + tile - 14, y + tile // 2 - 7), right, fill=_DIM, font=font)
    title = [("CT perfusion \u2014 automated stroke triage", _TEXT, 22),
             (f"Study {d.get('study_instance_uid') or '-'}", _DIM, 12)]
    header = _text_block(title + _info_lines(d, full=True), width)
    legend = Image.new("RGB", (width, 24), (0, 0, 0))
    _legend(ImageDraw.Draw(legend), 8, 3, _font(13))
    page = Image.new("RGB", (width, header.height + legend.height + montage.height), (0, 0, 0))
    page.paste(header, (0, 0))
    page.paste(legend, (0, header.height))
    page.paste(montage, (0, header.height + legend.height))
    return page


def _mask(result: TriageResult, name: str, z: int) -> np.ndarray | None:
    m = result.maps.get(name)
    return None if m is None else np.asarray(m[z], dtype=bool)


def _write_nifti(path: Path, data: np.ndarray, affine_lps: np.ndarray) -> None:
    import nibabel as nib

    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    arr = data.astype(np.uint8) if data.dtype == bool else data.astype(np.float32, copy=False)
    img = nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), ras)  # (Z, Y, X) -> (x, y, z)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))


def write_outputs(result: TriageResult, series: PerfusionSeries, out_dir: str | os.PathLike[str], *,
                  nifti: bool = True, pngs: bool = True) -> list[Path]:
    """Write result.json, maps (npz, NIfTI), per-slice PNGs and summary.png; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    doc = result.to_json_dict()
    (out / "result.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    written.append(out / "result.json")
    if result.maps:
        np.savez(out / "maps.npz", affine=series.affine, spacing_mm=np.asarray(series.spacing_mm),
                 **{k: np.asarray(v) for k, v in result.maps.items()})
        written.append(out / "maps.npz")
        if nifti:
            (out / "nifti").mkdir(exist_ok=True)
            for name, data in result.maps.items():
                path = out / "nifti" / f"{name}.nii.gz"
                _write_nifti(path, np.asarray(data), series.affine)
                written.append(path)
    if pngs:
        base = baseline_image(series)
        (out / "slices").mkdir(exist_ok=True)
        spacing_yx = (float(series.spacing_mm[1]), float(series.spacing_mm[2]))
        for z in range(base.shape[0]):
            img = render_slice(doc, base[z], _mask(result, "core", z), _mask(result, "tmax6", z),
                               affine=series.affine, spacing_yx=spacing_yx, title=_slice_title(series, z))
            path = out / "slices" / f"slice_{z + 1:03d}.png"
            img.save(path, optimize=False)
            written.append(path)
        render_summary(result, series, base=base).save(out / "summary.png")
        written.append(out / "summary.png")
    return written
