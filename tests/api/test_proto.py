"""The query API's generated Python code is what proto/tokenotel/v1/audit.proto says (`make
proto` regenerates it): the same code, the descriptor it embeds included, but for the
generator's version stamps."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from grpc_tools import protoc

REPO = Path(__file__).parents[2]
PROTO = "tokenotel/v1/audit.proto"
GENERATED = ("audit_pb2.py", "audit_pb2_grpc.py", "audit_pb2.pyi")
#: What differs with the generator's version and nothing else.
_VERSION_STAMPS = (
    re.compile(r"^# Protobuf Python Version: .*$", re.M),
    re.compile(r"_runtime_version\.ValidateProtobufRuntimeVersion\(.*?\)", re.S),
    re.compile(r"^GRPC_GENERATED_VERSION = .*$", re.M),
)


def _without_stamps(text: str) -> str:
    for stamp in _VERSION_STAMPS:
        text = stamp.sub("", text)
    return text


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    arguments = [
        "protoc",
        f"-I{REPO / 'proto'}",
        f"-I{resources.files('grpc_tools') / '_proto'}",  # the well-known types
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        str(REPO / "proto" / PROTO),
    ]
    assert protoc.main(arguments) == 0
    return out


@pytest.mark.parametrize("name", GENERATED)
def test_the_generated_code_is_the_proto(regenerated: Path, name: str) -> None:
    committed = (REPO / "src" / "tokenotel" / "v1" / name).read_text(encoding="utf-8")
    fresh = (regenerated / "tokenotel" / "v1" / name).read_text(encoding="utf-8")
    assert _without_stamps(committed) == _without_stamps(fresh), f"run `make proto` ({name})"
