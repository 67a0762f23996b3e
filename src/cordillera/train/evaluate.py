"""Evaluation: ``cordillera eval closed-loop`` and ``cordillera eval open-loop``.

Closed loop (:func:`main_closed_loop`): the VLA drives the simulator as a policy
(:class:`cordillera.model.policy.VLAPolicy`) through :func:`cordillera.sim.batch.run_batch` (Ray
tasks, or in-process with ``workers=1``), rendering the model's cameras at 320×576 (the Alpamayo
input size, spec/alpamayo_model.md §2.2) which the policy resizes to the model's input size with
the training resize. The expert, constant-velocity (and any other named baseline) and — when
``checkpoints/nano-traj-only`` or a given path exists — the trajectory-only model run in the same
command on the same scenarios and seeds. Each policy writes AlpaSim-style outputs under
``out/<policy>/`` (``rollouts/…/metrics.parquet``, ``aggregate/…``); the comparison goes to
``out/comparison.json`` and a rich table.

Statistics (documented choice). A rollout is a (scenario, seed) pair; seed ``i`` is the rollout
index, which is the VLA's session seed (sampling noise). Rollouts of one scenario are correlated,
so every mean and 95% interval is computed **clustered by scenario**: average the rollouts of each
scenario over its seeds, then a Student t interval over the scenario means (n − 1 degrees of
freedom). With a single scenario the seeds themselves are the units. Differences CoC − traj-only
are **paired** on (scenario, seed): the per-rollout difference is clustered the same way and gets
a t interval; the relative difference (CoC − traj-only) / traj-only uses a paired percentile
bootstrap over scenarios (2000 resamples, seeded). Rollouts that failed to run score 0 (as the
AlpaSim aggregation does) and have no other metrics (left out of those means).

Metrics per rollout: ``score`` (AlpaSim scene score), ``collision_at_fault``, ``offroad``,
``close_encounter`` and ``red_light_violation`` (time-aggregated per rollout by
``metrics.aggregate``), and for policies that write a CoC ``coc_consistency``: the mean over
closed-loop steps of the score of :func:`cordillera.reasoning.consistency.consistency` between the
step's CoC and its own plan (history = the last 1.5 s of executed ego poses, rig frame at the
step), and ``coc_consistent_rate``: the share of those steps judged consistent (every stated
decision agrees) — the rate the ≥ 90 % goal is about; the mean score is softer.

Open loop (:func:`main_open_loop`): held-out samples of a PhysicalAI-AV-layout dataset, K = 6
samples each: minADE_6 (+ by horizon), ADE (sample 0), L2@1/2/3 s, FDE, corner distance
(spec/alpamayo_model.md §6), CoC decision accuracy against the labels (longitudinal, lateral,
direction; ``reasoning_quality``), and the consistency of the model's own (CoC, trajectory) pairs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cordillera.render.rig import MODEL_CARD_IMAGE_HW

__all__ = [
    "RENDER_HW", "CLOSED_LOOP_METRICS", "TRAJ_ONLY_CHECKPOINT", "t_interval", "mean_ci", "group_bootstrap",
    "sample_mean_difference_ci", "paired_difference",
    "RendererFactory", "run_without_cameras_for_reference", "rollout_consistency", "collect_closed_loop",
    "compare", "decision_accuracy", "vla_run_setup", "main_sim_run_vla", "main_closed_loop", "evaluate_open_loop", "main_open_loop",
]

RENDER_HW = MODEL_CARD_IMAGE_HW  # [px] rendered, then resized to the model's input size
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
# (key in the per-rollout record, label in the table); "score" and "coc_consistency" are ours to add
CLOSED_LOOP_METRICS = (
    ("score", "scene score"),
    ("collision_at_fault", "at-fault collision"),
    ("offroad", "offroad"),
    ("close_encounter", "close encounter"),
    ("red_light_violation", "red-light violation"),
    ("coc_consistency", "CoC↔traj consistency"),
    ("coc_consistent_rate", "CoC↔traj consistent"),
)
TRAJ_ONLY_CHECKPOINT = "checkpoints/nano-traj-only"
VLA_NAME, TRAJ_ONLY_NAME = "vla", "vla_traj_only"


# ----------------------------------------------------------------------------------------------
# Confidence intervals
# ----------------------------------------------------------------------------------------------
def t_interval(values, confidence: float = CONFIDENCE) -> dict:
    """Mean and Student t interval of i.i.d. values (NaNs dropped): {mean, lo, hi, half_width, n}.
    n < 2 gives an infinite-free NaN interval."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "half_width": math.nan, "n": 0}
    m = float(x.mean())
    if n < 2:
        return {"mean": m, "lo": math.nan, "hi": math.nan, "half_width": math.nan, "n": 1}
    se = float(x.std(ddof=1)) / math.sqrt(n)
    h = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return {"mean": m, "lo": m - h, "hi": m + h, "half_width": h, "n": n}


