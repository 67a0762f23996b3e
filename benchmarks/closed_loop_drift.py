"""Where closed-loop runs leave their lane: the ego's offset from its route's centreline and its heading
relative to it over time, and what the road did where a rollout first went off-road.

For every rollout of an `eval closed-loop` (or `sim run`) output directory: the signed lateral offset r
(left +) and heading error (left +) of the ego against its scenario's route polyline at 10 Hz. The table
gives, at fixed times, their mean and median over the rollouts still on the road and on a straight piece
of route there (the route turns < 1° over the next 20 m) — a model that keeps its lane stays at 0, one
that drifts shows a growing mean, and its sign says to which side. Then, per first off-road event (the
`offroad` metric's first non-zero step; a rollout's aggregate score may cut it earlier, at a collision or
a 4 m departure from the ground truth), whether the route was straight there, and the offset and heading
3 s before.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/closed_loop_drift.py RUN_DIR [RUN_DIR ...] [--policy vla]
       (RUN_DIR: an `eval closed-loop --out` directory; --policy picks its sub-directory, e.g. vla / expert)
"""

# make bench: skip — needs closed-loop run directories given as arguments (see Usage above)
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from cordillera.sim.batch import SCENARIO_JSON, load_rollout
from cordillera.world.map import Lane
from cordillera.world.scenario import Scenario

TIMES_S = (3.0, 5.0, 8.0, 12.0)
STRAIGHT_DEG = 1.0  # [deg] the route turns less than this over the next LOOK_M: a straight piece
LOOK_M = 20.0
BEFORE_S = 3.0  # [s] how long before the first off-road step the offset and heading are reported


def route_frame(scenario: Scenario, xy: np.ndarray, yaw: np.ndarray) -> dict[str, np.ndarray]:
    """Offset r [m] (left +), heading error [deg] (left +) and the route's turn over the next `LOOK_M` [deg]
    for ego positions xy (N, 2) and headings yaw (N,) [rad]."""
    lane = Lane(id="route", centerline_xy=scenario.route_polyline_xy())
    s, r = lane.to_frenet(xy)
    heading = lane.heading_at(s)
    ahead = lane.heading_at(np.clip(s + LOOK_M, 0.0, lane.length_m))
    wrap = lambda a: np.degrees(np.angle(np.exp(1j * a)))  # noqa: E731
    return {"r_m": np.asarray(r, dtype=float), "heading_deg": wrap(yaw - heading), "turn_deg": wrap(ahead - heading)}


def first_offroad_s(metrics: pd.DataFrame) -> float | None:
    off = metrics[(metrics["name"] == "offroad") & (metrics["values"] > 0)]
    return None if off.empty else float(off["timestamps_us"].min()) / 1e6


def rollouts(run: Path, policy: str):
    """(scenario id, seed, t [s], route frame, first off-road time or None) per rollout of run/policy."""
    for scen_dir in sorted((run / policy / "rollouts").iterdir()):
        sc = Scenario.from_dict(json.loads((scen_dir / SCENARIO_JSON).read_text()))
        for rd in sorted(p for p in scen_dir.iterdir() if p.is_dir()):
            ro, _ = load_rollout(rd / "rollout")
            xy = np.array([[s.ego.x_m, s.ego.y_m] for s in ro.steps])
            yaw = np.array([s.ego.yaw_rad for s in ro.steps])
            t = np.array([s.t_us for s in ro.steps]) / 1e6
            yield scen_dir.name, ro.seed, t, route_frame(sc, xy, yaw), first_offroad_s(pd.read_parquet(rd / "metrics.parquet"))


def summarise(run: Path, policy: str) -> None:
    rows = list(rollouts(run, policy))
    print(f"\n### {run} ({policy}, {len(rows)} rollouts)\n")
    print("| t [s] | n (on road, straight route) | offset mean / median [m] | heading error mean / median [deg] | share heading left |")
    print("|---:|---:|---|---|---:|")
    for T in TIMES_S:
        r, h = [], []
        for _, _, t, f, t_off in rows:
            i = int(np.searchsorted(t, T))
            if i < len(t) and abs(f["turn_deg"][i]) < STRAIGHT_DEG and (t_off is None or t_off > T):
                r.append(f["r_m"][i])
                h.append(f["heading_deg"][i])
        if r:
            r, h = np.array(r), np.array(h)
            print(f"| {T:.0f} | {len(r)} | {r.mean():+.2f} / {np.median(r):+.2f} | {h.mean():+.2f} / {np.median(h):+.2f} "
                  f"| {np.mean(h > 0):.2f} |")
    events = [(sid, seed, t, f, t_off) for sid, seed, t, f, t_off in rows if t_off is not None]
    straight = left = 0
    for _, _, t, f, t_off in events:
        i = int(np.searchsorted(t, t_off))
        j = int(np.searchsorted(t, t_off - BEFORE_S))
        straight += bool(np.all(np.abs(f["turn_deg"][j:i + 1]) < STRAIGHT_DEG))
        left += bool(f["r_m"][min(i, len(t) - 1)] > 0)
    n = len(events)
    if n:
        print(f"\nfirst off-road steps: {n} of {len(rows)} rollouts; on a straight route for the {BEFORE_S:.0f} s before: "
              f"{straight} ({straight / n:.0%}); left of the route: {left} ({left / n:.0%})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--policy", default="vla")
    a = ap.parse_args()
    for run in a.runs:
        summarise(run, a.policy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
