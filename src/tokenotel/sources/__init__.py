"""Vendors' own records (Vault, GitHub, CloudTrail, Okta, GitLab, Kubernetes, and the Kong,
nginx and Envoy access logs) mapped onto token events: one mapping per source, the same for
records that arrive live through the collector and for files imported later."""

from __future__ import annotations

from tokenotel.sources.cloudtrail import CloudTrail
from tokenotel.sources.envoy import Envoy
from tokenotel.sources.github import GitHub
from tokenotel.sources.gitlab import GitLab
from tokenotel.sources.kong import Kong
from tokenotel.sources.kubernetes import Kubernetes
from tokenotel.sources.nginx import Nginx
from tokenotel.sources.okta import Okta
from tokenotel.sources.record import RawRecord, Source, TokenRecord
from tokenotel.sources.vault import Vault

#: Every source by its name (``tokenotel.source`` on a live record, ``import --source``).
SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Vault(),
        GitHub(),
        CloudTrail(),
        Okta(),
        GitLab(),
        Kubernetes(),
        Kong(),
        Nginx(),
        Envoy(),
    )
}

__all__ = ["SOURCES", "RawRecord", "Source", "TokenRecord"]
