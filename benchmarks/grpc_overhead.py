"""gRPC overhead: per-step time of the full closed loop over AlpaSim's protocol vs in-process.

Same scenario (``car_following-01000``, shortened), same policy, same controller; in-process =
``sim.runtime.run_rollout``; gRPC = ``serve.client.run_rollout_grpc`` against services running as
subprocesses (``python -m cordillera serve ...``, loopback), i.e. driver + controller + physics
(+ sensorsim when cameras are rendered, JPEG q95 as AlpaSim). Goal: ≤ 15 % overhead.

Wall time is what a user waits for but swings with machine load; the CPU columns (client
``process_time`` + every service process's utime+stime from ``/proc``) count the work done and
are the comparison to trust on a shared machine.

Rows: the unprivileged expert without cameras, the same with the model's 4 cameras, and (with
``--vla``) the nano VLA (random weights: speed only; fast path, no CoC decoding) with 4 cameras. Then the render RPC latency:
``batch_render_rgb`` of 4 cameras and ``render_rgb`` of one, vs rendering in-process.

    PYTHONPATH=src .venv/bin/python benchmarks/grpc_overhead.py [--steps 40] [--repeats 3] [--vla]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time

import numpy as np

from cordillera.render.rig import DEFAULT_MODEL_CAMERAS
from cordillera.serve.client import Channels, RemoteRenderer, ServiceAddresses, run_rollout_grpc
from cordillera.serve.launcher import ServiceSupervisor
from cordillera.serve.stubs import sensorsim_pb2
from cordillera.sim.runtime import SimConfig, run_rollout
from cordillera.world import generator


def _scenario(steps: int):
    sc = generator.make("car_following", 1000)
    return dataclasses.replace(sc, duration_us=steps * 100_000)


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a (service) process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _best(fn, repeats: int, pids=()) -> tuple[float, float]:
    """(best wall s, best CPU s of this process + ``pids``) over ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        s0 = sum(_proc_cpu_s(p) for p in pids)
        c0, p0 = time.perf_counter(), time.process_time()
        ro = fn()
        wall.append(time.perf_counter() - c0)
        cpu.append(time.process_time() - p0 + sum(_proc_cpu_s(p) for p in pids) - s0)
        assert ro.status == "ok", ro.error
    return min(wall), min(cpu)


def loop_rows(args, policy_name: str, make_policy, cameras, services) -> tuple[float, float, float, float]:
    """(in-process ms/step, gRPC ms/step, in-process CPU ms/step, gRPC CPU ms/step incl. services),
    best of ``repeats``."""
    from cordillera.render import make_renderer

    sc = _scenario(args.steps)
    cfg = SimConfig(cameras=tuple(cameras))
    n = args.steps + 1
    renderer = make_renderer(sc) if cameras else None
    run_rollout(sc, make_policy(), cfg, renderer)  # warm-up (GL programs, caches, model load)
    t_in, c_in = (x / n * 1e3 for x in _best(lambda: run_rollout(sc, make_policy(), cfg, renderer), args.repeats))
    with ServiceSupervisor(services, policy_name) as sup:
        addr = sup.addresses()
        if not cameras:
            addr = dataclasses.replace(addr, sensorsim=None)
        run_rollout_grpc(sc, addr, cfg, policy_name)  # warm-up (server-side renderer, model load)
        pids = [p.proc.pid for name, p in sup.procs.items() if name in services]
        t_rpc, c_rpc = (x / n * 1e3 for x in _best(lambda: run_rollout_grpc(sc, addr, cfg, policy_name), args.repeats,
                                                   pids))
    return t_in, t_rpc, c_in, c_rpc


