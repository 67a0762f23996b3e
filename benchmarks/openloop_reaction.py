"""Does the planner react to what it sees, or continue its own history? Open loop on held-out samples:
how far behind (or ahead of) constant velocity the model puts the ego at 3 s, against the ground truth,
split by whether the ego history already shows the change.

Per sample: v0 = the ego's speed at t0 and a0 = v0 − its speed 1 s earlier (both from the 16-pose
history the model reads); Δx = x(3 s) − 3 s · v0 in the t0 rig frame — negative when the ego slows.
The model's Δx is the mean over its K samples (the recipe's evaluation settings: K = 6, CoC at
temperature 0.6). A planner that copies its history slows only when the history already slows
(a0 ≤ −0.5 m/s over the last second); one that reads the scene also slows, before its history does,
for the lead car, the red light or the pedestrian it sees. The slope of the model's Δx on the
ground truth's over the steady-history samples (a0 > −0.5) says which: ≈ 1 reads the scene, ≈ 0 copies;
its 95 % interval resamples clips.

The same question sideways (bends, lane shifts, the end of a ramp): Δy = y(3 s) − y of driving on at the
history's own speed and yaw rate (`train.data.history_trend_xy`), model (mean over K) against the ground
truth over all samples — slope ≈ 1: the planner turns where the road turns; ≈ 0: it holds its curvature.
Intersection turns are announced by the navigation text ("Turn left in 20m"); the last column leaves out the
samples whose CoC label is a Turn, so that what remains (bends, lane shifts, ramps) can only be read from
the cameras.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/openloop_reaction.py CKPT [CKPT ...] --data DIR
       [--all] [--samples 200] [--threads 2] [--cameras real|grey|swapped]
       (--all: every sample of DIR, a set the models never saw; --cameras swapped: each sample sees another
       clip's images — what is left of a reaction then does not come from the cameras)
"""

# make bench: skip — needs checkpoints or data given as arguments (see Usage above)
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from openloop_paired import CAMERA_CONDITIONS, camera_prompt, heldout_batches  # noqa: E402

from cordillera.model.processor import EGO_FUTURE_XYZ, EGO_HISTORY_ROT, EGO_HISTORY_XYZ  # noqa: E402
from cordillera.reasoning.schema import parse  # noqa: E402
from cordillera.train.data import CLIP_IDS, COT_TEXT, history_trend_xy  # noqa: E402
from cordillera.train.evaluate import group_bootstrap  # noqa: E402

HORIZON_IDX = 29  # 3.0 s: the 30th future pose (10 Hz)
HORIZON_S = 3.0
SLOWING_MPS = -0.5  # [m/s] a0 at or below this: the history already slows
GT_SLOWS_M = -3.0  # [m] Δx at or below this: the ground truth slows clearly within 3 s
GT_TURNS_M = 1.0  # [m] |Δy| at or above this: the ground truth leaves its history's curvature within 3 s