def _cluster_means(values, groups) -> tuple[np.ndarray, list]:
    """Mean of the finite values of each group (groups in first-seen order; empty groups dropped)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    g = list(groups)
    if len(g) != len(x):
        raise ValueError(f"{len(x)} values but {len(g)} group labels")
    order = list(dict.fromkeys(g))
    out, keep = [], []
    for k in order:
        v = x[[i for i, gi in enumerate(g) if gi == k]]
        v = v[np.isfinite(v)]
        if len(v):
            out.append(float(v.mean()))
            keep.append(k)
    return np.asarray(out), keep


def mean_ci(values, groups=None, confidence: float = CONFIDENCE) -> dict:
    """Clustered mean ± t interval: average per group (scenario) first, then :func:`t_interval`
    over the group means. With ``groups=None`` or a single group the values are the units."""
    if groups is None or len(set(groups)) < 2:
        out = t_interval(values, confidence)
        out["unit"] = "rollout"
        return out
    cm, _ = _cluster_means(values, groups)
    out = t_interval(cm, confidence)
    out["unit"] = "scenario"
    return out


def group_bootstrap(stat, n_groups: int, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """Percentile interval of ``stat(idx)`` over resamples of ``n_groups`` whole groups (clusters)
    drawn with replacement; ``idx`` (n_groups,) indexes the groups. Non-finite draws are dropped."""
    rng = np.random.default_rng(seed)
    boot = np.array([stat(rng.integers(0, n_groups, n_groups)) for _ in range(resamples)], dtype=np.float64)
    boot = boot[np.isfinite(boot)]
    if not len(boot):
        return math.nan, math.nan
    q = (1 - confidence) / 2
    return float(np.quantile(boot, q)), float(np.quantile(boot, 1 - q))


def sample_mean_difference_ci(x, y, groups, confidence: float = CONFIDENCE, resamples: int = 10_000,
                              seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """Interval of mean(y − x) over paired samples, resampling whole groups (e.g. the clips the
    samples come from, whose samples are correlated); each draw weights groups by their samples."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    g = np.asarray(groups)
    if not (len(x) == len(y) == len(g)):
        raise ValueError(f"{len(x)} / {len(y)} values but {len(g)} group labels")
    rows = [np.flatnonzero(g == k) for k in sorted(set(g.tolist()))]
    sums = np.array([(y[r] - x[r]).sum() for r in rows])
    counts = np.array([len(r) for r in rows])
    return group_bootstrap(lambda idx: sums[idx].sum() / counts[idx].sum(), len(rows), confidence, resamples, seed)


def paired_difference(a: dict, b: dict, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = 0) -> dict:
    """a − b paired on the keys ``(scenario, seed)`` present (and finite) in both.

    Returns {diff: clustered t interval of the per-pair differences, relative: {mean, lo, hi} of
    (mean a − mean b) / |mean b| from a paired percentile bootstrap over scenarios, n_pairs}."""
    keys = [k for k in a if k in b and np.isfinite(a[k]) and np.isfinite(b[k])]
    if not keys:
        nan = {"mean": math.nan, "lo": math.nan, "hi": math.nan}
        return {"diff": {**nan, "half_width": math.nan, "n": 0}, "relative": nan, "n_pairs": 0}
    groups = [k[0] for k in keys]
    va = np.array([a[k] for k in keys])
    vb = np.array([b[k] for k in keys])
    diff = mean_ci(va - vb, groups, confidence)
    ca, scen = _cluster_means(va, groups)
    cb, _ = _cluster_means(vb, groups)

    def rel(ia):
        ma, mb = ca[ia].mean(), cb[ia].mean()
        return (ma - mb) / abs(mb) if mb != 0 else math.nan

    point = rel(np.arange(len(scen)))
    lo = hi = math.nan
    if len(scen) >= 2 and np.isfinite(point):
        lo, hi = group_bootstrap(rel, len(scen), confidence, resamples, seed)
    relative = {"mean": point, "lo": lo, "hi": hi}
    return {"diff": diff, "relative": relative, "n_pairs": len(keys)}


# ----------------------------------------------------------------------------------------------
# Closed loop: picklable pieces for run_batch
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RendererFactory:
    """Builds the scenario's renderer for the given cameras and size (picklable for Ray)."""

    cameras: tuple[str, ...]
    height: int = RENDER_HW[0]
    width: int = RENDER_HW[1]
    backend: str = "auto"

    def __call__(self, scenario):
        from cordillera.render import make_renderer
        from cordillera.render.rig import default_rig

        return make_renderer(scenario, default_rig(self.cameras, self.height, self.width), backend=self.backend)


def run_without_cameras_for_reference(scenario, policy, config, renderer, rollout_id, seed, reference):
    """``run_batch``'s ``run_fn``: the expert reference is run without a renderer, so it must not
    ask for cameras; policy rollouts run unchanged."""
    from cordillera.sim.runtime import run_rollout

    if renderer is None and config.cameras:
        config = replace(config, cameras=())
    return run_rollout(scenario, policy, config, renderer, rollout_id=rollout_id, seed=seed, reference=reference)


# ----------------------------------------------------------------------------------------------
# Closed loop: per-rollout records
# ----------------------------------------------------------------------------------------------
HISTORY_STEPS = 16  # spec/alpamayo_model.md §2.3


