"""Batch runner: outputs, resume, failure handling — with a stand-in simulator (``run_fn``) so the
tests do not depend on the runtime; the end-to-end run on the real runtime is the slow test below."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from cordillera.metrics.closedloop import METRICS_COLUMNS
from cordillera.sim.batch import (
    PolicyFactory,
    load_rollout,
    main_sim_run,
    rollout_id_for,
    run_batch,
    save_rollout,
)
from cordillera.sim.types import Rollout, StepRecord
from cordillera.world.map import Lane, RoadEdge, RoadMap
from cordillera.world.scenario import ActorSpec, AgentState, EgoSpec, Scenario

CALLS: list[tuple[str, str]] = []  # (scenario id, policy name) of every simulated rollout (serial runs only)


def _scenario(sid: str) -> Scenario:
    lane = Lane("L0", np.array([[0.0, 0.0], [300.0, 0.0]]), width_m=3.6)
    edges = (RoadEdge("E0", np.array([[0.0, -1.8], [300.0, -1.8]])), RoadEdge("E1", np.array([[0.0, 1.8], [300.0, 1.8]])))
    return Scenario(id=sid, family=f"fam_{sid}", category="nominal", seed=0, params={},
                    map=RoadMap(lanes={"L0": lane}, road_edges=edges),
                    ego=EgoSpec(x_m=10.0, y_m=0.0, yaw_rad=0.0, speed_mps=10.0, route_lane_ids=("L0",)),
                    actors=(ActorSpec(id="lead", kind="car", x_m=60.0, y_m=0.0, yaw_rad=0.0),),
                    duration_us=3_000_000, force_gt_duration_us=500_000)


@dataclass
class _FakePolicy:
    name: str
    speed_mps: float
    fail_on: tuple[str, ...]
    raise_on: tuple[str, ...]


@dataclass(frozen=True)
class FakeFactory:
    name: str = "fake"
    speed_mps: float = 10.0
    fail_on: tuple[str, ...] = ()
    raise_on: tuple[str, ...] = ()

    def __call__(self):
        return _FakePolicy(self.name, self.speed_mps, self.fail_on, self.raise_on)


def fake_run(scenario, policy, config, renderer, rollout_id, seed, reference) -> Rollout:
    """Ego drives straight at ``policy.speed_mps``; the lead car parks 50 m ahead (pulled 40 m
    ahead of the ego start)."""
    CALLS.append((scenario.id, policy.name))
    if scenario.id in policy.raise_on:
        raise ValueError("boom in the simulator")
    n = scenario.duration_us // 100_000 + 1
    steps = []
    for i in range(n):
        t = i * 100_000
        ego = AgentState(scenario.ego.x_m + policy.speed_mps * t / 1e6, 0.0, 0.0, policy.speed_mps)
        steps.append(StepRecord(t_us=t, ego=ego, actors={"lead": AgentState(90.0, 0.0, 0.0)}, signals={},
                                force_gt=t < scenario.force_gt_duration_us))
        if scenario.id in policy.fail_on and i == 5:
            return Rollout(scenario.id, rollout_id, policy.name, seed, steps, status="failed",
                           error="policy raised RuntimeError: no plan", force_gt_end_us=scenario.force_gt_duration_us)
    return Rollout(scenario.id, rollout_id, policy.name, seed, steps, force_gt_end_us=scenario.force_gt_duration_us)


def _run(tmp_path, factory=FakeFactory(), ref=FakeFactory("expert"), n=2, **kw):
    return run_batch([_scenario("s1"), _scenario("s2")], factory, tmp_path, rollouts_per_scenario=n, workers=1,
                     reference_factory=ref, run_fn=fake_run, progress=False, config="fake-config", **kw)


def test_batch_writes_alpasim_layout_and_scores(tmp_path):
    res = _run(tmp_path)
    assert [o.status for o in res.outcomes] == ["ok"] * 4 and res.n_failed == 0
    assert (tmp_path / "run_metadata.yaml").exists()
    for sid in ("s1", "s2"):
        assert (tmp_path / "reference" / f"{sid}.npz").exists() and (tmp_path / "reference" / f"{sid}.json").exists()
        for i in range(2):
            d = tmp_path / "rollouts" / sid / rollout_id_for(sid, "fake", i, i)
            for f in ("metrics.parquet", "status.json", "_complete", "rollout.npz", "rollout.json"):
                assert (d / f).exists(), f
            df = pl.read_parquet(d / "metrics.parquet")
            assert tuple(df.columns) == METRICS_COLUMNS
            assert set(df["run_uuid"].to_list()) == {res.run_uuid} and set(df["clipgt_id"].to_list()) == {sid}
    for f in ("metrics_unprocessed.parquet", "metrics_results.parquet", "metrics_results.txt", "results-summary.json"):
        assert (tmp_path / "aggregate" / f).exists(), f
    summary = json.loads((tmp_path / "aggregate" / "results-summary.json").read_text())
    # the fake policy drives exactly like the reference: full progress, score 1
    assert [r["score"] for r in summary["rollouts"]] == [1.0] * 4
    assert all(r["passed"] for r in summary["rollouts"])
    assert "fam_s1" in res.summary_text and "score" in res.summary_text


def test_slow_policy_scores_partial_progress(tmp_path):
    res = _run(tmp_path, factory=FakeFactory(speed_mps=5.0), n=1)
    r = res.aggregate.rollouts[0]
    # 3 s: the reference centroid moves 30 m, ours 15 m -> progress 0.5 -> score 0.5 / 0.8
    assert r["metrics"]["progress_clipped_rel"] == pytest.approx(0.5, abs=1e-6)
    assert r["score"] == pytest.approx(0.625, abs=1e-6)


def test_rerun_skips_completed_rollouts_and_reuses_references(tmp_path):
    first = _run(tmp_path)
    CALLS.clear()
    second = _run(tmp_path)
    assert CALLS == []
    assert second.n_resumed == 4 and second.run_uuid == first.run_uuid
    assert [r["score"] for r in second.aggregate.rollouts] == [r["score"] for r in first.aggregate.rollouts]
    # a rollout whose completion marker is gone is run again, alone
    (tmp_path / "rollouts" / "s2" / rollout_id_for("s2", "fake", 1, 1) / "_complete").unlink()
    CALLS.clear()
    third = _run(tmp_path)
    assert CALLS == [("s2", "fake")] and third.n_resumed == 3


@dataclass(frozen=True)
class VersionedFactory(FakeFactory):
    version: str = "v1"

    def fingerprint(self) -> str:
        return f"weights-{self.version}"


def test_rerun_with_another_policy_version_does_not_resume_old_rollouts(tmp_path):
    _run(tmp_path, factory=VersionedFactory(speed_mps=5.0, version="v1"), n=1)
    assert (tmp_path / "policy_fingerprint.txt").read_text().strip() == "weights-v1"
    CALLS.clear()
    same = _run(tmp_path, factory=VersionedFactory(speed_mps=5.0, version="v1"), n=1)
    assert CALLS == [] and same.n_resumed == 2
    # a retrained policy (same name, other weights): both rollouts are driven again and scored as its own
    new = _run(tmp_path, factory=VersionedFactory(speed_mps=10.0, version="v2"), n=1)
    assert sorted(CALLS) == [("s1", "fake"), ("s2", "fake")] and new.n_resumed == 0
    assert [r["score"] for r in new.aggregate.rollouts] == [1.0, 1.0]
    assert (tmp_path / "policy_fingerprint.txt").read_text().strip() == "weights-v2"
    # rollouts from before fingerprints were recorded are not trusted either
    (tmp_path / "policy_fingerprint.txt").unlink()
    CALLS.clear()
    _run(tmp_path, factory=VersionedFactory(speed_mps=10.0, version="v2"), n=1)
    assert len(CALLS) == 2


def test_vla_factory_fingerprint_follows_the_weights(tmp_path):
    from cordillera.model.policy import VLAPolicyFactory

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"a" * 10)
    f = VLAPolicyFactory(str(tmp_path))
    a = f.fingerprint()
    assert a == VLAPolicyFactory(str(tmp_path)).fingerprint()
    assert a != VLAPolicyFactory(str(tmp_path), (("num_samples", 2),)).fingerprint()
    (tmp_path / "model.safetensors").write_bytes(b"b" * 10)
    assert f.fingerprint() != a


def test_failing_policy_is_reported_and_the_batch_continues(tmp_path):
    res = _run(tmp_path, factory=FakeFactory(fail_on=("s1",), raise_on=("s2",)), n=1)
    by = {o.clipgt_id: o for o in res.outcomes}
    assert by["s1"].status == "failed" and "no plan" in by["s1"].error
    assert by["s2"].status == "failed" and "ValueError: boom in the simulator" in by["s2"].error
    summary = json.loads((tmp_path / "aggregate" / "results-summary.json").read_text())
    assert {r["failure_reason"] for r in summary["rollouts"]} == {"rollout_failed"}
    assert all(r["score"] == 0.0 and r["status"] == "failed" for r in summary["rollouts"])
    assert "failed" in res.summary_text
    # failed rollouts are retried on the next run
    CALLS.clear()
    res2 = _run(tmp_path, n=1)
    assert sorted(CALLS) == [("s1", "fake"), ("s2", "fake")] and res2.n_failed == 0


def test_broken_reference_fails_that_scenario_only(tmp_path):
    res = _run(tmp_path, ref=FakeFactory("expert", raise_on=("s1",)), n=1)
    by = {o.clipgt_id: o for o in res.outcomes}
    assert by["s1"].status == "failed" and "reference (expert) rollout failed" in by["s1"].error
    assert by["s2"].status == "ok"


def test_broken_scenarios_are_recorded(tmp_path):
    res = run_batch([_scenario("s1")], FakeFactory(), tmp_path, workers=1, reference_factory=FakeFactory("expert"),
                    run_fn=fake_run, progress=False, config="fake-config", broken={"bad-00001": "ValueError: no lanes"})
    assert {o.clipgt_id: o.status for o in res.outcomes} == {"s1": "ok", "bad-00001": "failed"}
    failed = [r for r in res.aggregate.rollouts if r["status"] == "failed"]
    assert len(failed) == 1 and "no lanes" in failed[0]["error"]


def test_no_reference_uses_route_ground_truth(tmp_path):
    res = run_batch([_scenario("s1")], FakeFactory(), tmp_path, workers=1, reference_factory=None, run_fn=fake_run,
                    progress=False, config="fake-config")
    assert res.outcomes[0].status == "ok" and not (tmp_path / "reference").exists()
    assert res.aggregate.rollouts[0]["score"] == 1.0


def test_rollout_ids_are_deterministic_and_distinct():
    a = rollout_id_for("s1", "expert", 0, 0)
    assert a == rollout_id_for("s1", "expert", 0, 0)
    assert len({a, rollout_id_for("s1", "expert", 1, 1), rollout_id_for("s2", "expert", 0, 0),
                rollout_id_for("s1", "route_follower", 0, 0)}) == 4


def test_rollout_file_round_trip(tmp_path):
    sc = _scenario("s1")
    ro = fake_run(sc, FakeFactory()(), None, None, "r", 3, None)
    ro.steps[2].actors.pop("lead")
    save_rollout(tmp_path / "ro", ro)
    back, meta = load_rollout(tmp_path / "ro")
    assert back.rollout_id == "r" and back.seed == 3 and back.force_gt_end_us == 500_000
    np.testing.assert_array_equal(back.t_us(), ro.t_us())
    np.testing.assert_allclose(back.ego_xy_yaw(), ro.ego_xy_yaw())
    assert "lead" not in back.steps[2].actors and back.steps[3].actors["lead"].x_m == 90.0
    assert [s.force_gt for s in back.steps] == [s.force_gt for s in ro.steps]


def test_policy_factory_and_cli_entry_validate():
    with pytest.raises(ValueError, match="unknown policy"):
        PolicyFactory("nope")
    with pytest.raises(ValueError, match="unknown policy"):
        main_sim_run("smoke", "vla", "/tmp/unused")
    with pytest.raises(ValueError, match="only implemented for the built-in policies"):
        main_sim_run("smoke", "vla:checkpoints/nano", "/tmp/unused", wire_precision=True)


def test_sim_run_wire_precision_reaches_the_runtime_config(monkeypatch, tmp_path):
    import cordillera.sim.batch as batch

    seen = []
    monkeypatch.setattr(batch, "run_batch", lambda *a, **kw: seen.append(kw.get("config")) or
                        type("R", (), {"summary_text": ""})())
    main_sim_run("smoke", "expert", tmp_path, progress=False)
    main_sim_run("smoke", "expert", tmp_path, progress=False, wire_precision=True)
    assert seen[0] is None and seen[1].wire_precision is True


# ---------------------------------------------------------------------------------------------
# end to end on the real runtime (slow)
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_suite_end_to_end_with_expert_policy(tmp_path):
    pytest.importorskip("cordillera.sim.runtime")
    pytest.importorskip("cordillera.sim.expert")
    res = main_sim_run("smoke", "expert", tmp_path, rollouts=1, workers=1, progress=False)
    assert len(res.outcomes) == 6 and res.n_failed == 0, [o.error for o in res.outcomes]
    summary = json.loads((tmp_path / "aggregate" / "results-summary.json").read_text())
    assert len(summary["rollouts"]) == 6
    for r in summary["rollouts"]:
        # the policy is the reference policy with the same seed: it drives the GT path exactly
        assert r["metrics"]["dist_to_gt_trajectory"] == pytest.approx(0.0, abs=1e-6), r["clipgt_id"]
        assert r["metrics"]["progress_clipped_rel"] == pytest.approx(1.0, abs=1e-3), r["clipgt_id"]
    CALLS.clear()
    again = main_sim_run("smoke", "expert", tmp_path, rollouts=1, workers=1, progress=False)
    assert again.n_resumed == 6 and again.run_uuid == res.run_uuid


@pytest.mark.slow
def test_ray_tasks_match_the_serial_run(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("cordillera.sim.runtime")
    from cordillera.world import generator

    sc = [generator.make("cut_in", 1000)]
    serial = run_batch(sc, PolicyFactory("constant_velocity"), tmp_path / "serial", workers=1, progress=False)
    ray_run = run_batch(sc, PolicyFactory("constant_velocity"), tmp_path / "ray", workers=2, progress=False)
    assert ray_run.n_failed == 0 and serial.n_failed == 0
    a, b = serial.aggregate.rollouts[0], ray_run.aggregate.rollouts[0]
    assert a["rollout_id"] == b["rollout_id"] and a["score"] == b["score"]
    for k, v in a["metrics"].items():
        assert b["metrics"][k] == pytest.approx(v, nan_ok=True), k
