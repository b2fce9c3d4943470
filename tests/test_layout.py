"""The house keeps its shape: every import points down the pipeline or into a shared leaf, and
the README's layout names every module there is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "tokenotel"

#: What each part may import besides itself. The leaves (model, errors, outbound, child)
#: import nothing of ours; the source mappings know only the leaves; mapping knows them and the
#: sources, the store only the leaves (mapping never knows ClickHouse, the store never knows
#: OTLP); the edges hand requests to mapping; the wiring sits on top.
MAY_IMPORT: dict[str, set[str]] = {
    "model": set(),
    "errors": set(),
    "outbound": set(),
    "child": set(),
    "mapping": {"model", "errors", "sources", "child"},
    "sources": {"model", "errors"},
    "store": {"model", "errors"},
    "security": {"model", "errors"},
    "ingest": {"model", "errors", "mapping", "security"},
    "query": {"model", "errors", "store"},
    "detect": {"model", "errors", "store", "query", "outbound", "child"},
    "config": {"errors", "store", "security"},
    "integrity": {"model", "errors", "store", "outbound"},
    "report": {"model", "errors", "store", "query", "integrity"},
    "pipeline": {
        "model",
        "errors",
        "config",
        "ingest",
        "mapping",
        "store",
        "integrity",
        "detect",
    },
    "api": {
        "model",
        "errors",
        "config",
        "mapping",
        "query",
        "security",
        "store",
        "integrity",
        "report",
        "v1",
    },
    "v1": set(),  # generated from proto/tokenotel/v1/audit.proto
    "telemetry": {"errors", "store", "pipeline"},
    "history": {"model", "errors", "config", "ingest", "mapping", "pipeline", "api", "security"},
    "service": {
        "model",
        "errors",
        "config",
        "ingest",
        "pipeline",
        "api",
        "security",
        "integrity",
        "report",
        "v1",
        "telemetry",
    },
    "demo": {"model", "errors", "config", "query", "report", "service", "store"},
    "cli": {
        "model",
        "errors",
        "config",
        "mapping",
        "query",
        "detect",
        "service",
        "store",
        "demo",
        "api",
        "integrity",
        "report",
        "history",
        "sources",
        "security",
        "v1",
    },
}
#: The package root re-exports (on first use) and ``python -m tokenotel`` runs the CLI.
ENTRY_POINTS = {"__init__", "__main__"}


def _part(module: Path) -> str:
    """The part a module belongs to: its folder under the package, or its own name."""
    return module.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_parts(module: Path) -> set[str]:
    parts = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            dotted = name.split(".")
            if dotted[0] == "tokenotel" and len(dotted) > 1:
                parts.add(dotted[1])
    return parts


def test_every_import_points_down_the_pipeline_or_into_a_leaf() -> None:
    wrong = []
    for module in sorted(PACKAGE.rglob("*.py")):
        part = _part(module)
        if part in ENTRY_POINTS:
            continue
        assert part in MAY_IMPORT, f"{module.relative_to(ROOT)}: a new part; say what it may import"
        for imported in _imported_parts(module) - {part} - MAY_IMPORT[part]:
            wrong.append(f"{module.relative_to(ROOT)} imports tokenotel.{imported}")
    assert wrong == []


def test_the_readme_layout_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    tree = layout.split("\ncollector-config/")[0].split("\n", 2)[2]  # below src/tokenotel/
    named = set(re.findall(r"^\s+(\w+(?:\.py|/))", tree, re.M))
    modules = {
        path.name + ("/" if path.is_dir() else "")
        for path in PACKAGE.rglob("*")
        if (path.suffix == ".py" and path.stem not in ENTRY_POINTS)
        or (path.is_dir() and path.name != "__pycache__")
    }
    assert named == modules
