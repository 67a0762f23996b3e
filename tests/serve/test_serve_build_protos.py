"""Stub generation (cordillera.serve.build_protos)."""

from cordillera.serve import build_protos


def test_build_into_fresh_dir_makes_a_relative_import_package(tmp_path):
    out = tmp_path / "_generated"
    protos = build_protos.build(out_dir=out)
    names = {p.stem for p in protos}
    assert names == {"common", "egodriver", "sensorsim", "controller", "physics", "traffic", "runtime",
                     "logging", "video_model"}
    v0 = out / "alpasim_grpc" / "v0"
    for n in names:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            text = (v0 / f"{n}{suffix}").read_text()
            assert "from alpasim_grpc" not in text and "import alpasim_grpc" not in text
    assert "from . import common_pb2 as" in (v0 / "egodriver_pb2.py").read_text()
    assert (out / "__init__.py").is_file() and (v0 / "__init__.py").is_file()
    assert build_protos.is_fresh(out)
    # a second call is a no-op (the stamp matches), a forced one rebuilds in place
    stamp_mtime = (out / build_protos.STAMP_NAME).stat().st_mtime_ns
    build_protos.build(out_dir=out)
    assert (out / build_protos.STAMP_NAME).stat().st_mtime_ns == stamp_mtime
    build_protos.build(out_dir=out, force=True)
    assert build_protos.is_fresh(out) and not list(tmp_path.glob("_generated.*"))


def test_stale_stamp_is_detected(tmp_path):
    out = tmp_path / "g"
    build_protos.build(out_dir=out)
    (out / build_protos.STAMP_NAME).write_text("0" * 64)
    assert not build_protos.is_fresh(out)
