"""The README's tables say what the code does: every setting (environment variable, default,
meaning) as the settings define it, and every attribute a column is read from as the column
registry says."""

from __future__ import annotations

import re
from pathlib import Path

from tokenotel.config import Settings, default_text, environment_name
from tokenotel.model import COLUMNS

README = Path(__file__).parents[1] / "README.md"


def _table_after(heading: str) -> list[list[str]]:
    """The rows (cells, header left out) of the first table after the line ``heading``."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|---"):  # below the header
            continue
        if line.startswith("| "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[1:]  # without the header


def _plain(cell: str) -> str:
    """A cell as text: no code marks, links as their text, no closing full stop."""
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell).replace("`", "").rstrip(".")


def test_the_settings_table_is_the_settings() -> None:
    documented = [tuple(_plain(cell) for cell in row) for row in _table_after("### Settings")]
    assert documented == [
        (name, environment_name(name), default_text(name), _plain(field.description or ""))
        for name, field in Settings.model_fields.items()
    ]


def test_the_attribute_table_is_the_column_registry() -> None:
    documented = set()
    for attributes_cell, columns_cell, _ in _table_after("## Sending token events"):
        columns = re.findall(r"`(\w+)`", columns_cell)
        if "map" in columns_cell:  # "any other attribute": no column of its own
            continue
        resource = attributes_cell.startswith("resource ")
        attributes = [
            f"resource {a}" if resource else a for a in re.findall(r"`([\w.]+)`", attributes_cell)
        ]
        pairs = (
            zip(attributes, columns, strict=True)
            if len(columns) > 1
            else ((a, columns[0]) for a in attributes)
        )
        documented.update(pairs)
    registry = {(a, c.name) for c in COLUMNS for a in c.attributes} | {
        (f"resource {a}", c.name) for c in COLUMNS for a in c.resource_attributes
    }
    assert documented == registry
