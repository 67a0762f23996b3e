"""Generate the gRPC stubs from serve/protos into serve/_generated (run by `make install`)."""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).parent / "protos"
OUT_DIR = Path(__file__).parent / "_generated"


def build(out_dir: Path = OUT_DIR) -> list[Path]:
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "__init__.py").touch()
    if not protos:
        return []
    from grpc_tools import protoc  # imported lazily: only the build needs grpcio-tools

    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
            f"--pyi_out={out_dir}"] + [str(p.relative_to(PROTO_DIR)) for p in protos]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {[p.name for p in protos]}")
    return protos


if __name__ == "__main__":
    built = build()
    print(f"generated stubs for {len(built)} proto files into {OUT_DIR}", file=sys.stderr)
