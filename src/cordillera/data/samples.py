"""Assemble model samples from a clip, as Alpamayo's loader does (spec/alpamayo_training_data.md
§1.4, spec/alpamayo_model.md §2.1, §2.3, §7).

At time t0 a sample holds: for each camera (sorted by the Alpamayo camera index: cross-left,
front-wide, cross-right, front-tele) the 4 frames at or before t0 − 0.3, −0.2, −0.1, 0 s; 16
history poses at t0 − 1.5 … t0 and 64 future poses at t0 + 0.1 … t0 + 6.4 s, all in the rig frame
at t0 (xyz + 3×3 rotation). Time windows are µs offsets relative to t0 and are checked against
the clip's sample times with explicit tolerances.

No information from after t0 enters the inputs: frames are at or before their request times, and
the history interpolation is fitted only on egomotion samples up to t0 (plus the next one if t0
falls between samples, ≤ 10 ms later at 100 Hz). Alpamayo fits one spline on the whole clip; at
sample times (our t0s are on the 100 Hz grid) both give the same values.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from cordillera.data import keys as K
from cordillera.geometry.frames import to_frame
from cordillera.geometry.pose import quat_to_matrix
from cordillera.render.rig import CAMERA_NAMES, DEFAULT_MODEL_CAMERAS

__all__ = [
    "IMAGE_OFFSETS_US", "HISTORY_OFFSETS_US", "FUTURE_OFFSETS_US", "DEFAULT_T0_US", "MIN_T0_US",
    "FRAME_TOLERANCE_US", "EGO_MAX_GAP_US", "camera_index", "sort_cameras", "valid_t0s", "sample_points",
    "FrameCache", "build_sample",
]

IMAGE_OFFSETS_US = (-300_000, -200_000, -100_000, 0)  # [µs] spec/alpamayo_model.md §2.1
HISTORY_OFFSETS_US = tuple(range(-1_500_000, 1, 100_000))  # [µs] 16 poses, spec/alpamayo_model.md §2.3
FUTURE_OFFSETS_US = tuple(range(100_000, 6_400_001, 100_000))  # [µs] 64 poses, spec/alpamayo_model.md §7
DEFAULT_T0_US = 5_100_000  # [µs] PAIDataset.DEFAULT_T0_US, spec/alpamayo_training_data.md §1.4
MIN_T0_US = 1_600_000  # [µs] event filter t0 >= 16 × 0.1 s, spec/alpamayo_training_data.md §1.4
FUTURE_HORIZON_US = FUTURE_OFFSETS_US[-1]
FRAME_TOLERANCE_US = 50_000  # [µs] a frame used for time t must be at most 1.5 frame periods (30 fps) older
EGO_MAX_GAP_US = 100_000  # [µs] egomotion samples around a query may be at most this far apart


def camera_index(name: str) -> int:
    """Alpamayo's camera index (spec/alpamayo_model.md §2.1); unknown names map to 0."""
    return CAMERA_NAMES.index(name) if name in CAMERA_NAMES else 0


def sort_cameras(cameras) -> list[str]:
    return sorted(cameras, key=lambda c: (camera_index(c), c))


def valid_t0s(t0s, end_us: int, start_us: int = 0) -> list[int]:
    """Keep t0 with t0 >= start + 1.6 s and t0 + 6.4 s <= end (pai_utils' event filter)."""
    return [int(t) for t in t0s if int(t) - start_us >= MIN_T0_US and int(t) + FUTURE_HORIZON_US <= end_us]


def sample_points(reader, clip_id: str, per: str = "event", use_default_keyframe: bool = False) -> list[tuple]:
    """(t0_us, cot) pairs of a clip: one per valid reasoning event / ``event_t0s`` entry
    (``per="event"``), only the first (``per="clip"``), or the default keyframe 5.1 s."""
    if per not in ("event", "clip"):
        raise ValueError(f"per must be 'event' or 'clip', got {per!r}")
    end = reader.end_timestamp(clip_id)
    if use_default_keyframe:
        return [(DEFAULT_T0_US, None)] if valid_t0s([DEFAULT_T0_US], end) else []
    cots = {e[K.EVENT_START_TIMESTAMP]: e[K.COT] for e in reader.reasoning_events(clip_id)}
    t0s = sorted(set(reader.event_t0s(clip_id)) | set(cots))
    pts = [(t, cots.get(t)) for t in valid_t0s(t0s, end)]
    return pts[:1] if per == "clip" else pts


class FrameCache:
    """LRU of decoded, resized frames keyed (clip, camera, frame index, H, W): each needed frame of
    a clip is decoded once while it stays in the cache."""

    def __init__(self, max_frames: int = 256):
        self.max_frames = int(max_frames)
        self._d: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key):
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return v

    def put(self, key, value) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.max_frames:
            self._d.popitem(last=False)


