"""Import direction: no module imports a module of a higher layer (docs/architecture.md).

Every module of the top-level packages is parsed with ``ast`` (imports inside functions and under
``TYPE_CHECKING`` count too: a lazy import is still an arrow) and mapped to its layer; an import of a
module in a higher layer is an upward arrow, and the test fails on any.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("telerad", "models", "triage", "pacs_gateway", "stroke", "viewer", "sample_dicom")

# bottom -> top. A module's layer is the one of its longest matching prefix.
LAYERS: dict[str, int] = {
    # 0 common: imports nothing of ours but itself
    "telerad": 0, "telerad.clock": 0, "telerad.errors": 0, "telerad.validators": 0, "telerad.logctx": 0,
    "telerad.secretbox": 0, "telerad.cliutil": 0, "telerad.dicom_header": 0,
    "models": 1,
    "triage": 2,
    "pacs_gateway": 3,
    "stroke": 4,
    "viewer": 5,
    # 6 demo data: imported only by the composition root and the command lines
    "sample_dicom": 6,
    # 7 composition root and entry points: settings assembly, the app builder, every command line
    "telerad.settings": 7, "telerad.app": 7, "telerad.cli": 7,
}
ROOT_LAYER = 7


def layer_of(module: str) -> int:
    parts = module.split(".")
    if "cli" in parts[1:]:  # pacs_gateway.cli.serve, stroke.cli.alerts, triage.cli, viewer.auth.cli ...
        return ROOT_LAYER
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} belongs to no layer")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from pkg import submodule`` imports the submodule
            for alias in node.names:
                found.add(f"{target}.{alias.name}")
    return {name for name in found if name.split(".")[0] in PACKAGES}


def existing_module(name: str, modules: set[str]) -> str | None:
    """The module ``name`` refers to (``a.b.Name`` -> ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def all_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out[module_name(path)] = path
    return out


def upward_arrows() -> set[tuple[str, str]]:
    modules = all_modules()
    names = set(modules)
    arrows = set()
    for module, path in modules.items():
        for imported in imports_of(path, module):
            target = existing_module(imported, names)
            if target is None or target == module:
                continue
            if layer_of(target) > layer_of(module):
                arrows.add((module, target))
    return arrows


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)


def test_no_upward_import():
    arrows = sorted(upward_arrows())
    assert not arrows, "upward imports (importer -> imported):\n" + "\n".join(f"  {a} -> {b}" for a, b in arrows)


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser finds an upward arrow written the ways modules write imports (guards the test itself)."""
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from stroke.jobs import StrokeLoop\n    import viewer.main\n")
    found = imports_of(src, "pacs_gateway.mod")
    assert {"stroke.jobs", "viewer.main"} <= found
    assert layer_of("stroke.jobs") > layer_of("pacs_gateway.service")
    assert layer_of("pacs_gateway.cli.serve") == ROOT_LAYER


# The gateway's internals: modules outside pacs_gateway use the Gateway's methods (pacs_gateway.service),
# the index models and queries, and the settings sections instead.
GATEWAY_INTERNALS = (
    "pacs_gateway.ingest", "pacs_gateway.intake", "pacs_gateway.dicom_bytes", "pacs_gateway.presence",
    "pacs_gateway.routing.ledger", "pacs_gateway.routing.queue", "pacs_gateway.routing.deliver",
    "pacs_gateway.routing.sender", "pacs_gateway.routing.dimse_sender", "pacs_gateway.routing.ul_sender",
    "pacs_gateway.routing.stow_sender", "pacs_gateway.routing.wire", "pacs_gateway.routing.retry",
    "pacs_gateway.routing.clinic_return", "pacs_gateway.scp", "pacs_gateway.ul",
)


def gateway_uses() -> set[tuple[str, str, str]]:
    """(importer, pacs_gateway module, name) for every import of pacs_gateway from outside it."""
    modules = all_modules()
    names = set(modules)
    uses = set()
    for module, path in modules.items():
        if module.split(".")[0] == "pacs_gateway" or layer_of(module) == ROOT_LAYER:
            continue  # the composition root and the command lines may wire internals
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pacs_gateway":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    target = full if full in names else existing_module(node.module, names)
                    uses.add((module, target, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "pacs_gateway":
                        uses.add((module, existing_module(alias.name, names), "*"))
    return uses


def test_no_private_gateway_name_is_imported_from_outside():
    private = sorted(u for u in gateway_uses() if u[2].startswith("_") or any(p.startswith("_") for p in u[1].split(".")))
    assert not private, "\n".join(f"  {m} imports {t}.{n}" for m, t, n in private)


def test_no_use_of_gateway_internals():
    internal = sorted({(m, t) for m, t, _ in gateway_uses() if t.startswith(GATEWAY_INTERNALS)})
    assert not internal, "use the Gateway's methods instead:\n" + "\n".join(f"  {m} -> {t}" for m, t in internal)


def private_imports_of(path: Path, module: str) -> set[str]:
    """The private names (or modules) ``module`` imports from another top-level package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - (node.level - 1)] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] not in PACKAGES or parts[0] == module.split(".")[0]:
                continue
            if any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts):
                found.add(name)
    return found


def test_no_private_name_is_imported_from_another_package():
    """A package uses another's public names only (a private name in the same package is fine)."""
    private = sorted((m, n) for m, path in all_modules().items() for n in private_imports_of(path, m))
    assert not private, "make these public or move them:\n" + "\n".join(f"  {m} imports {n}" for m, n in private)


def test_the_check_sees_a_private_import(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("from stroke.alerts import _iso, alert_dict\nimport triage._x.y\nfrom telerad import __version__\n"
                   "def f():\n    from viewer.reports.service import _study\n    from ._own import _helper\n")
    assert private_imports_of(src, "viewer.api.mod") == {"stroke.alerts._iso", "triage._x.y"}
