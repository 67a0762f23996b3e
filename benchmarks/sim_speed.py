"""Simulator speed: steps/s and real-time factor of the runtime with traffic, no rendering.

Scenario: a 3-lane, 800 m straight road, 20 IDM actors (half of them MOBIL lane changers), a
20 s duration, the constant-velocity baseline as the ego policy, the tracking controller
(10 ms physics sub-steps). Goal: real-time factor ≥ 100× on one core. Then N rollouts through
Ray with ``num_cpus`` 1 vs 2 (scaling of the batch path).

    PYTHONPATH=src .venv/bin/python benchmarks/sim_speed.py [--rollouts 8] [--profile]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from cordillera.sim.policies.baselines import ConstantVelocityPolicy
from cordillera.sim.runtime import SimConfig, run_rollout
from cordillera.world.map import Lane, RoadMap
from cordillera.world.scenario import ActorSpec, EgoSpec, IdmBehavior, IdmParams, Scenario

DURATION_US = 20_000_000
N_ACTORS = 20


def make_scenario(n_actors: int = N_ACTORS, seed: int = 0) -> Scenario:
    rng = np.random.default_rng(seed)
    n_lanes, width, length = 3, 3.6, 800.0
    lanes = {}
    for k in range(n_lanes):
        lanes[f"L{k}"] = Lane(f"L{k}", np.stack([np.linspace(0, length, 41), np.full(41, k * width)], -1),
                              width_m=width, left_neighbor=f"L{k + 1}" if k < n_lanes - 1 else None,
                              right_neighbor=f"L{k - 1}" if k else None)
    actors = []
    for i in range(n_actors):
        k = i % n_lanes
        x = 30.0 + 25.0 * (i // n_lanes) + rng.uniform(0, 8)
        v = float(rng.uniform(8, 14))
        actors.append(ActorSpec(id=f"car{i}", kind="car", x_m=x, y_m=k * width, yaw_rad=0.0, speed_mps=v,
                                behavior=IdmBehavior(route_lane_ids=(f"L{k}",), allow_lane_change=i % 2 == 0,
                                                     params=IdmParams(desired_speed_mps=v + 2))))
    ego = EgoSpec(x_m=5.0, y_m=width, yaw_rad=0.0, speed_mps=10.0, route_lane_ids=("L1",))
    return Scenario(id=f"bench-{seed}", family="bench", category="nominal", seed=seed, params={},
                    map=RoadMap(lanes=lanes), ego=ego, actors=tuple(actors), duration_us=DURATION_US)


def one_rollout(seed: int) -> tuple[float, float, int, str]:
    """(wall s, process CPU s, control steps, status) of one 20 s rollout."""
    scn = make_scenario(seed=seed)
    c0, p0 = time.perf_counter(), time.process_time()
    ro = run_rollout(scn, ConstantVelocityPolicy(), SimConfig(), seed=seed)
    return time.perf_counter() - c0, time.process_time() - p0, len(ro.steps), ro.status


def ray_rollouts(n: int, num_cpus: int) -> float:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        remote = ray.remote(num_cpus=1)(one_rollout)
        ray.get([remote.remote(0) for _ in range(2 * num_cpus)])  # start and warm every worker (imports)
        c0 = time.perf_counter()
        out = ray.get([remote.remote(s) for s in range(n)])
        wall = time.perf_counter() - c0
        assert all(st == "ok" for *_, st in out)
        return wall
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rollouts", type=int, default=8, help="rollouts for the Ray scaling run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    one_rollout(0)  # warm-up (imports, caches)
    if args.profile:
        import cProfile
        import pstats

        cProfile.run("one_rollout(0)", "/tmp/sim_speed.prof")
        pstats.Stats("/tmp/sim_speed.prof").sort_stats("cumulative").print_stats(25)
        return
    walls, cpus = [], []
    for r in range(args.repeats):
        wall, cpu, n_steps, status = one_rollout(r)
        assert status == "ok", status
        walls.append(wall)
        cpus.append(cpu)
    wall, cpu = float(np.min(walls)), float(np.min(cpus))
    sim_s = DURATION_US * 1e-6
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"load average {load:.1f}")
    print("| measure (best of %d) | wall clock | process CPU time |\n|---|---:|---:|" % args.repeats)
    print(f"| time per 20 s rollout ({n_steps} control steps) | {wall * 1e3:.0f} ms | {cpu * 1e3:.0f} ms |")
    print(f"| steps / s | {n_steps / wall:.0f} | {n_steps / cpu:.0f} |")
    print(f"| real-time factor (goal ≥ 100×) | **{sim_s / wall:.0f}×** | **{sim_s / cpu:.0f}×** |")
    if args.no_ray:
        return
    w1 = ray_rollouts(args.rollouts, 1)
    w2 = ray_rollouts(args.rollouts, 2)
    print(f"\nRay, {args.rollouts} rollouts:\n| num_cpus | wall s | rollouts / s |\n|---:|---:|---:|")
    print(f"| 1 | {w1:.2f} | {args.rollouts / w1:.2f} |")
    print(f"| 2 | {w2:.2f} | {args.rollouts / w2:.2f} |")
    print(f"\nscaling 1 → 2 workers: **{w1 / w2:.2f}×**")


if __name__ == "__main__":
    main()
