"""The model's plans on the expert's closed-loop states: a fast proxy for inference settings.

The privileged expert drives each scenario (with cameras rendered as in `cordillera eval closed-loop`);
at every ``--every``-th control step each VLA setting gets the same observation through its own
``VLAPolicy`` (frame buffer, history, nav text — the closed-loop input path) and plans without
driving. Every plan is compared with the expert's plan made at the same step: L2 error of the
position at 3 s and 6.4 s, split at 6.4 s into lateral and longitudinal (rig frame at t0). A
constant-velocity plan (the history's last speed, straight ahead) is the baseline of the same run.

Unlike `eval closed-loop` the states do not depend on the model (no compounding), so one scenario
takes ~20 s per setting instead of minutes, and settings are compared on identical inputs.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/shadow_plans.py CKPT
       [--scenarios road_following:1000,car_following:1000] [--every 5] [--render-hw 160x288]
       [--settings '{"default": {}, "greedy CoC": {"temperature": 0}, "fast": {"fast": true}}']
"""

# make bench: skip — needs a checkpoint given as an argument (see Usage above)
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from cordillera.data.generate import expert_policy
from cordillera.model.policy import VLAPolicy, load_model
from cordillera.render import make_renderer
from cordillera.render.rig import default_rig
from cordillera.sim.runtime import SimConfig, run_rollout
from cordillera.world.generator import make

DEFAULT_SCENARIOS = ("road_following:1000", "car_following:1000", "jaywalker:1000", "traffic_light:1000",
                     "merge_on_ramp:1000", "cut_in:1000", "construction_zone:1000", "emergency_brake_lead:1000")
DEFAULT_SETTINGS = {"default (CoC T=0.6)": {}, "greedy CoC (T=0)": {"temperature": 0.0},
                    "fast (no CoC)": {"fast": True}}
I_3S, I_END = 29, 63  # plan pose indices (after the origin) at 3.0 s and 6.4 s
CV = "constant velocity"


class ExpertWithShadows:
    """The expert drives; every ``every``-th step each shadow policy plans on the same observation."""

    name = "expert"

    def __init__(self, shadows: dict[str, VLAPolicy], every: int):
        self.expert, self.shadows, self.every = expert_policy(None), shadows, int(every)
        self.step = 0
        self.errors: dict[str, list] = {name: [] for name in [*shadows, CV]}

    def start(self, session):
        self.expert.start(session)
        for p in self.shadows.values():
            p.start(session)

    def observe_world(self, world_state, scenario):
        self.expert.observe_world(world_state, scenario)

    def plan(self, obs, t_now_us, t_query_us):
        ref = self.expert.plan(obs, t_now_us, t_query_us)
        self.step += 1
        if self.step % self.every:  # keep the shadows' frame buffers filled between their plans
            for p in self.shadows.values():
                p.observe(obs, int(t_now_us))
            return ref
        outs = {name: p.plan(obs, t_now_us, t_query_us) for name, p in self.shadows.items()}
        if any(o.warming_up for o in outs.values()):
            return ref
        ref_xy = np.asarray(ref.xyz_rig)[1:, :2]
        for name, o in outs.items():
            self.errors[name].append(_errors(np.asarray(o.xyz_rig)[1:, :2], ref_xy))
        hist = next(iter(self.shadows.values())).last_inputs["ego_history_xyz"].double().numpy()
        v0 = float(np.linalg.norm(hist[-1, :2] - hist[-2, :2]) / 0.1)  # [m/s] the last history step
        self.errors[CV].append(_errors(np.stack([v0 * 0.1 * np.arange(1, 65), np.zeros(64)], -1), ref_xy))
        return ref

    def close(self):
        self.expert.close()
        for p in self.shadows.values():
            p.close()


def _errors(plan_xy: np.ndarray, ref_xy: np.ndarray) -> tuple[float, ...]:
    """L2 at 3 s and 6.4 s, |lateral| and |longitudinal| at 6.4 s, signed longitudinal at 6.4 s [m]."""
    d3, d = plan_xy[I_3S] - ref_xy[I_3S], plan_xy[I_END] - ref_xy[I_END]
    return float(np.hypot(*d3)), float(np.hypot(*d)), abs(float(d[1])), abs(float(d[0])), float(d[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS), help="family:seed, comma-separated")
    ap.add_argument("--every", type=int, default=5, help="plan every this many 0.1 s control steps")
    ap.add_argument("--render-hw", default="160x288")
    ap.add_argument("--settings", default=json.dumps(DEFAULT_SETTINGS), help="JSON {name: VLAPolicy kwargs}")
    ap.add_argument("--seed", type=int, default=0, help="rollout seed")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    settings = json.loads(a.settings)
    model, _ = load_model(a.checkpoint)
    h, w = (int(v) for v in a.render_hw.lower().split("x"))
    cams = tuple(model.cfg.inputs.cameras)
    per_scn: dict[str, dict[str, np.ndarray]] = {}
    t_start = time.time()
    for spec in a.scenarios.split(","):
        fam, seed = spec.strip().split(":")
        sc = make(fam, int(seed))
        shadows = {name: VLAPolicy(model, threads=1, seed=0, **kw) for name, kw in settings.items()}
        drv = ExpertWithShadows(shadows, a.every)
        # no policy timeout: the shadows plan inside the expert's call (K settings per step)
        ro = run_rollout(sc, drv, SimConfig(cameras=cams, policy_timeout_s=0),
                         make_renderer(sc, default_rig(cams, height=h, width=w)), seed=a.seed)
        if ro.failed:
            raise SystemExit(f"{spec}: expert rollout failed: {ro.error}")
        per_scn[spec] = {k: np.asarray(v) for k, v in drv.errors.items()}
        print(f"  {spec}: {len(drv.errors[CV])} plans per setting, {time.time() - t_start:.0f} s", flush=True)
    names = [*settings, CV]
    ref = names[0]
    print(f"\nshadow plans vs the expert's plan at the same step ({len(per_scn)} scenarios, every "
          f"{a.every / 10:.1f} s; mean over scenarios of the per-scenario mean error, m)\n")
    print(f"| setting | L2 @ 3 s | L2 @ 6.4 s | lateral @ 6.4 s | longitudinal @ 6.4 s | ahead (+) / behind (−) "
          f"the expert @ 6.4 s | L2 @ 6.4 s / {ref} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = np.mean([per_scn[s][ref][:, 1].mean() for s in per_scn])
    for n in names:
        m = np.mean([per_scn[s][n].mean(0) for s in per_scn], axis=0)
        print(f"| {n} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.2f} | {m[4]:+.2f} | {m[1] / base:.2f}× |")
    print("\nper scenario, L2 @ 6.4 s: " + "; ".join(
        f"{s} " + " / ".join(f"{per_scn[s][n][:, 1].mean():.1f}" for n in names) for s in per_scn))
    print(f"({time.time() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
