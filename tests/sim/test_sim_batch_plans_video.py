"""sim.batch: plans / CoC / decisions / timings in the rollout files, decision text, per-step metric
alignment, and ``--video`` (MP4 per rollout, resume, a missing video is re-made)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from cordillera.metrics.closedloop import MetricRow
from cordillera.sim.batch import (
    PolicyFactory,
    _per_step,
    decision_cause,
    decision_text,
    display_coc,
    load_rollout,
    run_batch,
    save_rollout,
    video_file,
)
from cordillera.sim.types import Plan, Rollout, StepRecord
from cordillera.world.scenario import AgentState


def _plan(t_now: int, n: int, v: float, coc=None, decisions=None, alts=0) -> Plan:
    t = t_now + 100_000 * np.arange(n, dtype=np.int64)
    x = v * 0.1 * np.arange(n)
    y = 0.01 * np.arange(n) ** 2
    xyz = np.column_stack([x, y, np.zeros(n)])
    alternatives = tuple((xyz + [0.0, 0.5 * (k + 1), 0.0], np.zeros(n)) for k in range(alts))
    return Plan(t_us=t, xyz_rig=xyz, yaw_rig=0.02 * np.arange(n), alternatives=alternatives, coc=coc,
                decisions=decisions, timing_ms={"plan": 1.5})


def _rollout() -> Rollout:
    steps = []
    for i in range(4):
        t = i * 100_000
        plan = {
            0: None,  # invalid plan during warm-up is recorded as None
            1: Plan(t_us=np.array([t], np.int64), xyz_rig=np.zeros((1, 3)), yaw_rig=np.zeros(1), warming_up=True),
            2: _plan(t, 65, 10.0, coc="Stop for the red light ahead.",
                     decisions={"longitudinal": "Stop", "lateral": "Keep Lane", "causal_object": None,
                                "signal": {"id": "L1", "state": "red"}, "stop_line_distance_m": np.float64(12.5)}),
            3: replace(_plan(t, 21, 8.0, alts=2), planned_at_us=t - 200_000),  # a re-anchored plan
        }[i]
        steps.append(StepRecord(t_us=t, ego=AgentState(x_m=float(i), y_m=0.0, yaw_rad=0.1, speed_mps=10.0), actors={},
                                signals={"L1": "red"}, plan=plan, force_gt=i < 2,
                                timing_ms={"render": 0.0, "policy": 2.0 + i}))
    return Rollout("sc", "r0", "test", 0, steps, force_gt_end_us=200_000)


def test_plans_coc_decisions_timings_round_trip(tmp_path):
    ro = _rollout()
    save_rollout(tmp_path / "rollout", ro)
    back, meta = load_rollout(tmp_path / "rollout")
    assert back.steps[0].plan is None
    assert back.steps[1].plan.warming_up and len(back.steps[1].plan.t_us) == 1
    for i in (2, 3):
        a, b = ro.steps[i].plan, back.steps[i].plan
        np.testing.assert_array_equal(b.t_us, a.t_us)  # exact: stored as int offsets from the step
        np.testing.assert_allclose(b.xyz_rig[:, :2], a.xyz_rig[:, :2], atol=1e-5)  # float32
        np.testing.assert_allclose(b.yaw_rig, a.yaw_rig, atol=1e-6)
        assert b.xyz_rig.shape == a.xyz_rig.shape and np.all(b.xyz_rig[:, 2] == 0)
        assert b.timing_ms == {"plan": 1.5}
    assert back.steps[2].plan.planned_at_us is None and back.steps[3].plan.planned_at_us == 100_000
    p2 = back.steps[2].plan
    assert p2.coc == "Stop for the red light ahead."
    assert p2.decisions == {"longitudinal": "Stop", "lateral": "Keep Lane", "causal_object": None,
                            "signal": {"id": "L1", "state": "red"}, "stop_line_distance_m": 12.5}
    assert back.steps[3].plan.coc is None and back.steps[3].plan.decisions is None
    # the shorter plan (21 poses) is not padded on load; alternatives come back with it
    alts = back.steps[3].plan.alternatives
    assert len(alts) == 2 and alts[1][0].shape == (21, 3)
    np.testing.assert_allclose(alts[1][0][:, 1], ro.steps[3].plan.alternatives[1][0][:, 1], atol=1e-5)
    assert [s.timing_ms["policy"] for s in back.steps] == [2.0, 3.0, 4.0, 5.0]
    with np.load(tmp_path / "rollout.npz") as z:
        assert z["plan_xyyaw"].dtype == np.float32 and z["plan_xyyaw"].shape == (4, 65, 3)
        assert z["plan_dt_us"][3, 20] == 2_000_000 and z["plan_dt_us"][3, 21] == -1


def test_files_without_plans_still_load(tmp_path):
    """Rollouts written before plans were stored (no arrays, no "plans" list) load with plan=None."""
    ro = _rollout()
    save_rollout(tmp_path / "old", ro)
    meta = json.loads((tmp_path / "old.json").read_text())
    del meta["plans"], meta["step_timing_ms"]
    (tmp_path / "old.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "old.npz") as z:
        keep = {k: z[k] for k in ("t_us", "ego", "actors", "force_gt")}
    np.savez_compressed(tmp_path / "old.npz", **keep)
    back, _ = load_rollout(tmp_path / "old")
    assert all(s.plan is None for s in back.steps) and back.steps[3].timing_ms == {}
    np.testing.assert_allclose(back.ego_xy_yaw(), ro.ego_xy_yaw())


def test_decision_text_and_display_coc():
    d = {"longitudinal": "Yield", "lateral": "Turn", "lateral_direction": "left",
         "causal_object": {"id": "oncoming0", "kind": "truck", "relation": "crossing", "distance_m": 63.39},
         "signal": {"id": "light_W", "state": "green"}}
    assert decision_cause(d) == "truck oncoming0 (crossing, 63 m) · light light_W green"
    assert decision_text(d) == "Yield · Turn left — because of truck oncoming0 (crossing, 63 m) · light light_W green"
    assert decision_text({"longitudinal": "Resume Speed", "lateral": "Keep Lane"}) == "Resume Speed · Keep Lane"
    assert decision_text(None) is None and decision_cause({}) is None
    ro = _rollout()
    assert display_coc(ro.steps[2].plan) == "Stop for the red light ahead."  # a CoC wins over decisions
    assert display_coc(replace(ro.steps[2].plan, coc=None)) == "[decision] Stop · Keep Lane — because of light L1 red"
    assert display_coc(ro.steps[3].plan) is None and display_coc(None) is None


def test_per_step_metric_alignment():
    t = np.array([0, 100_000, 200_000, 300_000])
    rows = [MetricRow("offroad", np.array([100_000, 300_000]), np.array([0.0, 1.0]), np.array([True, True]), "max"),
            MetricRow("dist_to_gt_trajectory", t, np.array([0.1, 0.2, 0.3, 0.4]), np.array([True, False, True, True]),
                      "max")]
    out = _per_step(rows, t, ("offroad", "dist_to_gt_trajectory", "absent"))
    np.testing.assert_array_equal(out["offroad"], [np.nan, 0.0, np.nan, 1.0])
    np.testing.assert_array_equal(out["dist_to_gt_trajectory"], [0.1, np.nan, 0.3, 0.4])
    assert "absent" not in out


@pytest.fixture(scope="module")
def short_scenario():
    from cordillera.world import generator

    return replace(generator.make("car_following", 1000), duration_us=2_500_000)


def test_video_run_resume_and_remake(tmp_path, short_scenario):
    from cordillera.render.video import read_frames, video_info

    sc = short_scenario
    res = run_batch([sc], PolicyFactory("constant_velocity"), tmp_path, workers=1, progress=False, video=True)
    assert res.n_failed == 0, [o.error for o in res.outcomes]
    o = res.outcomes[0]
    mp4 = video_file(tmp_path, sc.id, o.rollout_id)
    assert mp4.name == f"{sc.id}_{o.rollout_id}_camera_front_wide_120fov_default.mp4"
    info = video_info(mp4)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["frames"] == 26  # one frame per control step, 0 .. 2.5 s
    assert (info["width"], info["height"]) == (576, 608)  # camera 576x320 under a 288-px BEV/panel row
    frame = read_frames(mp4, indices=[20])[0]
    cam = frame[288:].astype(int)
    green = (cam[..., 1] > 200) & (cam[..., 0] < 120) & (cam[..., 2] < 170)  # the projected plan
    assert green.sum() > 50
    assert (tmp_path / "rollouts" / sc.id / "scenario.json").exists()
    back, _ = load_rollout(mp4.parent / "rollout")
    assert sum(s.plan is not None for s in back.steps) == len(back.steps)

    again = run_batch([sc], PolicyFactory("constant_velocity"), tmp_path, workers=1, progress=False, video=True)
    assert again.n_resumed == 1
    mp4.unlink()
    remade = run_batch([sc], PolicyFactory("constant_velocity"), tmp_path, workers=1, progress=False, video=True)
    assert remade.n_resumed == 0 and mp4.exists()


def test_video_error_keeps_metrics_but_not_complete(tmp_path, short_scenario):
    def no_camera_renderer(scenario):
        class R:
            def cameras(self):
                return []

            def render(self, *a):
                raise RuntimeError("renderer is broken")
        return R()

    res = run_batch([short_scenario], PolicyFactory("constant_velocity"), tmp_path, workers=1, progress=False,
                    video=True, renderer_factory=no_camera_renderer)
    o = res.outcomes[0]
    assert o.status == "ok"
    d = tmp_path / "rollouts" / short_scenario.id / o.rollout_id
    st = json.loads((d / "status.json").read_text())
    assert "renderer is broken" in st["video_error"]
    assert (d / "metrics.parquet").exists() and not (d / "_complete").exists()


def test_reference_runs_without_cameras(tmp_path, short_scenario):
    """A camera policy's config must not make the privileged reference ask for a renderer."""
    from cordillera.sim.batch import expert_reference_factory, reference_task
    from cordillera.sim.runtime import SimConfig, run_rollout

    seen = []

    def run_fn(scenario, policy, config, renderer, rollout_id, seed, reference):
        seen.append((config.cameras, config.keep_images, renderer))
        return run_rollout(scenario, policy, config, renderer, rollout_id=rollout_id, seed=seed)

    cfg = SimConfig(cameras=("camera_front_wide_120fov",), keep_images=True)
    ro, err, cached = reference_task(short_scenario, expert_reference_factory, cfg, str(tmp_path), 0, run_fn)
    assert err is None and ro is not None and not cached
    assert seen == [((), False, None)]
    again = reference_task(short_scenario, expert_reference_factory, cfg, str(tmp_path), 0, run_fn)
    assert again[2] and len(seen) == 1  # cached under the camera-free config
