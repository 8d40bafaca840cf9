"""Generate the Python contracts (src/tickmesh/v2) from proto/ with grpcio-tools and mypy-protobuf."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = ROOT / "proto"
OUTPUT_DIR = ROOT / "src" / "tickmesh" / "v2"
INIT_TEXT = '"""Generated from proto/tickmesh/v2 by `make proto`. Do not edit."""\n'


def generate(into: Path) -> None:
    """Write the generated package for every proto file into `into` (which becomes tickmesh/v2)."""
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as scratch:
        well_known = Path(grpc_tools.__file__).parent / "_proto"
        # The mypy-protobuf plugins live beside this interpreter, whatever PATH says.
        scripts = Path(sys.executable).parent
        args = [
            "protoc",
            f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={scratch}",
            f"--mypy_out={scratch}",
            f"--grpc_python_out={scratch}",
            f"--mypy_grpc_out={scratch}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        generated = Path(scratch) / "tickmesh" / "v2"
        if into.exists():
            shutil.rmtree(into)
        shutil.copytree(generated, into)
    (into / "__init__.py").write_text(INIT_TEXT)
    (into / "py.typed").write_text("")


def main() -> None:
    """Regenerate src/tickmesh/v2 in place."""
    generate(OUTPUT_DIR)
    sys.stderr.write(f"generated {OUTPUT_DIR.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
