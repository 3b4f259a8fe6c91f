"""Fetch the prebuilt OHIF Viewer from the npm registry into ``viewer/ohif_dist/`` (``make viewer``).

``npm pack @ohif/app@VERSION`` downloads the package (about 50 MB); only its built
``dist/`` is kept, without the ONNX runtime (``dist/ort``, about 150 MB, for AI tools we
do not offer), the microscopy viewer and source maps (about 49 MB remain). The build
expects to live at ``/``; it is rebased on :data:`PREFIX` (``window.PUBLIC_URL``, the
links in ``index.html`` and webpack's public path in the bundles). ``app-config.js`` is
not taken from the package: :mod:`viewer.ohif` serves one that points at ``/dicomweb``. Large
text and wasm files get a gzipped copy (``name.gz``) for browsers that accept it.

Two null checks are added to the DICOM SR extension (:data:`SR_FIXES`). Without them OHIF 3.13.2
fails with "Something went wrong" when a radiologist opens a TID 1500 report whose measurement
groups have no spatial coordinates, which is the case for telerad's own triage SR (volumes only):

- ``measurement.coords[0]`` is undefined for such a group;
- ``getUIDsFromImageID`` returns nothing for the SEG's display set, which OHIF then searches for
  the group's image.

The fixed bundle is marked ``VERSION+telerad.N`` (:data:`LOCAL_PATCH`), so an unpatched copy is
fetched again.

Run ``python -m viewer.ohif_fetch [--force]``; it exits 1 with the reason when npm is
missing or the download fails, and leaves any earlier copy in place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
DIST = Path(__file__).with_name("ohif_dist")
PREFIX = "/ohif/"
MARKER = ".telerad-ohif-version"
PRUNE_DIRS = ("ort/", "dicom-microscopy-viewer/")
PRUNE_FILES = ("app-config.js", "_redirects", "_headers", "serve.json", "google.js")
PUBLIC_PATH = b'__webpack_require__.p = "/";'
GZIP_SUFFIXES = {".js", ".css", ".wasm", ".html", ".json", ".svg"}
LOCAL_PATCH = "telerad.1"  # bump when SR_FIXES change: installed copies are fetched and patched again
#: (unpatched text, patched text) in the DICOM SR extension's bundle of OHIF_VERSION
SR_FIXES = (
    (b"const referencedSOPSequence = measurement.coords[0].ReferencedSOPSequence;",
     b"const referencedSOPSequence = measurement.coords[0]?.ReferencedSOPSequence;"),
    (b"} = metadataProvider.getUIDsFromImageID(imageId);\n    const key = `${SOPInstanceUID}:${frameNumber || 1}`;",
     b"} = metadataProvider.getUIDsFromImageID(imageId) || {};\n    const key = `${SOPInstanceUID}:${frameNumber || 1}`;"),
)
GZIP_MIN_BYTES = 4096


class FetchError(RuntimeError):
    pass


def installed(dest: Path = DIST) -> str | None:
    """The OHIF version installed at ``dest``, or None."""
    try:
        if (dest / "index.html").is_file():
            return (dest / MARKER).read_text().strip() or None
    except OSError:
        pass
    return None


def _keep(name: str) -> str | None:
    """The path under dist/ of a tarball member to keep, or None."""
    if not name.startswith("package/dist/"):
        return None
    rel = name[len("package/dist/"):]
    if not rel or rel.endswith(".map") or rel.startswith(PRUNE_DIRS) or rel in PRUNE_FILES:
        return None
    if ".." in Path(rel).parts or rel.startswith("/"):
        return None
    return rel


def _patch_bundles(root: Path, pairs) -> list[int]:
    """Replace each (old, new) bytes pair in the JavaScript bundles under ``root``, reading and writing each bundle
    once; returns, per pair, how many bundles held ``old``."""
    counts = [0] * len(pairs)
    for js in root.glob("*.js"):
        data = fixed = js.read_bytes()
        for i, (old, new) in enumerate(pairs):
            if old in fixed:
                fixed = fixed.replace(old, new)
                counts[i] += 1
        if fixed is not data:
            js.write_bytes(fixed)
    return counts


def _rebase(root: Path) -> None:
    """Move the build from ``/`` to :data:`PREFIX`, and add :data:`SR_FIXES` (one pass over the bundles)."""
    index = root / "index.html"
    html = index.read_text(encoding="utf-8")
    html = html.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PREFIX}"')
    html = html.replace('href="/', f'href="{PREFIX}').replace('src="/', f'src="{PREFIX}')
    index.write_text(html, encoding="utf-8")
    public, *fixes = _patch_bundles(root, ((PUBLIC_PATH, f'__webpack_require__.p = "{PREFIX}";'.encode()), *SR_FIXES))
    for css in root.glob("*.css"):
        text = css.read_text(encoding="utf-8")
        if "url(/" in text:
            css.write_text(text.replace("url(/", f"url({PREFIX}"), encoding="utf-8")
    if not public:
        raise FetchError(f"no bundle of {OHIF_PACKAGE}@{OHIF_VERSION} sets webpack's public path; cannot serve it at {PREFIX}")
    if sum(fixes) != len(SR_FIXES):  # another build of OHIF: it runs, but a report without coordinates may not open
        print(f"make viewer: {sum(fixes)} of the {len(SR_FIXES)} fixes of the DICOM SR viewer applied to "
              f"{OHIF_PACKAGE}@{OHIF_VERSION}", file=sys.stderr)


def install_id(version: str = OHIF_VERSION) -> str:
    """What the marker of a copy of ``version`` with this module's fixes says."""
    return f"{version}+{LOCAL_PATCH}"