def render_latency(args) -> list[tuple[str, float, float]]:
    """(what, p50 ms, p90 ms) of remote vs local rendering of 4 cameras / 1 camera."""
    from cordillera.render import make_renderer
    from cordillera.sim.traffic import init_traffic, signal_states
    from cordillera.world.scenario import AgentState, WorldState

    sc = _scenario(args.steps)
    ws = WorldState(0, AgentState(sc.ego.x_m, sc.ego.y_m, sc.ego.yaw_rad), init_traffic(sc).states, signal_states(sc, 0))
    local = make_renderer(sc)
    rows = []

    def stats(fn, n):
        fn()
        ts = []
        for _ in range(n):
            c0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - c0) * 1e3)
        return statistics.median(ts), float(np.percentile(ts, 90))

    rows.append(("in-process render, 4 cameras", *stats(
        lambda: [local.render(ws, c, -30_000, 0) for c in DEFAULT_MODEL_CAMERAS], args.render_calls)))
    with ServiceSupervisor(("driver", "sensorsim")) as sup:
        chans = Channels(ServiceAddresses(driver=sup.procs["driver"].address, sensorsim=sup.procs["sensorsim"].address))
        rr = RemoteRenderer(chans, sc, DEFAULT_MODEL_CAMERAS, sensorsim_pb2.JPEG)

        def batch():
            rr._key = None  # force a new batch
            return rr.render(WorldState(0, ws.ego, ws.actors, ws.signals), DEFAULT_MODEL_CAMERAS[0], -30_000, 0)

        rows.append(("batch_render_rgb, 4 cameras, JPEG q95 (incl. decode)", *stats(batch, args.render_calls)))
        req = rr.request_for(ws, DEFAULT_MODEL_CAMERAS[1], -30_000, 0)
        rows.append(("render_rgb, 1 camera, JPEG q95 (no decode)", *stats(
            lambda: chans.stubs["sensorsim"].render_rgb(req, timeout=60), args.render_calls)))
        rows.append(("in-process render, 1 camera", *stats(
            lambda: local.render(ws, DEFAULT_MODEL_CAMERAS[1], -30_000, 0), args.render_calls)))
        chans.close()
    return rows


def _nano_checkpoint(tmp: str) -> str:
    import torch

    from cordillera.model.configuration import get_preset
    from cordillera.model.modeling import CordilleraVLA
    from cordillera.model.tokenizer import load_tokenizer

    torch.manual_seed(0)
    cfg = get_preset("nano")
    model = CordilleraVLA(cfg)
    model.save_pretrained(tmp, tokenizer=load_tokenizer(cfg))
    return tmp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40, help="control steps per rollout (after t=0)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--render-calls", type=int, default=20)
    ap.add_argument("--vla", action="store_true", help="also the nano VLA (random weights, fast path) with 4 cameras")
    ap.add_argument("--vla-steps", type=int, default=15)
    args = ap.parse_args()

    from cordillera.sim.expert import ExpertPolicy

    print(f"# grpc_overhead ({platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f})")
    rows = []
    expert = lambda: ExpertPolicy(privileged=False)  # noqa: E731 - what the driver service serves
    rows.append(("expert (unprivileged), no cameras", *loop_rows(args, "expert", expert, (),
                                                                 ("driver", "controller", "physics"))))
    rows.append(("expert (unprivileged), 4 cameras", *loop_rows(args, "expert", expert, DEFAULT_MODEL_CAMERAS,
                                                                ("driver", "controller", "physics", "sensorsim"))))
    if args.vla:
        from cordillera.model.policy import VLAPolicy

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = _nano_checkpoint(tmp)
            vargs = argparse.Namespace(**{**vars(args), "steps": args.vla_steps, "repeats": min(args.repeats, 2)})
            rows.append(("nano VLA (random weights, fast path: no CoC), 4 cameras", *loop_rows(
                vargs, f"vla:{ckpt}?fast=1", lambda: VLAPolicy(ckpt, fast=True), DEFAULT_MODEL_CAMERAS,
                ("driver", "controller", "physics", "sensorsim"))))
    print("\n| loop | in-process ms/step | gRPC ms/step | overhead | in-process CPU ms/step | gRPC CPU ms/step "
          "(client + services) | CPU overhead |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, a, b, ca, cb in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {100 * (b - a) / a:+.0f} % | {ca:.1f} | {cb:.1f} | "
              f"{100 * (cb - ca) / ca:+.0f} % |")
    print(f"(load {os.getloadavg()[0]:.1f} after the loops)")
    print("\n| render call | p50 ms | p90 ms |\n|---|---:|---:|")
    for name, p50, p90 in render_latency(args):
        print(f"| {name} | {p50:.1f} | {p90:.1f} |")


if __name__ == "__main__":
    main()
