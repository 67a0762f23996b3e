"""Evaluation: confidence intervals on hand-made numbers, CoC↔plan consistency of a hand-made rollout,
open-loop metrics on a tiny synthetic dataset, and a small closed-loop comparison run."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cordillera.sim.types import Plan, Rollout, StepRecord
from cordillera.train.evaluate import mean_ci, paired_difference, rollout_consistency, t_interval
from cordillera.world.scenario import AgentState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

torch.set_num_threads(1)


# ---- confidence intervals ---------------------------------------------------------------------
def test_t_interval_hand_computed():
    # mean 3, s = sqrt(2.5), se = sqrt(0.5), t(0.975, 4) = 2.776445
    ci = t_interval([1, 2, 3, 4, 5])
    assert ci["n"] == 5 and ci["mean"] == pytest.approx(3.0)
    assert ci["half_width"] == pytest.approx(2.776445 * math.sqrt(0.5), rel=1e-5)
    assert (ci["lo"], ci["hi"]) == pytest.approx((3 - 1.963243, 3 + 1.963243), rel=1e-5)
    # NaNs are dropped; one value has no interval; none has no mean
    assert t_interval([2.0, np.nan, 4.0])["n"] == 2
    one = t_interval([7.0])
    assert one["mean"] == 7.0 and math.isnan(one["lo"])
    assert math.isnan(t_interval([])["mean"])


def test_mean_ci_clusters_by_scenario():
    # scenario a: seeds 1, 3 -> 2; scenario b: 5, 7 -> 6. Units are the 2 scenario means:
    # mean 4, s = 2·sqrt(2), se = 2, t(0.975, 1) = 12.7062
    ci = mean_ci([1, 3, 5, 7], ["a", "a", "b", "b"])
    assert ci["unit"] == "scenario" and ci["n"] == 2
    assert ci["mean"] == pytest.approx(4.0)
    assert ci["half_width"] == pytest.approx(12.706205 * 2, rel=1e-5)
    # one scenario: its seeds are the units
    assert mean_ci([1, 3], ["a", "a"])["unit"] == "rollout"
    assert mean_ci([1, 3], ["a", "a"])["half_width"] == pytest.approx(12.706205, rel=1e-5)
    with pytest.raises(ValueError, match="group labels"):
        mean_ci([1, 2, 3], ["a", "b"])


def test_paired_difference_hand_computed():
    a = {("s1", 0): 1.0, ("s1", 1): 1.0, ("s2", 0): 0.5, ("s2", 1): 0.7, ("s3", 0): 0.9, ("s3", 1): 0.9}
    b = {("s1", 0): 0.8, ("s1", 1): 0.6, ("s2", 0): 0.5, ("s2", 1): 0.5, ("s3", 0): 0.8, ("s3", 1): 1.0,
         ("s4", 0): 0.1}  # no partner: ignored
    d = paired_difference(a, b, resamples=500)
    assert d["n_pairs"] == 6
    # per-scenario mean differences: s1 0.3, s2 0.1, s3 0.0 -> mean 0.1333, s = 0.152753, se = s/sqrt(3)
    assert d["diff"]["mean"] == pytest.approx(0.4 / 3)
    assert d["diff"]["half_width"] == pytest.approx(4.302653 * 0.152753 / math.sqrt(3), rel=1e-4)
    # relative: (mean a − mean b) / mean b with scenario means a = (1, .6, .9), b = (.7, .5, .9)
    assert d["relative"]["mean"] == pytest.approx((2.5 / 3 - 2.1 / 3) / (2.1 / 3))
    assert d["relative"]["lo"] <= d["relative"]["mean"] <= d["relative"]["hi"]
    # identical policies: zero difference with a zero-width interval
    z = paired_difference(b, b)
    assert z["diff"]["mean"] == 0.0 and z["diff"]["half_width"] == 0.0 and z["relative"]["mean"] == 0.0


# ---- CoC ↔ own plan consistency of a rollout ---------------------------------------------------
def _rollout(coc: str, stopping: bool) -> Rollout:
    """Ego driving straight east at 10 m/s; from t = 2 s each step's plan either stops within ~3 s
    or keeps 10 m/s, and carries ``coc``."""
    steps = []
    t_f = np.arange(65) * 0.1
    if stopping:  # v = 10 − 3.33 t until 0, then stay
        v = np.maximum(10.0 - 10.0 / 3.0 * t_f, 0.0)
        x = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * 0.1)])
    else:
        x = 10.0 * t_f
    for i in range(30):
        t = i * 100_000
        plan = Plan(t_us=t + 100_000 * np.arange(65), xyz_rig=np.stack([x, 0 * x, 0 * x], -1), yaw_rig=0 * x,
                    coc=coc) if t >= 2_000_000 else None
        steps.append(StepRecord(t, AgentState(x_m=1.0 * i, y_m=0.0, yaw_rad=0.0, speed_mps=10.0), {}, {}, plan))
    return Rollout("scn", "r", "vla", 0, steps, force_gt_end_us=2_000_000)


def test_compare_pairs_two_runs_on_scenario_and_seed(tmp_path):
    """B − A on the shared (scenario, seed) rollouts only; per-family means; seed filter; a run
    without the policy or without shared rollouts is an error, not an empty table."""
    from cordillera.train.evaluate import main_compare

    def run(name, scores):
        d = tmp_path / name
        d.mkdir()
        rows = [{"scenario": sc, "seed": seed, "score": v, "offroad": 1.0 - v, "failed": False}
                for (sc, seed), v in scores.items()]
        (d / "comparison.json").write_text(json.dumps({"rollouts": {"vla": rows}}))
        return d

    a = run("a", {("merge-01000", 0): 0.0, ("merge-01000", 1): 0.2, ("pass-01000", 0): 0.5, ("pass-01001", 0): 0.1})
    b = run("b", {("merge-01000", 0): 0.5, ("merge-01000", 1): 0.4, ("pass-01000", 0): 0.5, ("pass-01002", 0): 0.9})
    res = main_compare(a, b, progress=False)
    sc = res["metrics"]["score"]
    assert sc["n_pairs"] == 3  # pass-01001 / pass-01002 have no partner
    assert sc["a"] == pytest.approx(0.7 / 3) and sc["b"] == pytest.approx(1.4 / 3)
    # clustered by scenario: merge-01000 differs by mean(0.5, 0.2) = 0.35, pass-01000 by 0
    assert sc["diff"]["mean"] == pytest.approx(0.175)
    assert res["metrics"]["offroad"]["diff"]["mean"] == pytest.approx(-0.175)
    assert res["per_family"] == {"merge": pytest.approx((0.1, 0.45)), "pass": pytest.approx((0.5, 0.5))}
    assert main_compare(a, b, seeds="1", progress=False)["metrics"]["score"]["n_pairs"] == 1
    assert "coc_consistent_rate" not in res["metrics"]  # absent from both runs: no row
    with pytest.raises(ValueError, match="no policy 'expert'"):
        main_compare(a, b, policy="expert", progress=False)
    with pytest.raises(ValueError, match="share no"):
        main_compare(a, b, families="road_following", progress=False)
    comp = json.loads((b / "comparison.json").read_text())
    (b / "comparison.json").write_text(json.dumps({**comp, "reasoning": "privileged"}))
    head = main_compare(a, b, progress=False)["table"].splitlines()[0]
    assert head == f"A = {a} (vla), B = {b} (vla, the auto-labeler's CoC forced)"


def test_compare_pools_runs_made_one_seed_each(tmp_path):
    """Comma-separated runs are pooled per side: pairing seed by seed across the runs gives the
    same numbers as one run holding both seeds; a rollout in two pooled runs is an error."""
    from cordillera.train.evaluate import main_compare

    def run(name, scores):
        d = tmp_path / name
        d.mkdir()
        rows = [{"scenario": sc, "seed": seed, "score": v, "failed": False} for (sc, seed), v in scores.items()]
        (d / "comparison.json").write_text(json.dumps({"rollouts": {"vla": rows}}))
        return d

    a0 = run("a0", {("merge-01000", 0): 0.0, ("pass-01000", 0): 0.5})
    a1 = run("a1", {("merge-01000", 1): 0.2, ("pass-01000", 1): 0.7})
    b0 = run("b0", {("merge-01000", 0): 0.5, ("pass-01000", 0): 0.5})
    b1 = run("b1", {("merge-01000", 1): 0.4, ("pass-01000", 1): 1.0})
    pooled = main_compare(f"{a0},{a1}", f"{b0},{b1}", progress=False)["metrics"]["score"]
    a = run("a", {("merge-01000", 0): 0.0, ("pass-01000", 0): 0.5, ("merge-01000", 1): 0.2, ("pass-01000", 1): 0.7})
    b = run("b", {("merge-01000", 0): 0.5, ("pass-01000", 0): 0.5, ("merge-01000", 1): 0.4, ("pass-01000", 1): 1.0})
    whole = main_compare(a, b, progress=False)["metrics"]["score"]
    assert pooled["n_pairs"] == 4
    # per-scenario differences: merge mean(0.5, 0.2) = 0.35, pass mean(0, 0.3) = 0.15
    assert pooled["diff"]["mean"] == pytest.approx(0.25) == whole["diff"]["mean"]
    assert pooled["diff"]["half_width"] == pytest.approx(whole["diff"]["half_width"])
    with pytest.raises(ValueError, match="both hold merge-01000 seed 0"):
        main_compare(f"{a0},{a}", b, progress=False)


def test_comparison_table_says_when_the_reasoning_was_forced():
    from cordillera.train.evaluate import CLOSED_LOOP_METRICS, comparison_table

    row = {"n_rollouts": 2, "n_scenarios": 2, "n_failed": 0, **{m: {"mean": 0.5} for m, _ in CLOSED_LOOP_METRICS}}
    comp = {"confidence": 0.95, "policies": {"vla": row}, "coc_minus_traj_only": {}}
    assert "forced" not in comparison_table(comp)
    assert "--reasoning privileged" in comparison_table({**comp, "reasoning": "privileged"})
    both = comparison_table({**comp, "reasoning": "privileged", "steering": "privileged"})
    assert "--reasoning privileged" in both and "--steering privileged" in both


def test_rollout_consistency_stop_vs_keep_going():
    coc = "Stop for the red light at the intersection ahead."
    good = rollout_consistency(_rollout(coc, stopping=True))
    bad = rollout_consistency(_rollout(coc, stopping=False))
    assert good["n_steps"] == bad["n_steps"] == 10 and good["n_decided"] == 10
    assert good["consistent_rate"] == 1.0 and good["mean"] > 0.5
    assert bad["consistent_rate"] == 0.0 and bad["mean"] < 0.5
    none = rollout_consistency(_rollout("", stopping=True))  # no CoC: no steps, NaN
    assert none["n_steps"] == 0 and math.isnan(none["mean"])


# ---- open loop on a tiny synthetic dataset --------------------------------------------------------
@pytest.fixture(scope="module")
def nano_ckpt(tmp_path_factory):
    from cordillera.model.configuration import PRESETS
    from cordillera.model.modeling import CordilleraVLA
    from cordillera.model.tokenizer import load_tokenizer

    torch.manual_seed(0)
    m = CordilleraVLA(PRESETS["nano"])
    d = tmp_path_factory.mktemp("ckpt") / "nano"
    m.save_pretrained(d, tokenizer=load_tokenizer(m.cfg))
    return d


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from data_synth import FOUR_CAMERAS, make_clip

    from cordillera.data.writer import create

    root = tmp_path_factory.mktemp("ds") / "tiny"
    w = create(root, FOUR_CAMERAS)
    events = [{"event_start_timestamp": 2_000_000, "cot": "Keep lane and follow the curve."},
              {"event_start_timestamp": 2_500_000, "cot": "Stop for the pedestrian crossing ahead."}]
    w.add_clip(make_clip("00000000-0000-4000-8000-000000000001", cameras=FOUR_CAMERAS, split="val", events=events))
    w.add_clip(make_clip("00000000-0000-4000-8000-000000000002", cameras=FOUR_CAMERAS, split="train"))
    w.finalize()
    return root


def test_open_loop_metrics_on_tiny_dataset(nano_ckpt, tiny_dataset, tmp_path):
    from cordillera.data.dataset import PaiDataset
    from cordillera.metrics.openloop import min_ade
    from cordillera.model.infer_cli import predict
    from cordillera.model.inference import Planner
    from cordillera.train.evaluate import main_open_loop

    out = tmp_path / "ol.json"
    res = main_open_loop(nano_ckpt, tiny_dataset, split="val", out=out, num_samples=2, max_new_tokens=2,
                         progress=False)
    assert res["n_samples"] == 2  # the val clip's two events; the train clip is left out
    assert [r["t0_us"] for r in res["samples"]] == [2_000_000, 2_500_000]
    s = res["summary"]
    for k in ("min_ade", "ade", "l2@1s", "l2@3s", "fde", "corner_distance"):
        assert s[k]["n"] == 2 and np.isfinite(s[k]["mean"])
    assert s["min_ade"]["mean"] <= s["ade"]["mean"] + 1e-9  # min over K ≤ sample 0
    # each label states one decision axis: "Keep lane ..." (lateral), "Stop ..." (longitudinal)
    assert s["decision/lateral_match"]["n"] == 1 and s["decision/longitudinal_match"]["n"] == 1
    assert "decision/direction_match" not in s
    # recompute sample 0's minADE independently from the same seeded prediction
    planner = Planner.from_pretrained(nano_ckpt)
    ds = PaiDataset(tiny_dataset, image_hw=(96, 160), cameras=planner.model.cfg.inputs.cameras,
                    filters={"split": "val"})
    smp = ds.sample_numpy(0)
    p = predict(planner, smp, num_samples=2, seed=0, max_new_tokens=2)
    want = min_ade(p.xyz[0].double().numpy()[None], np.asarray(smp["ego_future_xyz"], np.float64)[None])
    assert res["samples"][0]["min_ade"] == pytest.approx(want["min_ade"])
    js = json.loads(out.read_text())
    assert js["summary"]["min_ade"]["n"] == 2 and js["split"] == "val"


def test_decision_accuracy_scores_only_the_axes_the_label_states():
    from cordillera.train.evaluate import decision_accuracy

    label = "Nudge to the left to pass the cones of the construction zone."
    assert decision_accuracy("", label) == {"decision/lateral_match": 0.0, "decision/direction_match": 0.0}
    assert decision_accuracy("Nudge to the left around the cones.", label) == {
        "decision/lateral_match": 1.0, "decision/direction_match": 1.0}
    assert decision_accuracy("Nudge to the right around the cones.", label)["decision/direction_match"] == 0.0


def test_model_inputs_never_carry_the_future():
    from cordillera.model.infer_cli import model_inputs

    s = {"image_frames": 1, "camera_indices": 2, "ego_history_xyz": 3, "ego_history_rot": 4, "ego_future_xyz": 5,
         "ego_future_rot": 6, "cot": "label"}
    assert set(model_inputs(s)) == {"image_frames", "camera_indices", "ego_history_xyz", "ego_history_rot"}


def test_infer_cli_writes_png(nano_ckpt, tiny_dataset, tmp_path):
    from cordillera.model.infer_cli import main_infer

    r = main_infer(nano_ckpt, tiny_dataset / "00000000-0000-4000-8000-000000000001", 2_000_000,
                   tmp_path / "i.png", num_samples=2, fast=True)
    png = Path(r["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert len(r["coc"]) == 2 and np.isfinite(r["min_ade"])


# ---- closed loop -----------------------------------------------------------------------------
@pytest.mark.slow
def test_closed_loop_comparison_small(nano_ckpt, tmp_path):
    from cordillera.train.evaluate import main_closed_loop
    from cordillera.world import generator

    comp = main_closed_loop(nano_ckpt, out=tmp_path / "ev", seeds=2, baselines="constant_velocity", workers=1,
                            traj_only=nano_ckpt, fast=True, render_hw=(96, 160), duration_s=2.2,
                            scenarios=[generator.make("road_following", 1000)], progress=False, render_backend="cv")
    pols = comp["policies"]
    assert set(pols) == {"vla", "vla_traj_only", "constant_velocity"}
    for p in pols.values():
        assert p["n_rollouts"] == 2 and p["n_failed"] == 0
        assert 0.0 <= p["score"]["mean"] <= 1.0
    # the same weights, seeds and scenario: the paired difference is exactly zero
    assert comp["coc_minus_traj_only"]["score"]["diff"]["mean"] == 0.0
    for name in pols:
        assert (tmp_path / "ev" / name / "aggregate" / "results-summary.json").exists()
    js = json.loads((tmp_path / "ev" / "comparison.json").read_text())
    assert {r["seed"] for r in js["rollouts"]["vla"]} == {0, 1} and js["fast"] is True
    # more seeds later, without repeating the first run's: rollout seed 2 only
    comp = main_closed_loop(nano_ckpt, out=tmp_path / "ev2", seeds=1, first_seed=2, baselines="", workers=1,
                            traj_only=None, fast=True, render_hw=(96, 160), duration_s=2.2,
                            scenarios=[generator.make("road_following", 1000)], progress=False, render_backend="cv")
    assert [r["seed"] for r in comp["rollouts"]["vla"]] == [2] and comp["first_seed"] == 2
    with pytest.raises(ValueError, match="first_seed"):
        main_closed_loop(nano_ckpt, out=tmp_path / "ev3", first_seed=-1)


def test_sim_run_hands_vla_policies_over(tmp_path):
    from cordillera.sim.batch import main_sim_run

    with pytest.raises(ValueError, match="checkpoint directory"):
        main_sim_run("smoke", f"vla:{tmp_path / 'missing'}", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="unknown policy"):
        main_sim_run("smoke", "nonsense", tmp_path / "out", progress=False)


def test_closed_loop_options_are_checked_before_anything_runs(tmp_path):
    from cordillera.train.evaluate import main_closed_loop

    with pytest.raises(ValueError, match="select must be one of"):
        main_closed_loop(tmp_path, out=tmp_path / "ev", select="best")
    with pytest.raises(ValueError, match="num_samples >= 2"):
        main_closed_loop(tmp_path, out=tmp_path / "ev", select="consistent", num_samples=1)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="coc_temperature"):
            main_closed_loop(tmp_path, out=tmp_path / "ev", coc_temperature=bad)
    with pytest.raises(ValueError, match="reasoning must be one of"):
        main_closed_loop(tmp_path, out=tmp_path / "ev", reasoning="label")
    with pytest.raises(ValueError, match="privileged reasoning"):
        main_closed_loop(tmp_path, out=tmp_path / "ev", reasoning="privileged", fast=True)
    with pytest.raises(ValueError, match="steering must be one of"):
        main_closed_loop(tmp_path, out=tmp_path / "ev", steering="expert")
    assert not (tmp_path / "ev").exists()


def test_closed_loop_families_filter_the_suite():
    from cordillera.train.evaluate import _scenarios_for

    scs, broken = _scenarios_for("standard", 3.0, "merge_on_ramp, pass_blocked")
    assert not broken and len(scs) == 16  # 8 seeds each
    assert {s.family for s in scs} == {"merge_on_ramp", "pass_blocked"} and all(s.duration_us == 3_000_000 for s in scs)
    with pytest.raises(ValueError, match=r"not in suite 'long_tail'.*jaywalker"):
        _scenarios_for("long_tail", None, ("merge_on_ramp",))


def test_sample_mean_difference_ci_resamples_whole_groups():
    """One group holds every difference: any resample that draws it moves the mean; a group
    bootstrap of identical groups has a zero-width interval at their difference."""
    from cordillera.train.evaluate import sample_mean_difference_ci

    x = np.zeros(6)
    y = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    lo, hi = sample_mean_difference_ci(x, y, ["a", "a", "b", "b", "c", "c"], resamples=200)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    y2 = np.array([3.0, 3.0, 0.0, 0.0, 0.0, 0.0])  # mean difference 1, all of it in group "a"
    lo, hi = sample_mean_difference_ci(x, y2, ["a", "a", "b", "b", "c", "c"], resamples=2000)
    # a draw of 3 groups holding k copies of "a" has mean k; P(k=0) = 8/27 and P(k=3) = 1/27 > 2.5 %
    assert lo == pytest.approx(0.0) and hi == pytest.approx(3.0)
    with pytest.raises(ValueError, match="group labels"):
        sample_mean_difference_ci(x, y, ["a"])
