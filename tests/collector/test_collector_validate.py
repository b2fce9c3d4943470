"""`otelcol-tokenotel validate` accepts every shipped config, with endpoints on the test's ports."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from otelcol import CONFIG_DIR

from processes import free_port

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

Validate = Callable[..., subprocess.CompletedProcess[str]]
SHIPPED = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))


def test_every_shipped_config_is_tested() -> None:
    # builder.yaml is the build manifest, not a collector config.
    assert SHIPPED == [
        "agent-files.yaml",
        "builder.yaml",
        "gateway-auth.yaml",
        "gateway.yaml",
        "loadbalancing.yaml",
        "snippet-otelcol-contrib.yaml",
    ]


@pytest.mark.parametrize(
    "config",
    ["gateway.yaml", "agent-files.yaml", "loadbalancing.yaml", "snippet-otelcol-contrib.yaml"],
)
def test_validate_accepts_the_shipped_config(
    collector_validate: Validate, tmp_path: Path, config: str
) -> None:
    result = collector_validate(
        config,
        TOKENOTEL_ENDPOINT=f"127.0.0.1:{free_port()}",
        TOKEN_EVENT_FILES=f"{tmp_path}/tokens/*.jsonl,{tmp_path}/more/*.jsonl",
        GATEWAY_ACCESS_LOGS=f"{tmp_path}/gateway/access*.log",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()


def test_validate_accepts_the_gateway_with_its_credential_overlay(
    collector_validate: Validate, tmp_path: Path
) -> None:
    credential = tmp_path / "ingest.credential"
    credential.write_text("tko_0123abcd_" + "A" * 43 + "\n")
    merged = collector_validate(
        "gateway.yaml",
        "gateway-auth.yaml",
        TOKENOTEL_INGEST_CREDENTIAL_FILE=str(credential),
        TOKENOTEL_CA_FILE=str(tmp_path / "ca.pem"),
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    # Without a credential file the overlay is refused: never a gateway that sends none.
    without = collector_validate("gateway.yaml", "gateway-auth.yaml")
    assert without.returncode != 0
    assert "no bearer token provided" in without.stdout + without.stderr


@pytest.mark.parametrize(
    "replicas",
    [
        "127.0.0.1:{0},127.0.0.1:{1}",  # the documented comma-separated form
        "[127.0.0.1:{0}, 127.0.0.1:{1}]",  # and the YAML list
        "127.0.0.1:{0}",  # a single replica
    ],
)
def test_loadbalancing_accepts_each_documented_replica_list(
    collector_validate: Validate, replicas: str
) -> None:
    result = collector_validate(
        "loadbalancing.yaml", TOKENOTEL_REPLICAS=replicas.format(free_port(), free_port())
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_rejects_a_broken_config(collector_validate: Validate, tmp_path: Path) -> None:
    """The check above means something: a typo in the filter condition is refused."""
    broken = tmp_path / "gateway-broken.yaml"
    gateway = (CONFIG_DIR / "gateway.yaml").read_text()
    assert "IsMatch(log.event_name" in gateway
    broken.write_text(gateway.replace("IsMatch(log.event_name", "IsMatchh(log.event_name"))
    result = collector_validate(str(broken))
    assert result.returncode != 0
    assert "IsMatchh" in result.stdout + result.stderr


SOURCE_CONFIGS = sorted(p.name for p in (CONFIG_DIR / "sources").glob("*.yaml"))


def test_every_source_has_its_collector_config() -> None:
    assert [
        f"{source}.yaml"
        for source in sorted(
            [
                "vault",
                "github",
                "cloudtrail",
                "okta",
                "gitlab",
                "kubernetes",
                "kong",
                "nginx",
                "envoy",
            ]
        )
    ] == SOURCE_CONFIGS


@pytest.mark.parametrize("config", SOURCE_CONFIGS)
def test_validate_accepts_each_source_config(
    collector_validate: Validate, tmp_path: Path, config: str
) -> None:
    result = collector_validate(f"sources/{config}", TOKENOTEL_ENDPOINT=f"127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()


def test_validate_accepts_several_source_configs_in_one_collector(
    collector_validate: Validate,
) -> None:
    merged = collector_validate(*(f"sources/{config}" for config in SOURCE_CONFIGS))
    assert merged.returncode == 0, merged.stdout + merged.stderr
