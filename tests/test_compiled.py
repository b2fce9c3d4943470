"""The compiled core (setup.py) is what runs: each module it names is loaded from its extension,
built from the source beside it as it is now, not from an older one."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def compiled_sources() -> list[Path]:
    """The modules setup.py compiles (its COMPILED list)."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            return [ROOT / path for path in ast.literal_eval(node.value)]
    raise AssertionError("setup.py names no COMPILED modules")


def module_name(source: Path) -> str:
    return ".".join(source.relative_to(ROOT / "src").with_suffix("").parts)


@pytest.mark.parametrize("source", compiled_sources(), ids=module_name)
def test_a_compiled_module_runs_from_its_extension_built_after_its_source(source: Path) -> None:
    module = importlib.import_module(module_name(source))
    loaded = Path(module.__file__ or "")
    assert loaded.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), (
        f"{module.__name__} runs from {loaded.name}, not compiled: `make test` (pip install -e .) "
        "builds it"
    )
    assert loaded.stat().st_mtime >= source.stat().st_mtime, (
        f"{loaded.name} is older than {source.name}: rebuild with `make test` (pip install -e .)"
    )
