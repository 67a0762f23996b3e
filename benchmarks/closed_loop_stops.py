"""Does a policy ever stop? Closed-loop slow-downs against the expert's, and the stop samples a dataset teaches.

For every rollout of an `eval closed-loop` (or `sim run`) output directory: whether the ego's speed fell below
`SLOW_MPS` after the force-GT warm-up, and the same for the scenario's expert reference (the ground truth the
score is measured against), counted per family; and of the model's own plans (made at a replan), the share whose CoC
decides Stop, and how many of those were followed by braking (the speed `AFTER_S` later below `BRAKED` × the speed
at the plan). With `--data DIR` (a PhysicalAI-AV training set), each
labelled t0's 6.4 s future is sorted into what it teaches about stopping: *stopping* (moving at t0, below
0.5 m/s within 6.4 s), *standing* (at rest at t0 and still at 6.4 s), *moving off* (at rest at t0, above 2 m/s
at 6.4 s), and the share whose end speed is well above the start (> 1.2 v0 + 1 m/s). With `--checkpoints`
(and one `--data`), open loop on that set's held-out (split val) samples: how far each model plans to go in 6.4 s
(mean over K = 6 samples, CoC sampled) on the first stopping and standing samples, against the ground truth and
constant velocity.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/closed_loop_stops.py RUN_DIR [RUN_DIR ...] [--policy vla]
           [--data DATA_DIR ...] [--checkpoints CKPT ...]
       (RUN_DIR: an `eval closed-loop --out` directory; a comma joins directories that hold parts of one run)
"""

# make bench: skip — needs closed-loop run directories or data sets given as arguments (see Usage above)
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from cordillera.sim.batch import load_rollout

SLOW_MPS = 2.0  # [m/s] "slowed to nearly a stop"
REST_MPS = 0.5  # [m/s] at rest
MOVING_MPS = 2.0  # [m/s] under way
HORIZON_US = 6_400_000
STEP_US = 100_000
AFTER_S = 2.0  # [s] a Stop plan "was followed by braking" if the speed this much later is …
BRAKED = 0.6  # … below this share of the speed when it was planned
STOP = "Stop"  # the CoC longitudinal decision (`reasoning.schema.LONGITUDINAL`)


def _speeds(stem: Path) -> tuple[np.ndarray, list[tuple[bool, bool]]]:
    """(speed after the warm-up (N,), per replan with a CoC: (it decides Stop, the ego braked within AFTER_S))."""
    from cordillera.reasoning.schema import parse

    ro, _ = load_rollout(stem)
    v = np.array([s.ego.speed_mps for s in ro.steps])
    t = np.array([s.t_us for s in ro.steps])
    stops = []
    for i, st in enumerate(ro.steps):
        p = st.plan
        # a fresh plan has no planned_at_us (the runtime re-anchors it on the steps until the next replan)
        if p is None or not p.coc or p.planned_at_us is not None or st.t_us < ro.force_gt_end_us:
            continue
        j = min(int(np.searchsorted(t, st.t_us + AFTER_S * 1e6)), len(v) - 1)
        stops.append((parse(p.coc).longitudinal == STOP, bool(v[j] < BRAKED * v[i])))
    return v[t >= ro.force_gt_end_us], stops


def run_table(runs: list[str], policy: str) -> None:
    print(f"\n### closed loop: rollouts whose speed falls below {SLOW_MPS:g} m/s after the warm-up ({policy} / expert "
          "reference)\n")
    per_run = []
    families: set[str] = set()
    for spec in runs:
        counts = defaultdict(lambda: [0, 0, 0])  # family → [policy slowed, reference slowed, rollouts]
        plans = []  # (decides Stop, braked after) per replan with a CoC
        for d in spec.split(","):
            base = Path(d) / policy
            ref_slowed: dict[str, bool] = {}  # one reference per scenario, shared by its rollout seeds
            for stem in sorted(base.glob("rollouts/*/*/rollout.json")):
                scenario = stem.parent.parent.name
                fam = scenario.rsplit("-", 1)[0]
                v, stops = _speeds(stem.with_suffix(""))
                if scenario not in ref_slowed:
                    vr, _ = _speeds(base / "reference" / scenario)
                    ref_slowed[scenario] = bool(vr.size and vr.min() < SLOW_MPS)
                plans += stops
                c = counts[fam]
                c[0] += bool(v.size and v.min() < SLOW_MPS)
                c[1] += ref_slowed[scenario]
                c[2] += 1
        if not counts:
            raise SystemExit(f"{spec}: no rollouts under {policy}/rollouts")
        families |= set(counts)
        per_run.append((spec, counts, plans))
    fams = sorted(f for f in families if any(c.get(f, (0, 0, 0))[1] for _, c, _ in per_run))  # where the expert slows
    print(f"| run | all families | Stop CoCs (share of replans) | … braked within {AFTER_S:g} s | " + " | ".join(fams) + " |")
    print("|---|---|---:|---:|" + "---|" * len(fams))
    for spec, counts, plans in per_run:
        tot = np.sum([c for c in counts.values()], axis=0)
        cells = [f"{counts[f][0]} / {counts[f][1]} of {counts[f][2]}" if f in counts else "–" for f in fams]
        n_stop = sum(s for s, _ in plans)
        braked = sum(b for s, b in plans if s)
        stop_cells = (f"{n_stop} ({n_stop / len(plans):.1%}) | {braked} ({braked / max(n_stop, 1):.1%})" if plans
                      else "– | –")
        print(f"| {spec} | **{tot[0]}** / {tot[1]} of {tot[2]} | {stop_cells} | " + " | ".join(cells) + " |")