def rollout_consistency(rollout) -> dict:
    """CoC ↔ own-plan consistency over the closed-loop steps of a rollout: {mean, consistent_rate,
    n_steps (with a CoC), n_decided (with a recognisable decision)}; NaN without CoC steps."""
    from cordillera.reasoning.consistency import consistency
    from cordillera.reasoning.schema import parse

    ego = rollout.ego_xy_yaw()  # (T, 3) local
    scores, consistent, decided = [], [], 0
    for i, st in enumerate(rollout.steps):
        p = st.plan
        if (p is None or p.warming_up or not p.coc or p.planned_at_us is not None  # a re-anchored repeat
                or st.t_us < rollout.force_gt_end_us or len(p.t_us) < 3):
            continue
        rec = parse(p.coc)
        decided += rec.longitudinal is not None or rec.lateral is not None
        h = ego[max(0, i - HISTORY_STEPS + 1): i + 1]
        c, s = math.cos(ego[i, 2]), math.sin(ego[i, 2])
        dx, dy = h[:, 0] - ego[i, 0], h[:, 1] - ego[i, 1]
        hist = np.stack([c * dx + s * dy, -s * dx + c * dy], -1)  # rig frame at the step
        hyaw = np.arctan2(np.sin(h[:, 2] - ego[i, 2]), np.cos(h[:, 2] - ego[i, 2]))
        r = consistency(rec, np.asarray(p.xyz_rig)[1:, :2], history=hist, yaw=np.asarray(p.yaw_rig)[1:],
                        history_yaw=hyaw)
        scores.append(r.score)
        consistent.append(r.consistent)
    if not scores:
        return {"mean": math.nan, "consistent_rate": math.nan, "n_steps": 0, "n_decided": 0}
    return {"mean": float(np.mean(scores)), "consistent_rate": float(np.mean(consistent)), "n_steps": len(scores),
            "n_decided": int(decided)}


def collect_closed_loop(result, with_consistency: bool, first_seed: int = 0) -> dict:
    """Per-rollout records of one policy's ``BatchResult``: {(scenario, seed): {metric: value}}; a
    rollout's seed is ``first_seed`` + its index (``run_batch``'s ``seed + i``)."""
    from cordillera.metrics.aggregate import rollout_dir
    from cordillera.sim.batch import load_rollout

    out: dict[tuple[str, int], dict] = {}
    seeds = {(o.clipgt_id, o.rollout_id): o.rollout_index for o in result.outcomes}
    for r in result.aggregate.rollouts:
        key = (r["clipgt_id"], first_seed + int(r.get("rollout_index", seeds.get((r["clipgt_id"], r["rollout_id"]), 0))))
        m = r.get("metrics") or {}
        rec = {"score": float(r["score"]), "failed": r["status"] == "failed", "rollout_id": r["rollout_id"]}
        for k, _ in CLOSED_LOOP_METRICS:
            if k == "score" or k.startswith("coc_"):  # ours, filled in below
                continue
            v = m.get(k)
            rec[k] = float(v) if v is not None else math.nan
        rec["coc_consistency"] = rec["coc_consistent_rate"] = math.nan
        if with_consistency and not rec["failed"]:
            stem = rollout_dir(result.out_dir, r["clipgt_id"], r["rollout_id"]) / "rollout"
            if stem.with_suffix(".json").exists():
                ro, _ = load_rollout(stem)
                c = rollout_consistency(ro)
                rec["coc_consistency"], rec["coc_consistent_rate"] = c["mean"], c["consistent_rate"]
                rec["coc_steps"] = c["n_steps"]
        out[key] = rec
    return out


def compare(records: dict[str, dict], confidence: float = CONFIDENCE, coc: str = VLA_NAME,
            traj_only: str = TRAJ_ONLY_NAME) -> dict:
    """Per policy and metric the clustered mean ± CI; CoC − traj-only paired differences."""
    table = {}
    for pol, recs in records.items():
        keys = list(recs)
        groups = [k[0] for k in keys]
        table[pol] = {"n_rollouts": len(keys), "n_scenarios": len(set(groups)),
                      "n_failed": sum(bool(recs[k]["failed"]) for k in keys)}
        for m, _ in CLOSED_LOOP_METRICS:
            table[pol][m] = mean_ci([recs[k][m] for k in keys], groups, confidence)
    diffs = {}
    if coc in records and traj_only in records:
        for m, _ in CLOSED_LOOP_METRICS:
            a = {k: v[m] for k, v in records[coc].items()}
            b = {k: v[m] for k, v in records[traj_only].items()}
            diffs[m] = paired_difference(a, b, confidence)
    return {"confidence": confidence, "policies": table, "coc_minus_traj_only": diffs}


def _fmt_ci(d: dict, digits: int = 2) -> str:
    if not np.isfinite(d.get("mean", math.nan)):
        return "-"
    s = f"{d['mean']:.{digits}f}"
    if np.isfinite(d.get("lo", math.nan)):
        s += f" [{d['lo']:.{digits}f}, {d['hi']:.{digits}f}]"
    return s


