"""Image and video encoding, and the per-rollout video (AlpaSim ``default`` layout).

- JPEG (quality 95, as AlpaSim's runtime requests, spec/alpasim.md §2.3) and PNG via OpenCV,
  RGB in and out.
- H.264 MP4 through PyAV: libx264, yuv420p, ``movflags=faststart``, preset veryfast, even frame
  size (spec/environment.md §4; ``cv2.VideoWriter('avc1')`` fails here).
- ``read_frames``: frame-accurate decoding by index or by timestamp (frame at or before).
- ``rollout_video``: per step a BEV (top left), a metrics panel (top right) and the camera image
  with the projected plan and the CoC text (bottom), like AlpaSim's ``video.py`` (§4.5); file
  name ``{scene_id}_{rollout_id}_{camera}_default.mp4``.
"""

from __future__ import annotations

import math
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from cordillera.render.bev import render_bev
from cordillera.world.scenario import Scenario, WorldState

__all__ = [
    "JPEG_QUALITY", "encode_jpeg", "decode_jpeg", "encode_png", "decode_png", "decode_image",
    "Mp4Writer", "write_mp4", "read_frames", "video_info", "rollout_video", "rollout_video_name",
    "project_plan", "compose_frame",
]

JPEG_QUALITY = 95  # spec/alpasim.md §2.3: the runtime sends image_quality 95


def _rgb(img) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {a.shape} dtype {a.dtype}")
    return a