def _precompress(root: Path) -> None:
    """``name.gz`` next to each large text or wasm file, served to browsers that accept gzip
    (the 17 MB app bundle is about 4 MB gzipped: a modest PC on a slow link waits far less)."""
    import gzip

    for f in root.rglob("*"):
        if f.is_file() and f.suffix in GZIP_SUFFIXES and f.stat().st_size >= GZIP_MIN_BYTES:
            with open(f, "rb") as src, gzip.open(f.with_name(f.name + ".gz"), "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)


def fetch(dest: Path = DIST, *, version: str = OHIF_VERSION, force: bool = False, npm: str = "npm") -> Path:
    """Download, prune and rebase OHIF into ``dest`` (atomically replacing an older copy)."""
    if not force and installed(dest) == install_id(version):
        return dest
    if shutil.which(npm) is None:
        raise FetchError("npm is not installed; install Node.js and npm (Debian: apt-get install npm), then run 'make viewer'")
    with tempfile.TemporaryDirectory(prefix="ohif-") as tmp:
        try:
            out = subprocess.run([npm, "pack", f"{OHIF_PACKAGE}@{version}", "--silent"], cwd=tmp, capture_output=True,
                                 text=True, timeout=600, env={**os.environ, "npm_config_update_notifier": "false"})
        except subprocess.TimeoutExpired:
            raise FetchError(f"npm pack {OHIF_PACKAGE}@{version} took more than 600 s") from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if out.returncode != 0 or not tarballs:
            raise FetchError(f"npm pack {OHIF_PACKAGE}@{version} failed: {(out.stderr or out.stdout).strip()[-500:]}")
        staging = dest.with_name(dest.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for member in tar.getmembers():
                rel = _keep(member.name)
                if rel is None or not member.isfile():
                    continue
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    if not (staging / "index.html").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"{OHIF_PACKAGE}@{version} has no dist/index.html; is it a prebuilt package?")
    _rebase(staging)
    _precompress(staging)
    (staging / MARKER).write_text(install_id(version) + "\n")
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m viewer.ohif_fetch", description="Fetch the OHIF Viewer from npm.")
    p.add_argument("--force", action="store_true", help="download again even when this version is installed")
    p.add_argument("--dest", type=Path, default=DIST, help=f"where to put it (default {DIST})")
    args = p.parse_args(argv)
    try:
        path = fetch(args.dest, force=args.force)
    except FetchError as exc:
        print(f"make viewer: {exc}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"OHIF Viewer {installed(path)} in {path} ({size / 1e6:.0f} MB), served at {PREFIX}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