def data_table(data_dirs: list[str]) -> None:
    from cordillera.data.reader import PaiReader

    print("\n### training samples (split train): what their 6.4 s futures teach about stopping\n")
    print("| data | samples | stopping | standing | moving off | end speed > 1.2 v0 + 1 m/s | mean v0 / v(6.4 s) [m/s] |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for d in data_dirs:
        reader = PaiReader(d)
        rows = []
        for cid in reader.clips(split="train"):
            ego = reader.egomotion(cid)
            for t0 in reader.event_t0s(cid):
                ts = t0 + np.arange(0, HORIZON_US + 1, STEP_US)
                if ts[-1] > ego.end_us or ts[0] < ego.t_us[0]:
                    continue
                v = np.linalg.norm(ego.dynamics(ts)[0][:, :2], axis=1)
                rows.append((v[0], v[1:].min(), v[-1]))
        if not rows:
            raise SystemExit(f"{d}: no labelled training t0s")
        v0, vmin, vend = np.array(rows).T
        stopping = np.mean((v0 > MOVING_MPS) & (vmin < REST_MPS))
        standing = np.mean((v0 < REST_MPS) & (vend < REST_MPS))
        moving_off = np.mean((v0 < REST_MPS) & (vend > MOVING_MPS))
        faster = np.mean(vend > 1.2 * v0 + 1.0)
        print(f"| {d} | {len(rows)} | {stopping:.1%} | {standing:.1%} | {moving_off:.1%} | {faster:.1%} | "
              f"{v0.mean():.2f} / {vend.mean():.2f} |")


def openloop_table(data_dir: str, checkpoints: list[str], n_stopping: int = 16, n_standing: int = 8) -> None:
    import torch

    from cordillera.data import keys as K
    from cordillera.data.dataset import PaiDataset
    from cordillera.model.infer_cli import predict
    from cordillera.model.inference import Planner

    dt_s = STEP_US / 1e6
    ds = PaiDataset(data_dir, filters={"split": "val"})
    picked: dict[str, list[tuple[int, dict]]] = {"stopping": [], "standing": []}  # (index, sample), read once
    want = {"stopping": n_stopping, "standing": n_standing}
    ref: dict[str, list[tuple[float, float]]] = {k: [] for k in picked}  # (ground truth, constant velocity) [m]
    for i in range(len(ds)):
        s = ds.sample_numpy(i)
        hist, fut = np.asarray(s[K.EGO_HISTORY_XYZ]), np.asarray(s[K.EGO_FUTURE_XYZ])
        v0 = np.linalg.norm(hist[-1, :2] - hist[-2, :2]) / dt_s
        v_fut = np.linalg.norm(np.diff(fut[:, :2], axis=0), axis=1) / dt_s
        kind = "stopping" if v0 > MOVING_MPS + 1 and v_fut.min() < REST_MPS else "standing" if v0 < 0.3 else None
        if kind and len(picked[kind]) < want[kind]:
            picked[kind].append((i, s))
            ref[kind].append((np.linalg.norm(fut[-1, :2]), v0 * HORIZON_US / 1e6))
        if all(len(v) >= want[k] for k, v in picked.items()):
            break
    print(f"\n### open loop, {data_dir} split val: distance planned over 6.4 s [m] (K = 6, CoC sampled)\n")
    print("| checkpoint | " + " | ".join(f"{k} (n={len(v)})" for k, v in picked.items()) + " |")
    print("|---|" + "---:|" * len(picked))
    for ck in checkpoints:
        planner = Planner.from_pretrained(ck)
        cells = []
        for items in picked.values():
            d_plan = []
            for i, s in items:
                with torch.inference_mode():
                    xyz = predict(planner, s, num_samples=6, seed=i).xyz[0].double().numpy()  # (K, T, 3)
                d_plan.append(np.linalg.norm(xyz[:, -1, :2], axis=1).mean())
            cells.append(f"{np.mean(d_plan):.1f}" if d_plan else "–")
        print(f"| {ck} | " + " | ".join(cells) + " |")
    for name, j in (("ground truth", 0), ("constant velocity", 1)):
        print(f"| *{name}* | " + " | ".join(f"{np.mean([r[j] for r in ref[k]]):.1f}" if ref[k] else "–"
                                            for k in picked) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--policy", default="vla")
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--checkpoints", nargs="*", default=[])
    a = ap.parse_args()
    if not a.runs and not a.data:
        ap.error("give closed-loop run directories and/or --data directories")
    if a.checkpoints and len(a.data) != 1:
        ap.error("--checkpoints needs exactly one --data directory (its held-out samples are planned on)")
    if a.runs:
        run_table(a.runs, a.policy)
    if a.data:
        data_table(a.data)
    if a.checkpoints:
        openloop_table(a.data[0], a.checkpoints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