def resize_image(img: np.ndarray, hw) -> np.ndarray:
    """Resize an HxWx3 frame to ``hw`` = (H, W) with area interpolation — the one resize used for
    training samples and, through the VLA policy, for closed-loop frames."""
    if hw is None or tuple(img.shape[:2]) == tuple(hw):
        return img
    return cv2.resize(img, (int(hw[1]), int(hw[0])), interpolation=cv2.INTER_AREA)


def _frames(reader, clip_id, camera, t_req, hw, cache: FrameCache | None):
    vs = reader.video(clip_id, camera)
    idx = vs.indices_at_or_before(t_req)
    ts = vs.timestamps[idx]
    late = t_req - ts
    if np.any(late > FRAME_TOLERANCE_US):
        i = int(np.argmax(late > FRAME_TOLERANCE_US))
        raise ValueError(f"clip {clip_id}: camera {camera}: frame for {t_req[i]} µs is {late[i]} µs older "
                         f"(tolerance {FRAME_TOLERANCE_US} µs)")
    out = []
    for i in idx.tolist():
        key = (clip_id, camera, i, None if hw is None else tuple(hw))
        img = cache.get(key) if cache is not None else None
        if img is None:
            img = resize_image(vs.decode([i])[0], hw)
            if cache is not None:
                cache.put(key, img)
        out.append(img)
    return np.stack(out), ts


def build_sample(reader, clip_id: str, t0_us: int, cameras=DEFAULT_MODEL_CAMERAS, image_hw=None,
                 cot: str | None = None, frame_cache: FrameCache | None = None) -> dict:
    """One model sample (numpy arrays; keys in :mod:`cordillera.data.keys`).

    Args:
        reader: a :class:`cordillera.data.reader.PaiReader`.
        clip_id, t0_us: the clip and the sample time (clip-relative µs).
        cameras: camera feature names (re-ordered by Alpamayo's camera index).
        image_hw: (H, W) to resize to with cv2 INTER_AREA, or None for the stored size.
        cot: the reasoning text of this event (None = look it up among the clip's events).
    """
    t0 = int(t0_us)
    end = reader.end_timestamp(clip_id)
    if not valid_t0s([t0], end):
        raise ValueError(f"clip {clip_id}: t0 {t0} µs needs t0 >= {MIN_T0_US} and t0 + {FUTURE_HORIZON_US} <= "
                         f"end {end} µs")
    cams = sort_cameras(cameras)
    # -- ego: history (fitted on samples up to t0 only), future -------------------------------
    ego = reader.egomotion(clip_id)
    t_hist = t0 + np.asarray(HISTORY_OFFSETS_US, dtype=np.int64)
    t_fut = t0 + np.asarray(FUTURE_OFFSETS_US, dtype=np.int64)
    xyz_h, q_h = ego.poses(t_hist, upto_us=t0, max_gap_us=EGO_MAX_GAP_US)
    xyz_f, q_f = ego.poses(t_fut, max_gap_us=EGO_MAX_GAP_US)
    T_local_t0 = np.eye(4)
    T_local_t0[:3, :3] = quat_to_matrix(q_h[-1])
    T_local_t0[:3, 3] = xyz_h[-1]
    hist_xyz, hist_rot = to_frame(xyz_h, quat_to_matrix(q_h), T_local_t0)
    fut_xyz, fut_rot = to_frame(xyz_f, quat_to_matrix(q_f), T_local_t0)
    # -- images ---------------------------------------------------------------------------------
    t_img = t0 + np.asarray(IMAGE_OFFSETS_US, dtype=np.int64)
    imgs, abs_ts = [], []
    for cam in cams:
        fr, ts = _frames(reader, clip_id, cam, t_img, image_hw, frame_cache)
        imgs.append(fr.transpose(0, 3, 1, 2))  # (4, 3, H, W)
        abs_ts.append(ts)
    image_frames = np.ascontiguousarray(np.stack(imgs), dtype=np.uint8)  # (N_cam, 4, 3, H, W)
    abs_ts = np.stack(abs_ts).astype(np.int64)
    if cot is None:
        cot = next((e[K.COT] for e in reader.reasoning_events(clip_id) if e[K.EVENT_START_TIMESTAMP] == t0), None)
    return {
        K.IMAGE_FRAMES: image_frames,
        K.CAMERA_INDICES: np.array([camera_index(c) for c in cams], dtype=np.int64),
        K.CAMERA_NAMES_KEY: cams,
        K.EGO_HISTORY_XYZ: hist_xyz.astype(np.float32),
        K.EGO_HISTORY_ROT: hist_rot.astype(np.float32),
        K.EGO_FUTURE_XYZ: fut_xyz.astype(np.float32),
        K.EGO_FUTURE_ROT: fut_rot.astype(np.float32),
        K.RELATIVE_TIMESTAMPS: ((abs_ts - abs_ts.min()) * 1e-6).astype(np.float32),
        K.ABSOLUTE_TIMESTAMPS: abs_ts,
        K.T0_US: t0,
        K.CLIP_ID_KEY: clip_id,
        K.COT_KEY: cot,
        K.METADATA_KEY: reader.metadata(clip_id),
    }