def comparison_table(comp: dict, width: int = 220) -> str:
    from rich.console import Console
    from rich.table import Table

    pct = int(round(comp["confidence"] * 100))
    t = Table(title=f"closed loop: mean [{pct}% CI] (clustered by scenario)")
    notes = []  # a diagnostic run must not read as the model's own driving
    if comp.get("reasoning", "own") != "own":
        notes.append(f"--reasoning {comp['reasoning']}: the auto-labeler's CoC for the simulator state was forced")
    if comp.get("steering", "own") != "own":
        notes.append(f"--steering {comp['steering']}: its plans were laid onto the expert's path")
    if notes:
        t.caption = f"{VLA_NAME} (a diagnostic, not its own driving): " + "; ".join(notes)
    t.add_column("policy", no_wrap=True)
    t.add_column("n", justify="right")
    for _, label in CLOSED_LOOP_METRICS:
        t.add_column(label, justify="right")
    for pol, row in comp["policies"].items():
        n = f"{row['n_scenarios']}×{row['n_rollouts'] // max(row['n_scenarios'], 1)}"
        if row["n_failed"]:
            n += f" ({row['n_failed']} failed)"
        t.add_row(pol, n, *[_fmt_ci(row[m]) for m, _ in CLOSED_LOOP_METRICS])
    if comp["coc_minus_traj_only"]:
        t.add_section()
        d = comp["coc_minus_traj_only"]
        t.add_row("CoC − traj-only", "paired", *[_fmt_ci(d[m]["diff"]) for m, _ in CLOSED_LOOP_METRICS])
        t.add_row("relative", "bootstrap", *[_fmt_ci({k: v * 100 for k, v in d[m]["relative"].items()}, 1) + " %"
                                             if np.isfinite(d[m]["relative"]["mean"]) else "-"
                                             for m, _ in CLOSED_LOOP_METRICS])
    console = Console(record=True, width=width, file=open(os.devnull, "w"), color_system=None)
    console.print(t)
    return console.export_text()


def _scenarios_for(suite: str, duration_s: float | None, families: str | tuple | None = None):
    """The suite's scenarios (only ``families`` when given: comma-separated names or a tuple)."""
    from cordillera.world import generator

    pairs = generator.suite(suite)
    if families:
        want = [f.strip() for f in (families.split(",") if isinstance(families, str) else families) if f.strip()]
        have = sorted({f for f, _ in pairs})
        unknown = [f for f in want if f not in have]
        if unknown:
            raise ValueError(f"families {unknown} are not in suite {suite!r}; it has: {', '.join(have)}")
        pairs = [(f, s) for f, s in pairs if f in want]
    scenarios, broken = [], {}
    for family, seed in pairs:
        try:
            sc = generator.make(family, seed)
        except Exception as e:  # noqa: BLE001 - a broken family must not stop the evaluation
            broken[f"{family}-{int(seed):05d}"] = f"{type(e).__name__}: {e}"
            continue
        scenarios.append(generator.truncated(sc, duration_s))
    return scenarios, broken


def vla_run_setup(checkpoint, name: str = VLA_NAME, kwargs: tuple = (), render_hw=RENDER_HW,
                  render_backend: str = "auto") -> tuple:
    """(policy factory, SimConfig rendering the model's cameras, renderer factory) for a checkpoint."""
    from cordillera.model.policy import VLAPolicyFactory, load_model
    from cordillera.sim.runtime import SimConfig

    cams = tuple(load_model(checkpoint)[0].cfg.inputs.cameras)
    return (VLAPolicyFactory(str(checkpoint), tuple(kwargs), name), SimConfig(cameras=cams),
            RendererFactory(cams, render_hw[0], render_hw[1], render_backend))


def main_sim_run_vla(suite: str, policy: str, out: str | Path, rollouts: int = 1, workers: int | None = None,
                     address: str | None = None, video: bool = False, progress: bool = True):
    """``cordillera sim run --policy vla:<checkpoint>``: the VLA on a suite with AlpaSim outputs
    (``sim.batch.main_sim_run`` hands ``vla:`` policies over to here: the model lives above sim)."""
    from cordillera.model.policy import VLAPolicyFactory
    from cordillera.sim.batch import run_batch

    spec = VLAPolicyFactory.from_spec(policy)
    factory, config, rfac = vla_run_setup(spec.checkpoint, spec.name, (("threads", 1),))
    scenarios, broken = _scenarios_for(suite, None)
    result = run_batch(scenarios, factory, out, rollouts_per_scenario=rollouts, workers=workers, address=address,
                       config=config, progress=progress, renderer_factory=rfac,
                       run_fn=run_without_cameras_for_reference, broken=broken, test_suite_id=suite,
                       description=f"suite={suite} policy={policy}", video=video)
    if progress:
        print(result.summary_text)
    return result


