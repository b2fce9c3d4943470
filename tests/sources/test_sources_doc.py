"""docs/sources.md has, for every source there is, its set-up, field map and what it cannot
tell."""

from __future__ import annotations

import re
from pathlib import Path

from tokenotel.sources import SOURCES

DOC = Path(__file__).parents[2] / "docs" / "sources.md"
TITLES = {
    "vault": "Vault",
    "github": "GitHub",
    "cloudtrail": "AWS CloudTrail",
    "okta": "Okta",
    "gitlab": "GitLab",
    "kubernetes": "Kubernetes",
    "kong": "Kong",
    "nginx": "nginx",
    "envoy": "Envoy",
}


def test_every_source_has_its_section() -> None:
    sections = dict(re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", DOC.read_text(), re.M | re.S))
    assert set(TITLES) == set(SOURCES)
    for name, title in TITLES.items():
        section = sections[title]
        headings = re.findall(r"^### (.+)$", section, re.M)
        assert headings == ["Set-up", "Field map", "What it cannot tell"], title
        assert f"collector-config/sources/{name}.yaml" in section