def encode_jpeg(rgb, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", _rgb(rgb)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def encode_png(rgb, compression: int = 3) -> bytes:
    ok, buf = cv2.imencode(".png", _rgb(rgb)[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """JPEG or PNG bytes -> HxWx3 uint8 RGB."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"could not decode image ({len(data)} bytes)")
    return np.ascontiguousarray(img[..., ::-1])


decode_jpeg = decode_image
decode_png = decode_image


# ----------------------------------------------------------------------------------------------
# MP4
# ----------------------------------------------------------------------------------------------
class Mp4Writer:
    """Append RGB frames to an H.264 MP4 (odd sizes are padded by one black row/column)."""

    def __init__(self, path: str | Path, fps: float, crf: int = 23, preset: str = "veryfast",
                 tune: str | None = None, gop: int | None = None, threads: int = 0):
        """``tune="zerolatency"`` + a fixed ``gop`` give a stream without B-frames or look-ahead,
        so frame j depends on frames <= j only (the data writer needs that: no leakage from the
        future into decoded past frames). Frame j gets pts j in a 1/fps time base."""
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "faststart"})
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = 1 / rate
        if threads:
            self._stream.codec_context.thread_count = int(threads)
        options = {"preset": preset, "crf": str(int(crf))}
        if tune:
            options["tune"] = tune
        if gop:
            options["x264-params"] = f"keyint={int(gop)}:min-keyint={int(gop)}:scenecut=0"
        self._stream.options = options
        self._size = None
        self.frames = 0

    def write(self, rgb) -> None:
        img = _rgb(rgb)
        h, w = img.shape[:2]
        he, we = h + h % 2, w + w % 2
        if self._size is None:
            self._size = (he, we)
            self._stream.height, self._stream.width = he, we
        if (he, we) != self._size:
            raise ValueError(f"frame size {w}x{h} differs from the video's {self._size[1]}x{self._size[0]}")
        if (he, we) != (h, w):
            img = cv2.copyMakeBorder(img, 0, he - h, 0, we - w, cv2.BORDER_CONSTANT, value=0)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame.pts = self.frames
        for pkt in self._stream.encode(frame):
            self._container.mux(pkt)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._size is not None:
            for pkt in self._stream.encode():
                self._container.mux(pkt)
        self._container.close()
        self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_mp4(path: str | Path, frames, fps: float = 10.0, crf: int = 23, preset: str = "veryfast") -> Path:
    with Mp4Writer(path, fps, crf, preset) as w:
        for f in frames:
            w.write(f)
    return Path(path)


def video_info(path: str | Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.demux(s) if _.size)
        return {"codec": s.codec_context.name, "width": s.codec_context.width, "height": s.codec_context.height,
                "pix_fmt": s.codec_context.pix_fmt, "fps": float(s.average_rate or s.guessed_rate), "frames": n}


def read_frames(path: str | Path, indices=None, timestamps_us=None) -> np.ndarray:
    """Decode selected frames -> (N, H, W, 3) uint8 RGB, in the order requested.

    ``indices``: frame numbers (0-based, display order). ``timestamps_us``: for each, the frame at
    or before that time (frame time = pts · time_base, relative to the first frame), as
    PhysicalAI-AV's ``SeekVideoReader`` does. Exactly one of the two must be given. Decoding runs
    from the start so the result is frame-accurate whatever the GOP structure."""
    if (indices is None) == (timestamps_us is None):
        raise ValueError("give exactly one of indices or timestamps_us")
    frames, times = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        t0 = None
        for fr in c.decode(s):
            t = fr.pts * fr.time_base if fr.pts is not None else Fraction(len(times), 1)
            t0 = t if t0 is None else t0
            times.append(int(round((t - t0) * 1_000_000)))
            frames.append(fr.to_ndarray(format="rgb24"))
    n = len(frames)
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= n)]
        if len(bad):
            raise ValueError(f"frame indices {bad.tolist()} out of range for a {n}-frame video")
    else:
        ts = np.asarray(timestamps_us, dtype=np.int64).reshape(-1)
        idx = np.searchsorted(np.asarray(times), ts, side="right") - 1
        if np.any(idx < 0):
            raise ValueError(f"timestamps {ts[idx < 0].tolist()} are before the first frame")
    return np.stack([frames[i] for i in idx]) if len(idx) else np.zeros((0,) + frames[0].shape, np.uint8)


# ----------------------------------------------------------------------------------------------
# Rollout video
# ----------------------------------------------------------------------------------------------
def rollout_video_name(scene_id: str, rollout_id: str, camera: str, layout: str = "default") -> str:
    return f"{scene_id}_{rollout_id}_{camera}_{layout}.mp4"  # spec/alpasim.md §4.5


def project_plan(cam, xyz_rig) -> list[np.ndarray]:
    """Rig-frame plan points (T, 3) -> pixel polylines (pieces inside the image, in front of the
    camera); the plan is drawn on the ground so z is taken as given (0 for ground plans)."""
    p = np.asarray(xyz_rig, float)
    if p.ndim != 2 or p.shape[1] < 2 or len(p) < 2:
        return []
    if p.shape[1] == 2:
        p = np.column_stack([p, np.zeros(len(p))])
    # Densify so curved pieces stay curved under f-theta.
    t = np.linspace(0, len(p) - 1, 4 * len(p))
    dense = np.stack([np.interp(t, np.arange(len(p)), p[:, k]) for k in range(3)], axis=1)
    uv, ok = cam.project_rig(dense)
    pieces, cur = [], []
    for q, good in zip(uv, ok):
        if good:
            cur.append(q)
        elif cur:
            pieces.append(np.array(cur))
            cur = []
    if cur:
        pieces.append(np.array(cur))
    return [x for x in pieces if len(x) >= 2]


def _metrics_panel(h: int, w: int, lines: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    img = np.full((h, w, 3), 24, np.uint8)
    y = 22
    for text, col in lines:
        cv2.putText(img, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, col, 1, cv2.LINE_AA)
        y += 20
        if y > h - 6:
            break
    return img


def _overlay_text(img: np.ndarray, text: str, width_chars: int) -> None:
    lines = textwrap.wrap(text, width_chars)[:4]
    if not lines:
        return
    h = 18 * len(lines) + 10
    y0 = img.shape[0] - h
    roi = img[y0:]
    roi[:] = (roi.astype(np.float32) * 0.35).astype(np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(img, line, (8, y0 + 18 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def compose_frame(camera_img: np.ndarray, bev_img: np.ndarray, metric_lines, plan_px=(), alt_px=(),
                  coc: str | None = None) -> np.ndarray:
    """[BEV | metrics] over [camera image with plan + CoC]; width = camera width."""
    cam = _rgb(camera_img).copy()
    H, W = cam.shape[:2]
    for piece in alt_px:
        cv2.polylines(cam, [np.round(piece * 16).astype(np.int32)], False, (120, 200, 140), 1, cv2.LINE_AA, shift=4)
    for piece in plan_px:
        cv2.polylines(cam, [np.round(piece * 16).astype(np.int32)], False, (60, 255, 120), 2, cv2.LINE_AA, shift=4)
    if coc:
        _overlay_text(cam, "CoC: " + coc, max(20, W // 8))
    top_h = min(W // 2, 360)
    top_h -= top_h % 2
    bev = cv2.resize(bev_img, (top_h, top_h), interpolation=cv2.INTER_AREA)
    panel = _metrics_panel(top_h, W - top_h, list(metric_lines))
    return np.concatenate([np.concatenate([bev, panel], axis=1), cam], axis=0)


def rollout_video(rollout, scenario: Scenario, renderer_or_frames, path: str | Path,
                  camera: str = "camera_front_wide_120fov", metrics: dict | None = None, rig=None,
                  bev_radius_m: float = 20.0, gt_xy=None, fps: float | None = None) -> Path:
    """Write the per-rollout MP4 and return its path.

    ``renderer_or_frames``: a ``Renderer`` (frames are rendered at each step's state), a list of
    HxWx3 images (one per step), or None to use ``StepRecord.frames[camera]``. ``path``: a
    directory (the AlpaSim file name is used) or an ``.mp4`` file path. ``metrics``: name ->
    per-step array (e.g. collision/offroad flags) shown in the panel. ``rig``: camera specs for
    projecting the plan (defaults to the renderer's rig, else the default rig)."""
    from cordillera.render.rig import default_rig

    steps = rollout.steps
    if not steps:
        raise ValueError(f"rollout {rollout.rollout_id} has no steps")
    path = Path(path)
    if path.suffix != ".mp4":
        path = path / rollout_video_name(rollout.scenario_id, rollout.rollout_id, camera)
    t = np.array([s.t_us for s in steps], dtype=np.int64)
    if fps is None:
        dt = np.diff(t)
        fps = 1e6 / float(np.median(dt)) if len(dt) and np.median(dt) > 0 else 10.0  # spec/alpasim.md §4.5
    renderer = renderer_or_frames if hasattr(renderer_or_frames, "render") else None
    if rig is None:
        rig = getattr(renderer, "rig", None) or default_rig()
    cam = rig.camera(camera)
    period = int(np.median(np.diff(t))) if len(t) > 1 else 100_000
    metrics = {k: np.asarray(v) for k, v in (metrics or {}).items()}
    speeds = np.array([s.ego.speed_mps for s in steps])
    with Mp4Writer(path, fps) as out:
        for i, st in enumerate(steps):
            ws = WorldState(st.t_us, st.ego, st.actors, st.signals)
            if renderer is not None:
                img = renderer.render(ws, camera, st.t_us - period, st.t_us)
            elif renderer_or_frames is not None:
                img = renderer_or_frames[i]
            else:
                if not st.frames or camera not in st.frames:
                    raise ValueError(f"step {i} has no stored frame for {camera}; pass a renderer")
                img = st.frames[camera].image
            if img.shape[:2] != (cam.height, cam.width):
                img = cv2.resize(img, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
            plan = st.plan
            plan_xyz = None if plan is None or plan.warming_up else np.asarray(plan.xyz_rig)
            alts = [np.asarray(a[0]) for a in (plan.alternatives if plan is not None else ())]
            bev = render_bev(scenario, ws, plan_rig=plan_xyz, alternatives_rig=alts,
                             route_xy=scenario.route_polyline_xy(), gt_xy=gt_xy, radius_m=bev_radius_m)
            accel = st.ego.accel_mps2
            lines = [
                (f"{scenario.id}  {rollout.rollout_id[:8]}", (230, 230, 230)),
                (f"t = {st.t_us / 1e6:6.2f} s  step {i}{'  [force GT]' if st.force_gt else ''}", (230, 230, 230)),
                (f"speed {speeds[i]:5.2f} m/s ({speeds[i] * 3.6:5.1f} km/h)", (230, 230, 230)),
                (f"accel {accel:+5.2f} m/s2", (230, 230, 230)),
                (f"policy {rollout.policy_name}", (180, 180, 180)),
            ]
            for name, arr in metrics.items():
                v = arr[i] if i < len(arr) else float("nan")
                flag = arr.dtype == bool or name.startswith(("collision", "offroad", "wrong", "red_light"))
                bad = bool(v) if flag and not (isinstance(v, float) and math.isnan(v)) else False
                txt = f"{name}: {'YES' if bad else 'no'}" if flag else f"{name}: {float(v):.3f}"
                lines.append((txt, (255, 80, 80) if bad else (170, 220, 170)))
            plan_px = project_plan(cam, plan_xyz) if plan_xyz is not None else []
            alt_px = [pc for a in alts for pc in project_plan(cam, a)]
            frame = compose_frame(img, bev, lines, plan_px, alt_px, plan.coc if plan is not None else None)
            out.write(frame)
    return path
