"""Render speed: four cameras (the model's default four) at 320x576, EGL renderer vs. the OpenCV
painter fallback in the same run, plus H.264 MP4 encode speed.

    PYTHONPATH=src .venv/bin/python benchmarks/render_speed.py [--frames 40] [--model ftheta] [--rounds 2]

Targets (DESIGN.md §8 / task): GL >= 100 four-camera frames/s, fallback >= 40 four-camera frames/s.
The ego moves 1 m per frame so the dynamic mesh and camera poses change every frame. Prints
frames/s from wall time and from process CPU time (the latter is less sensitive to other
processes sharing the machine; llvmpipe's threads count towards it). The GL renderer is also
measured with ``grass_background=False`` (the grass plane drawn as a 2 km quad, the Session 1 path)
and, for f-theta, with ``ftheta="direct"`` (per-vertex lens projection on tessellated geometry, no
tiles, no remap) in the same run; GL rows alternate over ``--rounds`` rounds and keep each path's
best round.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from cordillera.render import DEFAULT_MODEL_CAMERAS, default_rig  # noqa: E402
from cordillera.render.cv_renderer import CvRenderer  # noqa: E402
from cordillera.render.demo import demo_scenario, initial_world_state  # noqa: E402
from cordillera.render.gl_renderer import GLRenderer, egl_available  # noqa: E402
from cordillera.render.video import Mp4Writer  # noqa: E402


def _states(scenario, n):
    ws0 = initial_world_state(scenario)
    out = []
    for k in range(n):
        ego = dataclasses.replace(ws0.ego, x_m=ws0.ego.x_m + 1.0 * k)
        actors = {a: dataclasses.replace(s, x_m=s.x_m + 0.8 * k * np.cos(s.yaw_rad)) for a, s in ws0.actors.items()}
        out.append(dataclasses.replace(ws0, t_us=k * 100_000, ego=ego, actors=actors))
    return out


def bench_renderer(cls, scenario, rig, states, **kwargs):
    r = cls(scenario, rig, **kwargs)
    for cam in DEFAULT_MODEL_CAMERAS:  # warm-up: tile maps, buffers, shader compile
        r.render(states[0], cam, 0, 0)
    w0, c0 = time.perf_counter(), time.process_time()
    for ws in states:
        for cam in DEFAULT_MODEL_CAMERAS:
            r.render(ws, cam, ws.t_us - 33_333, ws.t_us)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return len(states) / wall, len(states) / cpu


def bench_mp4(frames):
    with tempfile.TemporaryDirectory() as d:
        w0 = time.perf_counter()
        with Mp4Writer(os.path.join(d, "x.mp4"), 10.0) as w:
            for f in frames:
                w.write(f)
        wall = time.perf_counter() - w0
        size = os.path.getsize(os.path.join(d, "x.mp4"))
    return len(frames) / wall, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--model", default="ftheta", choices=["ftheta", "pinhole"])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    sc = demo_scenario()
    rig = default_rig(DEFAULT_MODEL_CAMERAS, height=320, width=576, model=args.model)
    states = _states(sc, args.frames)
    rows = []
    if egl_available():
        paths = {"tiles": {}, "grass drawn": {"grass_background": False}}
        if args.model == "ftheta":
            paths["direct"] = {"ftheta": "direct"}
        best = {name: (0.0, 0.0) for name in paths}
        for _ in range(args.rounds):
            for name, kwargs in paths.items():
                f, c = bench_renderer(GLRenderer, sc, rig, states, **kwargs)
                best[name] = (max(best[name][0], f), max(best[name][1], c))
        fps_gl, cpu_gl = best["tiles"]
        rows.append(("moderngl EGL (llvmpipe)", fps_gl, cpu_gl, 100.0))
        rows.append(("  same, grass drawn (old)", *best["grass drawn"], float("nan")))
        if "direct" in best:
            rows.append(("  same, f-theta direct", *best["direct"], 100.0))
    else:
        fps_gl = None
        rows.append(("moderngl EGL", float("nan"), float("nan"), 100.0))
    fps_cv, cpu_cv = bench_renderer(CvRenderer, sc, rig, states)
    rows.append(("OpenCV painter fallback", fps_cv, cpu_cv, 40.0))
    frames = [CvRenderer(sc, rig).render(ws, "camera_front_wide_120fov", 0, ws.t_us) for ws in states[:20]] * 5
    enc_fps, size = bench_mp4(frames)
    print(f"scene: render_demo ({len(sc.actors)} actors, 1 signal), cameras: {', '.join(DEFAULT_MODEL_CAMERAS)}, "
          f"{args.model} 320x576, {args.frames} frames, load avg {os.getloadavg()[0]:.2f} (start {load0:.2f})")
    print(f"{'renderer':28s} {'4-cam fps (wall)':>17s} {'4-cam fps (cpu)':>16s} {'target':>7s}")
    for name, f, c, tgt in rows:
        print(f"{name:28s} {f:17.1f} {c:16.1f} {tgt:7.0f}")
    if fps_gl:
        print(f"GL / fallback speed ratio (wall): {fps_gl / fps_cv:.2f}x; GL baked grass / grass drawn: "
              f"{fps_gl / best['grass drawn'][0]:.2f}x wall, {cpu_gl / best['grass drawn'][1]:.2f}x cpu")
        if "direct" in best:
            print(f"GL f-theta direct / tiles: {best['direct'][0] / fps_gl:.2f}x wall, {best['direct'][1] / cpu_gl:.2f}x cpu")
    print(f"MP4 (libx264 veryfast, yuv420p, 320x576): {enc_fps:.0f} frames/s encode, {size / 1e3:.0f} kB for 100 frames")


if __name__ == "__main__":
    main()
