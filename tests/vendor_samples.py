"""The vendors' own records the source tests read (docs/sources.md, "Test data"): kept outside
the repository and never copied into it, in the directory VENDOR_SAMPLES_DIR names (by
default where the project's CI places them, beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DIRECTORY = Path(
    os.environ.get("VENDOR_SAMPLES_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
)


def vendor_lines(name: str) -> list[str]:
    """The lines of a vendor sample file (the vendor's records, one a line)."""
    path = DIRECTORY / name
    if not path.is_file():
        pytest.fail(
            f"vendor sample {path} is missing: the source tests read the vendors' records "
            "from the directory VENDOR_SAMPLES_DIR names (docs/sources.md, 'Test data')"
        )
    return path.read_text(encoding="utf-8").splitlines()