def main_closed_loop(checkpoint: str | Path, suite: str = "standard", out: str | Path = "runs/eval", seeds: int = 3,
                     first_seed: int = 0,
                     baselines: str | tuple = "expert,constant_velocity", workers: int | None = None,
                     traj_only: str | Path | None = "auto", num_samples: int = 1, fast: bool = False,
                     max_new_tokens: int | None = None, render_hw: tuple[int, int] = RENDER_HW,
                     duration_s: float | None = None, scenarios=None, progress: bool = True,
                     render_backend: str = "auto", replan_every_s: float = 0.0, select: str = "first",
                     families: str | tuple | None = None, noise_temperature: float | None = None,
                     coc_temperature: float | None = None, reasoning: str = "own",
                     steering: str = "own", speculative: bool = True) -> dict:  # fmt: skip
    """``cordillera eval closed-loop``: VLA + baselines (+ trajectory-only model) on one suite with
    ``seeds`` rollouts per scenario (rollout seeds ``first_seed`` … ``first_seed + seeds − 1``); writes ``out/<policy>/`` and ``out/comparison.json`` and
    returns the comparison dict. ``traj_only="auto"`` uses ``checkpoints/nano-traj-only`` when it
    exists; ``scenarios`` overrides the suite, ``families`` keeps only those families of it;
    ``duration_s`` shortens every scenario;
    ``replan_every_s`` > 0 runs the models only that often (``VLAPolicy``), re-anchoring in between;
    ``select="consistent"`` lets the CoC model drive its most self-consistent of ``num_samples``
    samples (the trajectory-only model, which has no CoC to check, keeps one sample);
    ``noise_temperature`` scales the flow's initial noise of both models (``VLAPolicy``; None = the
    checkpoint's, 1.0); ``coc_temperature`` is the CoC model's token sampling temperature (None = the
    ``VLAPolicy`` default 0.6 of spec §5.1; 0 = greedy); ``fast`` plans without decoding CoC (both models);
    ``reasoning="privileged"`` forces the auto-labeler's CoC for the simulator state into the CoC model
    (a diagnostic: how it drives given the right reasoning; ``VLAPolicy``); ``steering="privileged"``
    lays its plans onto the expert's path at its own speeds (what perfect lateral control would buy);
    ``speculative=False`` decodes the CoC one token per forward (``VLAPolicy``; the default drafts from
    the rollout's earlier CoCs — the same distribution, fewer forwards)."""
    from cordillera.config import REPO_ROOT
    from cordillera.model.policy import check_diagnostics, check_select, check_temperature
    from cordillera.sim.batch import POLICY_NAMES, PolicyFactory, run_batch
    from cordillera.sim.runtime import SimConfig

    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if first_seed < 0:
        raise ValueError(f"first_seed must be >= 0, got {first_seed}")
    check_temperature("coc_temperature", coc_temperature)
    check_select(select, num_samples, fast)
    check_diagnostics(reasoning, steering, fast)
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise ValueError(f"checkpoint directory {ckpt} not found")
    names = [b.strip() for b in (baselines.split(",") if isinstance(baselines, str) else baselines) if b.strip()]
    unknown = [b for b in names if b not in POLICY_NAMES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; valid: {', '.join(POLICY_NAMES)}")
    if traj_only == "auto":
        cand = REPO_ROOT / TRAJ_ONLY_CHECKPOINT
        traj_only = cand if cand.is_dir() else None
    elif traj_only is not None and not Path(traj_only).is_dir():
        raise ValueError(f"trajectory-only checkpoint {traj_only} not found")
    if scenarios is None:
        scenarios, broken = _scenarios_for(suite, duration_s, families)
    else:
        from cordillera.world.generator import truncated

        scenarios, broken = [truncated(s, duration_s) for s in scenarios], {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    base_kw = {"num_samples": num_samples, "fast": fast, "max_new_tokens": max_new_tokens, "threads": 1}
    if replan_every_s:  # only when set, so default runs keep their policy fingerprint (resume)
        base_kw["replan_every_s"] = float(replan_every_s)
    if noise_temperature is not None:  # likewise
        base_kw["noise_temperature"] = float(noise_temperature)
    vla_kw = dict(base_kw)
    if coc_temperature is not None:  # the CoC model's only (the trajectory-only model decodes no text)
        vla_kw["temperature"] = float(coc_temperature)
    if reasoning != "own":  # likewise: default runs keep their fingerprint
        vla_kw["reasoning"] = reasoning
    if steering != "own":
        vla_kw["steering"] = steering
    if not speculative:
        vla_kw["speculative"] = False
    if select != "first":
        vla_kw["select"] = select
        base_kw["num_samples"] = 1
    policies: dict[str, tuple] = {}  # name -> (factory, config, renderer factory, has CoC)
    for name, path, kw in ((VLA_NAME, ckpt, vla_kw), (TRAJ_ONLY_NAME, traj_only, base_kw)):
        if path is not None:
            kw = tuple(sorted(kw.items()))
            policies[name] = (*vla_run_setup(path, name, kw, render_hw, render_backend), True)
    for b in names:
        policies[b] = (PolicyFactory(b), SimConfig(), None, False)

    records, runs = {}, {}
    for name, (factory, config, rfac, has_coc) in policies.items():
        res = run_batch(scenarios, factory, out / name, rollouts_per_scenario=seeds, workers=workers, config=config,
                        seed=first_seed, progress=progress, policy_name=name, renderer_factory=rfac,
                        run_fn=run_without_cameras_for_reference, broken=broken, test_suite_id=suite,
                        description=f"eval closed-loop suite={suite} policy={name}")
        if progress:
            print(res.summary_text)
        records[name] = collect_closed_loop(res, with_consistency=has_coc, first_seed=first_seed)
        runs[name] = {"out_dir": str(res.out_dir), "run_name": res.run_name, "n_failed": res.n_failed,
                      "wall_time_s": res.wall_time_s}
    comp = compare(records)
    comp.update({"suite": suite, "families": families, "seeds": seeds, "first_seed": first_seed, "checkpoint": str(ckpt),
                 "replan_every_s": float(replan_every_s), "noise_temperature": noise_temperature,
                 "coc_temperature": coc_temperature, "num_samples": num_samples, "select": select, "fast": fast,
                 "reasoning": reasoning, "steering": steering, "speculative": bool(speculative),
                 "traj_only_checkpoint": None if traj_only is None else str(traj_only), "runs": runs,
                 "statistics": "per-scenario means over seeds, Student t over scenarios; paired differences on "
                               "(scenario, seed); relative difference by paired bootstrap over scenarios",
                 "rollouts": {p: [{"scenario": k[0], "seed": k[1], **v} for k, v in r.items()]
                              for p, r in records.items()}})
    text = comparison_table(comp)
    comp["table"] = text
    (out / "comparison.json").write_text(json.dumps(_jsonable(comp), indent=1))
    if progress:
        print(text)
    return comp


COMPARE_METRICS = ("score", "collision_at_fault", "offroad", "close_encounter", "coc_consistent_rate")


def _run_rollouts(run: str | Path, policy: str) -> tuple[list[dict], str]:
    """(the run's rollouts of ``policy`` that did not fail, ", …" naming what a diagnostic run forced:
    ``--reasoning privileged`` / ``--steering privileged``; "" for the model's own driving).
    ``run`` may name several runs separated by commas (e.g. one run per seed): their rollouts are
    pooled, and a (scenario, seed) present in two of them is an error (it would count twice)."""
    parts = [x.strip() for x in str(run).split(",") if x.strip()]
    if len(parts) > 1:
        pooled, whys, where = [], set(), {}
        for part in parts:
            rows, why = _run_rollouts(part, policy)
            for r in rows:
                key = (r["scenario"], r["seed"])
                if key in where:
                    raise ValueError(f"{part} and {where[key]} both hold {key[0]} seed {key[1]}: "
                                     "pool runs of different seeds or scenarios")
                where[key] = part
            pooled += rows
            whys.add(why)
        if len(whys) > 1:
            raise ValueError(f"{run}: the pooled runs differ in what they forced ({sorted(whys)})")
        return pooled, whys.pop()
    p = Path(run)
    p = p / "comparison.json" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"{run}: no comparison.json (an `eval closed-loop --out` directory or its JSON)")
    comp = json.loads(p.read_text())
    rollouts = comp["rollouts"]
    if policy not in rollouts:
        raise ValueError(f"{p}: no policy {policy!r} (has {sorted(rollouts)})")
    forced = [w for w, key in (("the auto-labeler's CoC forced", "reasoning"), ("the expert's path", "steering"))
              if (comp.get(key) or "own") != "own"]
    return [r for r in rollouts[policy] if not r.get("failed")], "".join(f", {w}" for w in forced)


def _family(scenario_id: str) -> str:
    return scenario_id.rsplit("-", 1)[0]  # "merge_on_ramp-01000" → "merge_on_ramp"


def _keyed(rollouts: list[dict], metric: str, seeds=None, families=None) -> dict:
    """{(scenario, rollout seed): value} of one metric, NaN where missing."""
    out = {}
    for r in rollouts:
        if (seeds is not None and r["seed"] not in seeds) or \
                (families is not None and _family(r["scenario"]) not in families):
            continue
        v = r.get(metric)
        out[(r["scenario"], r["seed"])] = math.nan if v is None else float(v)
    return out


def main_compare(run_a: str | Path, run_b: str | Path, policy: str = VLA_NAME, policy_b: str | None = None,
                 seeds: str | None = None, families: str | None = None, progress: bool = True) -> dict:
    """``cordillera eval compare``: two closed-loop runs (e.g. two checkpoints) paired on (scenario,
    rollout seed) present in both: per metric A, B and B − A with the t interval clustered by
    scenario and the bootstrap relative difference (:func:`paired_difference`), then the score per
    family. Runs made apart pair as long as they share scenarios and seeds (a 1-seed run against
    seed 0 of a 3-seed run); either side may pool several runs given comma-separated (one per seed)."""
    keep_seeds = None if seeds is None else {int(x) for x in str(seeds).split(",")}
    keep_fams = None if families is None else set(str(families).split(","))
    (ra, why_a), (rb, why_b) = _run_rollouts(run_a, policy), _run_rollouts(run_b, policy_b or policy)
    rows, scores = {}, None
    lines = [f"A = {run_a} ({policy}{why_a}), B = {run_b} ({policy_b or policy}{why_b})",
             "| metric | pairs | A | B | B − A [95 % CI, clustered by scenario] | relative [bootstrap] |",
             "|---|---:|---:|---:|---|---|"]
    for m in COMPARE_METRICS:
        ka, kb = _keyed(ra, m, keep_seeds, keep_fams), _keyed(rb, m, keep_seeds, keep_fams)
        if m == "score":
            scores = ka, kb
        both = [k for k in ka if k in kb and np.isfinite(ka[k]) and np.isfinite(kb[k])]
        if not both:
            continue
        d = paired_difference(kb, ka)
        rows[m] = {"a": float(np.mean([ka[k] for k in both])), "b": float(np.mean([kb[k] for k in both])), **d}
        r, df = d["relative"], d["diff"]
        rel = "–" if not np.isfinite(r["mean"]) else (
            f"{r['mean']:+.0%}" + (f" [{r['lo']:+.0%}, {r['hi']:+.0%}]" if np.isfinite(r["lo"]) else ""))
        lines.append(f"| {m} | {d['n_pairs']} | {rows[m]['a']:.3f} | {rows[m]['b']:.3f} | "
                     f"{df['mean']:+.3f} [{df['lo']:+.3f}, {df['hi']:+.3f}] | {rel} |")
    if not rows:
        raise ValueError(f"{run_a} and {run_b} share no (scenario, seed) rollouts to pair")
    ka, kb = scores
    fams: dict[str, list[tuple[float, float]]] = {}
    for k in ka:
        if k in kb:
            fams.setdefault(_family(k[0]), []).append((ka[k], kb[k]))
    per_family = {f: (float(np.mean([p[0] for p in v])), float(np.mean([p[1] for p in v]))) for f, v in sorted(fams.items())}
    lines.append("per family, score A → B: " + ", ".join(f"{f} {a:.2f} → {b:.2f}" for f, (a, b) in per_family.items()))
    text = "\n".join(lines)
    if progress:
        print(text)
    return {"metrics": rows, "per_family": per_family, "table": text}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ----------------------------------------------------------------------------------------------
# Open loop
# ----------------------------------------------------------------------------------------------
OPEN_LOOP_SAMPLES = 6  # spec/alpamayo_model.md §6: minADE over K = 6 samples


def decision_accuracy(pred_coc: str, label_coc: str) -> dict:
    """Per axis the label states (longitudinal, lateral, lateral direction): 1.0 when the predicted
    CoC states the same decision, else 0.0. Axes the label leaves open are not scored (an empty
    prediction must not "match" an absent label decision)."""
    from cordillera.reasoning.schema import parse

    p, g = parse(pred_coc or ""), parse(label_coc)
    out = {}
    for axis, want, got in (("longitudinal", g.longitudinal, p.longitudinal), ("lateral", g.lateral, p.lateral),
                            ("direction", g.lateral_direction, p.lateral_direction)):
        if want is not None:
            out[f"decision/{axis}_match"] = float(got == want)
    return out


PROBE_GROUPS = (("offset_m", slice(0, 1), 1.0), ("heading_deg", slice(1, 2), 180 / math.pi),
                ("bearing_deg", slice(2, 6), 180 / math.pi),
                ("lead_gap_m", slice(6, 7), 1.0))  # (name, `probe_fields` columns, SI → unit)


def probe_group_errors(pred_si, lane_si, valid) -> dict[str, np.ndarray]:
    """Per-row mean absolute error (B,) of lane readings (B, F) in SI against `LaneAhead` targets, per
    `PROBE_GROUPS` group in its unit (m, deg), over the valid columns only; NaN where none is valid."""
    pred, lane, ok = (np.asarray(x, np.float64) for x in (pred_si, lane_si, valid))
    out = {}
    for name, cols, unit in PROBE_GROUPS:
        n = ok[:, cols].sum(1)
        err = np.where(ok[:, cols] > 0, np.abs(pred[:, cols] - lane[:, cols]), 0.0).sum(1)
        out[name] = np.where(n > 0, err / np.maximum(n, 1), np.nan) * unit
    return out


def vision_probe_errors(pred_si: np.ndarray, lane_si: np.ndarray, valid: np.ndarray) -> dict:
    """Mean absolute errors of the vision probe's lane reading (`CordilleraVLA.read_road`, (F,) SI)
    against `train.data.LaneAhead` per group (offset m, heading deg, bearings deg), beside the
    no-image baseline "centred and straight" (all zeros: its error is the target's magnitude)."""
    probe = probe_group_errors(pred_si[None], lane_si[None], valid[None])
    zero = probe_group_errors(np.zeros_like(lane_si)[None], lane_si[None], valid[None])
    row = {}
    for name, _, _ in PROBE_GROUPS:
        if np.isfinite(probe[name][0]):
            row[f"probe_{name}_err"] = float(probe[name][0])
            row[f"probe_{name}_err_zero"] = float(zero[name][0])
    return row


def evaluate_open_loop(planner, dataset, num_samples: int = OPEN_LOOP_SAMPLES, seed: int = 0, fast: bool = False,
                       max_new_tokens: int | None = None, max_samples: int | None = None, progress: bool = False) -> dict:
    """Per-sample open-loop metrics over a :class:`cordillera.data.dataset.PaiDataset`, and their
    means with 95% t intervals (units = samples)."""
    from cordillera.data import keys as K
    from cordillera.metrics.openloop import corner_distance, min_ade
    from cordillera.model.infer_cli import predict
    from cordillera.reasoning.consistency import consistency
    from cordillera.reasoning.schema import parse

    n = len(dataset) if max_samples is None else min(len(dataset), int(max_samples))
    if n == 0:
        raise ValueError("the dataset split has no samples")
    lanes = None  # a model with a vision probe or lane reader: also score its lane reading (simulated clips)
    fields = planner.model.road_fields()
    if fields is not None:
        import torch

        from cordillera.model.infer_cli import model_inputs
        from cordillera.model.modeling import LEAD_FIELDS
        from cordillera.train.data import LaneAhead

        lanes = LaneAhead(dataset.reader, lead=LEAD_FIELDS[0] in fields)
    rows = []
    for i in range(n):
        s = dataset.sample_numpy(i)
        res = predict(planner, s, num_samples=num_samples, seed=seed + i, fast=fast, max_new_tokens=max_new_tokens)
        pred = res.xyz[0].double().numpy()  # (K, T, 3)
        pyaw = res.yaw_rad[0].double().numpy()  # (K, T)
        gt = np.asarray(s[K.EGO_FUTURE_XYZ], np.float64)
        grot = np.asarray(s[K.EGO_FUTURE_ROT], np.float64)
        hist = np.asarray(s[K.EGO_HISTORY_XYZ], np.float64)
        hrot = np.asarray(s[K.EGO_HISTORY_ROT], np.float64)
        row = {"clip_id": s[K.CLIP_ID_KEY], "t0_us": int(s[K.T0_US])}
        row.update(min_ade(pred[None], gt[None]))
        row["corner_distance"] = corner_distance(pred[None], pyaw[None], gt[None], grot[None])
        cocs = res.coc[0]
        row["coc"] = cocs[0]
        if not fast and any(cocs):
            hyaw = np.arctan2(hrot[:, 1, 0], hrot[:, 0, 0])
            cons = [consistency(c, pred[k, :, :2], history=hist[:, :2], yaw=pyaw[k], history_yaw=hyaw)
                    for k, c in enumerate(cocs)]
            row["coc_consistency"] = float(np.mean([c.score for c in cons]))
            row["coc_consistent_rate"] = float(np.mean([c.consistent for c in cons]))
            row["coc_decided_rate"] = float(np.mean([parse(c).longitudinal is not None or parse(c).lateral is not None
                                                     for c in cocs]))
        label = s.get(K.COT_KEY)
        if label and not fast:
            row.update(decision_accuracy(cocs[0], label))
        if lanes is not None:
            with torch.inference_mode():
                read = planner.read_road(model_inputs(s))
            row.update(vision_probe_errors(read[0].double().numpy(), *lanes(row["clip_id"], row["t0_us"])))
        rows.append(row)
        if progress:
            print(f"[{i + 1}/{n}] {row['clip_id'][:8]} t0={row['t0_us']} minADE {row['min_ade']:.2f} m")
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    keys += [k for r in rows for k in r if isinstance(r[k], float) and k not in keys]
    keys = list(dict.fromkeys(keys))
    summary = {k: t_interval([r.get(k, math.nan) for r in rows]) for k in keys}
    return {"n_samples": n, "num_samples_k": num_samples, "summary": summary, "samples": rows}


def open_loop_table(result: dict, title: str, width: int = 120) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in ("metric", "mean", "95% CI", "n"):
        t.add_column(c, justify="left" if c == "metric" else "right", no_wrap=True)
    for k, d in result["summary"].items():
        ci = f"[{d['lo']:.3f}, {d['hi']:.3f}]" if np.isfinite(d["lo"]) else "-"
        t.add_row(k, f"{d['mean']:.3f}" if np.isfinite(d["mean"]) else "-", ci, str(d["n"]))
    console = Console(record=True, width=width, file=open(os.devnull, "w"), color_system=None)
    console.print(t)
    return console.export_text()


SCENARIO_VAL = "scenario-val"


def scenario_val_clips(reader) -> list[str]:
    """The validation clips of training's split (``train.data.split_clips`` with
    the default ``DataSettings``: val_fraction 0.1, seed 0) — the clips a default training run held out."""
    from cordillera.train.config import DataSettings
    from cordillera.train.data import split_clips

    return split_clips(reader, DataSettings(), 0)[1]


def main_open_loop(checkpoint: str | Path, data: str | Path, split: str = "val", out: str | Path | None = None,
                   num_samples: int = OPEN_LOOP_SAMPLES, seed: int = 0, fast: bool = False,
                   max_new_tokens: int | None = None, max_samples: int | None = None, progress: bool = True) -> dict:
    """``cordillera eval open-loop``: metrics on the ``split`` clips of ``data`` (one sample per
    reasoning event); prints a table and writes JSON (default ``runs/eval/open_loop_<split>.json``).

    ``split``: a value of the dataset's ``split`` column (``val``/``train``, set by the data
    generator from the clip id), ``"scenario-val"`` (the clips a default training run held out,
    :func:`scenario_val_clips`), or ``"all"`` (a dataset generated only for evaluation)."""
    from cordillera.data.dataset import PaiDataset
    from cordillera.model.inference import Planner

    planner = Planner.from_pretrained(checkpoint)
    inp = planner.model.cfg.inputs
    by_column = split not in ("", "all", SCENARIO_VAL)
    ds = PaiDataset(data, image_hw=(inp.image_height, inp.image_width), cameras=inp.cameras, per="event",
                    filters={"split": split} if by_column else None)
    if split == SCENARIO_VAL:
        ds.index = [e for e in ds.index if e[0] in set(scenario_val_clips(ds.reader))]
    res = evaluate_open_loop(planner, ds, num_samples=num_samples, seed=seed, fast=fast, max_new_tokens=max_new_tokens,
                             max_samples=max_samples, progress=progress)
    res.update({"checkpoint": str(checkpoint), "data": str(data), "split": split})
    text = open_loop_table(res, f"open loop · {Path(str(checkpoint)).name} · {split} · K={num_samples}")
    res["table"] = text
    out = Path(out) if out is not None else Path("runs/eval") / f"open_loop_{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(res), indent=1))
    if progress:
        print(text)
        print(f"wrote {out}")
    return res
