"""Aggregation modifiers, scene score and output files on hand-made tables."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from cordillera.metrics.aggregate import (
    AggregationConfig,
    RolloutStatus,
    aggregate,
    aggregate_log_dir,
    apply_modifiers,
    long_to_wide,
    read_run_metadata,
    scene_score,
    write_rollout_metrics,
    write_run_metadata,
)
from cordillera.metrics.closedloop import METRICS_COLUMNS, MetricRow, metrics_to_frame

T = [i * 100_000 for i in range(10)]
AGGS = {
    "eval_relevant": "max", "collision_front": "max", "collision_rear": "max", "collision_lateral": "max",
    "collision_any": "max", "offroad": "max", "progress_rel_to_total": "last", "gt_dist_traveled_m": "last",
    "dist_to_gt_trajectory": "max", "dist_traveled_m": "last", "img_is_black": "max", "comfort": "last",
}


def _rollout(clip: str, rid: str, run: str = "u1", **overrides) -> pl.DataFrame:
    """Default: eval from t index 2, no incidents, progress = i/10, gt 50 m, travelled 5 m per step."""
    base = {
        "eval_relevant": [0, 0] + [1] * 8,
        "collision_front": [0] * 10, "collision_rear": [0] * 10, "collision_lateral": [0] * 10,
        "collision_any": [0] * 10, "offroad": [0] * 10,
        "progress_rel_to_total": [i / 10 for i in range(10)], "gt_dist_traveled_m": [50.0] * 10,
        "dist_to_gt_trajectory": [0.0] * 10, "dist_traveled_m": [5.0 * i for i in range(10)],
        "img_is_black": [0] * 10, "comfort": [1.0] * 10,
    }
    base.update(overrides)
    rows = [MetricRow(k, T, np.asarray(v, dtype=float), np.ones(10, bool), AGGS[k]) for k, v in base.items()]
    return metrics_to_frame(rows, clip, rid, run, f"LR-{run}")


def _at(i, v=1.0):
    x = [0.0] * 10
    x[i] = v
    return x


def _by_id(result):
    return {r["rollout_id"]: r for r in result.rollouts}


def test_modifiers_in_order_on_a_wide_table():
    long_df = _rollout("c1", "a", collision_front=_at(5), collision_any=_at(5))
    wide, aggs = long_to_wide(long_df)
    assert wide.height == 10
    out, aggs2, applied, _ = apply_modifiers(wide, aggs)
    # (a) rows 0, 1 dropped; (g) rows after the collision (index 5) dropped, the event row kept
    assert out["timestamps_us"].to_list() == T[2:6]
    assert out["collision_at_fault"].to_list() == [0, 0, 0, 1]
    assert out["offroad_or_collision"].to_list() == [0, 0, 0, 1]
    assert out["duration_frac_20s"].to_list() == pytest.approx([0.0, 0.005, 0.01, 0.015])
    assert out["progress_clipped_rel"].to_list() == pytest.approx([0.2, 0.3, 0.4, 0.5])
    assert aggs2["progress_clipped_rel"] == "last" and aggs2["collision_at_fault"] == "max"
    assert [a.split(":")[0] for a in applied][:3] == ["remove_timesteps_before_eval_relevant", "add_offroad_or_collision",
                                                      "add_collision_at_fault"]


def test_missing_offroad_is_filled_with_zero():
    long_df = _rollout("c1", "a").filter(pl.col("name") != "offroad")
    wide, aggs = long_to_wide(long_df)
    assert wide["offroad"].to_list() == [0.0] * 10 and aggs["offroad"] == "max"


def test_scene_scores_and_failure_reasons():
    long_df = pl.concat([
        _rollout("c1", "collide", collision_front=_at(5), collision_any=_at(5)),
        _rollout("c2", "fast", progress_rel_to_total=[0.09 * i + 0.09 for i in range(10)]),  # last 0.9 -> 1.0
        _rollout("c3", "half", progress_rel_to_total=[0.04 * i + 0.04 for i in range(10)]),  # last 0.4 -> 0.5
        _rollout("c4", "short_gt", progress_rel_to_total=[0.01] * 10, gt_dist_traveled_m=[3.0] * 10),
        _rollout("c5", "offroad", offroad=_at(6)),
        _rollout("c6", "both", offroad=_at(4), collision_lateral=_at(4), collision_any=_at(4)),
        _rollout("c7", "rear_only", collision_rear=_at(4), collision_any=_at(4)),
        _rollout("c8", "far", dist_to_gt_trajectory=_at(4, 4.0)),
        _rollout("c9", "black", img_is_black=_at(3)),
    ])
    res = aggregate(long_df)
    r = _by_id(res)
    assert (r["collide"]["score"], r["collide"]["failure_reason"], r["collide"]["passed"]) == (0.0, "collision_at_fault", False)
    assert r["collide"]["metrics"]["progress_clipped_rel"] == pytest.approx(0.5)
    assert r["fast"]["score"] == 1.0 and r["fast"]["status"] == "pass"
    assert r["half"]["score"] == pytest.approx(0.5)
    assert r["short_gt"]["score"] == 1.0
    assert (r["offroad"]["score"], r["offroad"]["failure_reason"]) == (0.0, "offroad")
    assert r["both"]["failure_reason"] == "collision_at_fault"  # checked first
    # a rear collision is not at fault: scored by progress (cut at the event row, index 4)
    assert r["rear_only"]["failure_reason"] is None and r["rear_only"]["score"] == pytest.approx(0.4 / 0.8)
    # (h): rows after the first dist_to_gt_trajectory >= 4 m are cut -> progress frozen at index 4
    assert r["far"]["metrics"]["progress_clipped_rel"] == pytest.approx(0.4)
    # (f): the black-image rollout is dropped entirely
    assert "black" not in r and any("black" in w for w in res.warnings)
    row = res.results.row(0, named=True)
    assert row["n_clips"] == 8 and row["n_rollouts"] == 1


def test_scene_score_saturates_at_080():
    assert scene_score({"gt_dist_traveled_m": 50.0, "progress_clipped_rel": 0.8})[0] == 1.0
    assert scene_score({"gt_dist_traveled_m": 50.0, "progress_clipped_rel": 1.7})[0] == 1.0
    assert scene_score({"gt_dist_traveled_m": 50.0, "progress_clipped_rel": 0.6})[0] == pytest.approx(0.75)
    assert scene_score({"gt_dist_traveled_m": 50.0, "progress_clipped_rel": -0.2})[0] == 0.0
    assert scene_score({"gt_dist_traveled_m": 4.99, "progress_clipped_rel": 0.0})[0] == 1.0


def test_per_run_mean_std_and_incident_distance():
    # two clips × two rollout indices; index 0: one collision over 2 clips, index 1: none
    long_df = pl.concat([
        _rollout("c1", "c1_0", collision_front=_at(5), collision_any=_at(5)),  # cut at 5: travelled 25 m
        _rollout("c2", "c2_0"),  # travelled 45 m
        _rollout("c1", "c1_1"),
        _rollout("c2", "c2_1"),
    ])
    st = [RolloutStatus("c1", "c1_0", 0), RolloutStatus("c2", "c2_0", 0), RolloutStatus("c1", "c1_1", 1),
          RolloutStatus("c2", "c2_1", 1)]
    res = aggregate(long_df, st)
    row = res.results.row(0, named=True)
    assert row["n_clips"] == 2 and row["n_rollouts"] == 2
    # collision_at_fault: index 0 mean 0.5, index 1 mean 0 -> mean 0.25, population std 0.25
    assert row["collision_at_fault"] == pytest.approx(0.25) and row["collision_at_fault_std"] == pytest.approx(0.25)
    # index 0: (25 + 45) m / 1 incident / 1000 = 0.07 km; index 1: no incident -> inf
    assert math.isinf(row["avg_dist_between_incidents"])
    res0 = aggregate(long_df.filter(pl.col("rollout_id").str.ends_with("_0")), st)
    assert res0.results.row(0, named=True)["avg_dist_between_incidents"] == pytest.approx(0.07)


def test_failed_rollouts_are_reported_and_counted(tmp_path):
    long_df = _rollout("c1", "ok", progress_rel_to_total=[0.1 * i + 0.1 for i in range(10)])
    st = [RolloutStatus("c1", "ok", 0, run_uuid="u1", run_name="LR-u1"),
          RolloutStatus("c2", "bad", 0, status="failed", error="RuntimeError: boom", run_uuid="u1", run_name="LR-u1")]
    res = aggregate(long_df, st)
    r = _by_id(res)
    assert r["bad"]["status"] == "failed" and r["bad"]["failure_reason"] == "rollout_failed"
    assert r["bad"]["score"] == 0.0 and "boom" in r["bad"]["error"]
    assert res.rollouts[-1]["rollout_id"] == "bad"  # appended
    row = res.results.row(0, named=True)
    assert row["scene_score"] == pytest.approx(0.5) and row["n_failed_rollouts"] == 1
    # nothing but failures still aggregates
    res = aggregate(long_df.head(0), st[1:])
    assert res.rollouts[0]["failure_reason"] == "rollout_failed"


def test_output_files(tmp_path):
    write_run_metadata(tmp_path, "u1", "LR-u1", test_suite_id="smoke")
    assert read_run_metadata(tmp_path)["run_uuid"] == "u1"
    for clip, rid, kw in (("c1", "a", {}), ("c2", "b", {"offroad": _at(5)})):
        path = write_rollout_metrics(tmp_path, _rollout(clip, rid, **kw))
        assert path == tmp_path / "rollouts" / clip / rid / "metrics.parquet"
        assert tuple(pl.read_parquet(path).columns) == METRICS_COLUMNS
        (path.parent / "status.json").write_text(json.dumps(RolloutStatus(clip, rid, 0, run_uuid="u1").to_dict()))
    aggregate_log_dir(tmp_path)
    agg = tmp_path / "aggregate"
    unp = pl.read_parquet(agg / "metrics_unprocessed.parquet")
    assert tuple(unp.columns) == METRICS_COLUMNS and unp.height == 2 * 10 * len(AGGS)
    res = pl.read_parquet(agg / "metrics_results.parquet")
    assert res.height == 1 and {"run_uuid", "run_name", "n_clips", "n_rollouts", "offroad", "offroad_std"} <= set(res.columns)
    txt = (agg / "metrics_results.txt").read_text()
    for s in ("Warnings", "Modifiers applied", "Results", "Metric Name", "Metric Value", "Time Aggregation",
              "n_clips: 2", "n_rollouts/clip: 1", "0.50 ± 0.00"):
        assert s in txt, s
    summary = json.loads((agg / "results-summary.json").read_text())
    assert summary["schema_version"] == 1 and summary["scene_score_enabled"] is True
    assert set(summary) == {"schema_version", "scene_score_enabled", "rollouts", "metrics_results", "score_criteria"}
    r0 = summary["rollouts"][0]
    for k in ("run_uuid", "run_name", "clipgt_id", "rollout_id", "metrics", "status", "passed", "score",
              "failure_reason", "score_metrics"):
        assert k in r0
    assert {r["rollout_id"]: r["failure_reason"] for r in summary["rollouts"]} == {"a": None, "b": "offroad"}