def history_speed(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(v0, a0) [m/s] per sample from the 16-pose history the model reads (10 Hz, t0 last): the speed at t0
    and its change over the last second."""
    h = batch[EGO_HISTORY_XYZ][..., :2].double()  # (B, 16, 2)
    v0 = (h[:, -1] - h[:, -2]).norm(dim=-1) / 0.1
    return v0, v0 - (h[:, -11] - h[:, -12]).norm(dim=-1) / 0.1


def delta_x(x_m: torch.Tensor, v0: torch.Tensor) -> np.ndarray:
    """Δx = x(3 s) − 3 s · v0 [m] (negative: the ego slows) from the forward positions x(3 s) (B,)."""
    return (x_m.double() - v0 * HORIZON_S).numpy()


def lateral_trend_y(batch) -> np.ndarray:
    """y(3 s) [m] of driving on at the history's own speed and yaw rate (B,)."""
    trend = history_trend_xy(batch[EGO_HISTORY_XYZ].numpy(), batch[EGO_HISTORY_ROT].numpy(), HORIZON_IDX + 1)
    return trend[:, HORIZON_IDX, 1]


def per_sample_reaction(checkpoint: str, data_dir: str, n: int, all_clips: bool, seed: int = 1234,
                        cameras: str = "real") -> dict:  # fmt: skip
    """Arrays over samples: "gt" and "model" Δx [m], "gt_y" and "model_y" Δy [m], "a0" [m/s], "clip" ids,
    "turn" (the CoC label's lateral decision is a Turn)."""
    vla, ev, batches = heldout_batches(checkpoint, data_dir, n, all_clips)
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {"gt": [], "model": [], "gt_y": [], "model_y": [], "a0": [], "clip": [], "turn": []}
    with torch.no_grad():
        for b in batches():
            v0, a0 = history_speed(b)
            s = vla.sample_trajectories(camera_prompt(b, cameras)[0], num_samples=ev.k, temperature=ev.temperature,
                                        top_p=ev.top_p, flow_steps=ev.flow_steps, fast=not vla.cfg.inputs.use_coc,
                                        max_new_tokens=ev.max_new_tokens, generator=g)  # fmt: skip
            out["gt"].append(delta_x(b[EGO_FUTURE_XYZ][:, HORIZON_IDX, 0], v0))
            out["model"].append(delta_x(s.xyz[:, :, HORIZON_IDX, 0].double().mean(1), v0))
            y_trend = lateral_trend_y(b)
            out["gt_y"].append(b[EGO_FUTURE_XYZ][:, HORIZON_IDX, 1].double().numpy() - y_trend)
            out["model_y"].append(s.xyz[:, :, HORIZON_IDX, 1].double().mean(1).numpy() - y_trend)
            out["a0"].append(a0.numpy())
            out["clip"] += list(b[CLIP_IDS])
            out["turn"] += [parse(c).lateral == "Turn" for c in b[COT_TEXT]]
    return {k: (np.concatenate(v) if k not in ("clip", "turn") else np.asarray(v)) for k, v in out.items()}


def slope_ci(x: np.ndarray, y: np.ndarray, clips: np.ndarray) -> tuple[float, float, float]:
    """(least-squares slope of y on x, its 95 % interval resampling whole clips)."""
    groups = [np.flatnonzero(clips == c) for c in sorted(set(clips.tolist()))]

    def slope(idx) -> float:
        rows = np.concatenate([groups[i] for i in idx])
        return float(np.polyfit(x[rows], y[rows], 1)[0]) if np.ptp(x[rows]) > 0 else float("nan")

    return slope(range(len(groups))), *group_bootstrap(slope, len(groups), resamples=2000)


def parse_args(doc: str, cameras: bool = False) -> argparse.Namespace:
    """CKPT [CKPT ...] --data DIR [--samples N] [--all] [--threads N] (sets torch's thread count)
    [--cameras real|grey|swapped] (with ``cameras``)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--all", action="store_true", help="every sample of DATA (a set no model trained on)")
    ap.add_argument("--threads", type=int, default=2)
    if cameras:
        ap.add_argument("--cameras", choices=CAMERA_CONDITIONS, default="real",
                        help="the images the model sees (grey / another clip's: does the reaction come from them?)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    return a


def main() -> int:
    a = parse_args(__doc__, cameras=True)
    print("| checkpoint | n | GT slows, history slowing: GT / model Δx(3 s) [m] | GT slows, history steady: "
          "GT / model Δx(3 s) [m] | steady history: slope model on GT [95 % CI, clips] | GT turns: GT / model |Δy(3 s)| "
          "along the GT's side [m] | lateral: slope model Δy on GT Δy [95 % CI, clips] | the same without intersection "
          "turns | seconds |\n"
          "|---|---:|---|---|---|---|---|---|---:|")
    for ck in a.checkpoints:
        tic = time.perf_counter()
        r = per_sample_reaction(ck, a.data, a.samples, a.all, cameras=a.cameras)
        slows = r["gt"] <= GT_SLOWS_M
        cells = []
        for m in (slows & (r["a0"] <= SLOWING_MPS), slows & (r["a0"] > SLOWING_MPS)):
            cells.append(f"n={int(m.sum())}: {r['gt'][m].mean():+.2f} / {r['model'][m].mean():+.2f}" if m.any() else "–")
        steady = r["a0"] > SLOWING_MPS
        sl, lo, hi = slope_ci(r["gt"][steady], r["model"][steady], r["clip"][steady])
        turns = np.abs(r["gt_y"]) >= GT_TURNS_M
        side = np.sign(r["gt_y"][turns])
        turn_cell = (f"n={int(turns.sum())}: {np.mean(side * r['gt_y'][turns]):+.2f} / "
                     f"{np.mean(side * r['model_y'][turns]):+.2f}") if turns.any() else "–"  # fmt: skip
        ly, llo, lhi = slope_ci(r["gt_y"], r["model_y"], r["clip"])
        road = ~r["turn"]
        ry, rlo, rhi = slope_ci(r["gt_y"][road], r["model_y"][road], r["clip"][road])
        print(f"| {ck}{'' if a.cameras == 'real' else f' ({a.cameras} cameras)'} | {len(r['gt'])} | {cells[0]} | {cells[1]} | {sl:+.2f} [{lo:+.2f}, {hi:+.2f}] (n={int(steady.sum())}) "
              f"| {turn_cell} | {ly:+.2f} [{llo:+.2f}, {lhi:+.2f}] (n={len(r['gt_y'])}) "
              f"| {ry:+.2f} [{rlo:+.2f}, {rhi:+.2f}] (n={int(road.sum())}) "
              f"| {time.perf_counter() - tic:.0f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
