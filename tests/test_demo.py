"""cordillera.demo: what runs without a trained model, and the end-to-end demo (slow)."""

from __future__ import annotations

import re

import pytest

from cordillera.config import DemoConfig
from cordillera.demo import NOT_TRAINED_NOTICE, demo_sim_config, trained_checkpoint


def test_trained_checkpoint_needs_both_files(tmp_path):
    assert trained_checkpoint(tmp_path) is None
    (tmp_path / "config.json").write_text("{}")
    assert trained_checkpoint(tmp_path) is None
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert trained_checkpoint(tmp_path) == tmp_path


def test_demo_sim_config_renders_cameras_only_for_the_vla():
    cfg = DemoConfig(sim={"cameras": ["camera_front_wide_120fov"], "controller": "perfect"})
    assert demo_sim_config(cfg, cameras=False).cameras == ()
    with_cams = demo_sim_config(cfg, cameras=True)
    assert with_cams.cameras == ("camera_front_wide_120fov",) and with_cams.controller == "perfect"


@pytest.mark.slow
def test_run_demo_two_short_scenarios(tmp_path, capsys):
    from cordillera.demo import run_demo

    cfg = DemoConfig(checkpoint=str(tmp_path / "no_checkpoint_here"), workers=1)
    report = run_demo(tmp_path / "out", cfg, workers=1, limit=2, duration_s=4.0, progress=False)
    assert report == tmp_path / "out" / "report.html"
    out = capsys.readouterr().out
    assert "not trained yet" in out and "report.html" in out
    page = report.read_text()
    assert NOT_TRAINED_NOTICE in page
    srcs = re.findall(r'src="([^"]+)"', page)
    mp4 = [s for s in srcs if s.endswith(".mp4")]
    png = [s for s in srcs if s.endswith(".png")]
    assert len(mp4) == 4 and len(png) == 2  # 2 scenarios × (expert, constant velocity); one figure per scenario
    for s in srcs:
        f = report.parent / s
        assert f.exists() and f.stat().st_size > 10_000, s
    assert all("_camera_front_wide_120fov_default.mp4" in s for s in mp4)
    for name in ("expert", "constant_velocity"):
        assert (tmp_path / "out" / "runs" / name / "aggregate" / "results-summary.json").exists()


@pytest.mark.slow
def test_run_demo_with_the_shipped_nano_checkpoint(tmp_path, capsys):
    # What `make demo` runs: the shipped VLA drives (CoC in the plans), next to the expert.
    import json

    from cordillera.config import REPO_ROOT
    from cordillera.demo import _load, run_demo

    ckpt = REPO_ROOT / "checkpoints" / "nano"
    assert trained_checkpoint(ckpt) == ckpt, "checkpoints/nano must ship a trained model"
    cfg = _load("demo").model_copy(update={"checkpoint": str(ckpt), "workers": 1})  # the preset's cameras
    report = run_demo(tmp_path / "out", cfg, workers=1, limit=1, duration_s=3.0, progress=False)
    out = capsys.readouterr().out
    assert "not trained yet" not in out and NOT_TRAINED_NOTICE not in report.read_text()
    summary = json.loads((tmp_path / "out" / "runs" / "vla_nano" / "aggregate" / "results-summary.json").read_text())
    assert len(summary["rollouts"]) == 1
    assert summary["rollouts"][0].get("failure_reason") != "rollout_failed", summary["rollouts"][0]
    from cordillera.sim.batch import load_rollout

    stems = list((tmp_path / "out" / "runs" / "vla_nano" / "rollouts").glob("*/*/rollout.json"))
    assert len(stems) == 1
    ro, _ = load_rollout(stems[0].with_suffix(""))
    cocs = [s.plan.coc for s in ro.steps if s.plan is not None and not s.plan.warming_up]
    assert cocs and all(isinstance(c, str) for c in cocs)
