"""Does the vision tower see the car's drift in closed loop? Drives a probe-trained VLA
(`vision_probe_weight > 0`) in the simulator, reads its vision probe (`CordilleraVLA.read_road`) on
the very inputs of every inference, and compares the reading with the true lane quantities of the
ego's pose at that time (`train.data.lane_ahead` on the scenario map) — against the no-image
baseline "centred and straight", and as a correlation: a probe that sees the drift reads a heading
error that grows with the true one.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/vision_probe_closed_loop.py CKPT
       [--scenarios car_following-01006,road_following-01002,...] [--replan-every 0.5] [--render-hw 160x288]
"""

# make bench: skip — needs checkpoints or data given as arguments (see Usage above)
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from cordillera.model.modeling import PROBE_FIELDS
from cordillera.model.policy import VLAPolicy
from cordillera.sim.runtime import SimConfig, run_rollout
from cordillera.train.data import lane_ahead
from cordillera.train.evaluate import PROBE_GROUPS, RendererFactory
from cordillera.world.generator import make


class ProbingPolicy(VLAPolicy):
    """A `VLAPolicy` that also reads its vision probe on the inputs of every new inference."""

    def start(self, session) -> None:
        super().start(session)
        self.readings: list[tuple[int, np.ndarray]] = []  # (t0 µs, probe reading (F,) SI)

    def plan(self, observation, t_now_us: int, t_query_us: int):
        before = self.last_inputs
        plan = super().plan(observation, t_now_us, t_query_us)
        sample = self.last_inputs  # a new dict only when the model ran (not while a plan is held)
        if sample is not None and sample is not before:
            with torch.inference_mode():
                read = self.model.read_road(self.processor(sample))
            self.readings.append((int(t_now_us), read[0].double().cpu().numpy()))
        return plan


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--scenarios", default="car_following-01006,road_following-01002,emergency_brake_lead-01005,"
                                           "cut_in-01003")
    ap.add_argument("--replan-every", type=float, default=0.5, help="[s] as `eval closed-loop --replan-every`")
    ap.add_argument("--render-hw", default="160x288")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    h, w = (int(v) for v in a.render_hw.split("x"))
    heading = PROBE_FIELDS.index("heading_rad")
    rows = []  # (scenario, t s, truth (F,), valid (F,), read (F,))
    for sid in a.scenarios.split(","):
        fam, seed = sid.rsplit("-", 1)
        sc = make(fam, int(seed))
        policy = ProbingPolicy(a.checkpoint, replan_every_s=a.replan_every)
        if policy.model.model.vision_probe is None:
            raise SystemExit(f"{a.checkpoint}: the model has no vision probe (trained with vision_probe_weight = 0)")
        cams = tuple(policy.cameras)
        tic = time.time()
        ro = run_rollout(sc, policy, SimConfig(cameras=cams), RendererFactory(cams, h, w)(sc), seed=a.seed)
        at = {s.t_us: s.ego for s in ro.steps}
        print(f"\n{sid}: {len(policy.readings)} inferences ({time.time() - tic:.0f} s)")
        print("| t [s] | true heading vs lane [deg] | probe reads [deg] | true offset [m] | probe reads [m] |")
        print("|---:|---:|---:|---:|---:|")
        for t_us, read in policy.readings:
            e = at[t_us]
            truth, valid = lane_ahead(sc, (e.x_m, e.y_m), e.yaw_rad)
            rows.append((sid, t_us / 1e6, truth, valid, read))
            if valid[heading]:
                print(f"| {t_us / 1e6:.1f} | {math.degrees(truth[heading]):+.1f} | {math.degrees(read[heading]):+.1f} | "
                      f"{truth[0]:+.2f} | {read[0]:+.2f} |")
            else:
                print(f"| {t_us / 1e6:.1f} | off the lanes | {math.degrees(read[heading]):+.1f} | – | {read[0]:+.2f} |")
    truth = np.stack([r[2] for r in rows])
    valid = np.stack([r[3] for r in rows])
    read = np.stack([r[4] for r in rows])[:, : truth.shape[1]]  # a lead reading has no closed-loop truth here
    print(f"\nall scenarios, {len(rows)} inferences:")
    print("| lane quantity | n | probe MAE | centred and straight MAE | correlation probe vs truth |")
    print("|---|---:|---:|---:|---:|")
    for g, cols, unit in PROBE_GROUPS:
        v = valid[:, cols]
        if v.size == 0:
            continue
        t, r = truth[:, cols][v], read[:, cols][v]
        corr = float(np.corrcoef(t, r)[0, 1]) if len(t) > 2 and t.std() > 0 and r.std() > 0 else math.nan
        print(f"| {g} | {len(t)} | {np.abs(r - t).mean() * unit:.2f} | {np.abs(t).mean() * unit:.2f} | {corr:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
