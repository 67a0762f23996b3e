"""Golden closed-loop rollouts: the arrays the speed work on sim/traffic.py and sim/expert.py must not change.

``golden_arrays()`` runs a few fixed rollouts (3 smoke-suite scenarios with the expert, the
benchmarks/sim_speed.py scenario with the constant-velocity baseline) and flattens ego and actor
states, plans and every metric into named float arrays. ``sim_golden_rollouts.npz`` holds them as
recorded before the speed-ups (2026-11-22, commit 9b63edc), re-recorded 2026-12-07 when the
controller's standing brake stopped holding plans that move off (car_following:1000 now drives on
after its stop); re-record only for an intended behaviour change:

    .venv/bin/python tests/sim/sim_golden_rollouts.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from cordillera.metrics.closedloop import compute_metrics
from cordillera.sim.expert import ExpertPolicy
from cordillera.sim.policies.baselines import ConstantVelocityPolicy
from cordillera.sim.runtime import SimConfig, run_rollout
from cordillera.world.generator import make

GOLDEN_FILE = Path(__file__).with_name("sim_golden_rollouts.npz")
EXPERT_CASES = (("car_following", 1000), ("cut_in", 1000), ("construction_zone", 1000))
_STATE_FIELDS = ("x_m", "y_m", "yaw_rad", "speed_mps", "accel_mps2", "yaw_rate_radps", "visible")
_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "sim_speed.py"


def _bench_scenario():
    spec = importlib.util.spec_from_file_location("sim_speed_bench", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_scenario(seed=0)


def _rollout_arrays(tag: str, scenario, policy, reference=None) -> tuple[dict[str, np.ndarray], object]:
    ro = run_rollout(scenario, policy, SimConfig(), seed=0, reference=reference)
    assert ro.status == "ok", ro.error
    out = {f"{tag}/t_us": ro.t_us().astype(np.float64),
           f"{tag}/ego": np.array([[float(getattr(s.ego, f)) for f in _STATE_FIELDS] for s in ro.steps])}
    for aid in sorted(ro.steps[0].actors):
        out[f"{tag}/actor/{aid}"] = np.array([[float(getattr(s.actors[aid], f)) for f in _STATE_FIELDS]
                                              for s in ro.steps])
    plans = [s.plan for s in ro.steps]
    # every plan's pose 1 s and 5 s ahead (the controller tracks the first, the horizon shows the rest)
    out[f"{tag}/plans"] = np.array([np.r_[p.xyz_rig[k, :2], p.yaw_rig[k]] for p in plans
                                    if p is not None and not p.warming_up for k in (10, -1)], dtype=np.float64)
    for row in compute_metrics(ro, scenario, reference):
        out[f"{tag}/metric/{row.name}"] = np.where(row.valid, row.values, np.nan)
    return out, ro


def golden_arrays() -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for family, seed in EXPERT_CASES:
        scn = make(family, seed)
        got, ro = _rollout_arrays(f"{family}-{seed}", scn, ExpertPolicy())
        arrays.update(got)
        # the constant-velocity baseline against the expert reference (force-GT from the reference)
        got, _ = _rollout_arrays(f"{family}-{seed}-cv", scn, ConstantVelocityPolicy(), reference=ro)
        arrays.update(got)
    got, _ = _rollout_arrays("bench-0", _bench_scenario(), ConstantVelocityPolicy())
    arrays.update(got)
    return arrays


if __name__ == "__main__":
    a = golden_arrays()
    np.savez_compressed(GOLDEN_FILE, **a)
    print(f"wrote {len(a)} arrays to {GOLDEN_FILE}")
