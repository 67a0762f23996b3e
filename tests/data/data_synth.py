"""Synthetic clips for the data tests: smooth frames whose content encodes the time, an ego that
drives a gentle left curve, f-theta cameras from the default rig at a small resolution."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cordillera.data import keys as K
from cordillera.data.egomotion import egomotion_from_states
from cordillera.data.writer import CameraStream, ClipData
from cordillera.render.rig import default_rig

SMALL_CAMERAS = ("camera_cross_left_120fov", "camera_front_wide_120fov")
FOUR_CAMERAS = ("camera_cross_left_120fov", "camera_front_wide_120fov", "camera_cross_right_120fov",
                "camera_front_tele_30fov")
H, W = 64, 112
VEHICLE = {"length": 5.393, "width": 2.109, "height": 1.503, "rear_axle_to_bbox_center": 1.3965,
           "wheelbase": 2.85, "track_width": 1.7}


def smooth_frame(k: int, cam_i: int = 0, h: int = H, w: int = W, bump: float = 0.0) -> np.ndarray:
    """A smooth RGB image; horizontal phase moves with the frame number k."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3))
    for c in range(3):
        img[..., c] = (128 + 60 * np.sin(2 * np.pi * (x / w + 0.04 * k + c / 3 + 0.1 * cam_i))
                       + 40 * np.cos(2 * np.pi * (y / h + 0.02 * k)) + bump)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def ego_states(duration_s: float = 9.0, speed_mps: float = 10.0, yaw_rate: float = 0.1, x0=30.0, y0=-5.0,
               yaw0=0.7):
    """10 Hz states of a constant-speed, constant-turn ego in ``local``."""
    t_us = np.arange(0, int(duration_s * 10) + 1, dtype=np.int64) * 100_000
    t = t_us * 1e-6
    yaw = yaw0 + yaw_rate * t
    x = x0 + speed_mps / yaw_rate * (np.sin(yaw) - np.sin(yaw0))
    y = y0 - speed_mps / yaw_rate * (np.cos(yaw) - np.cos(yaw0))
    return t_us, x, y, yaw, np.full_like(t, speed_mps), np.zeros_like(t), np.full_like(t, yaw_rate)


def make_clip(clip_id: str = "00000000-0000-4000-8000-000000000001", duration_s: float = 9.0,
              cameras=SMALL_CAMERAS, h: int = H, w: int = W, events=None, metadata=None, split: str = "train",
              perturb_after_us: int | None = None) -> ClipData:
    """A synthetic clip. ``perturb_after_us``: frames and egomotion after this time are altered."""
    t_us, x, y, yaw, v, a, wr = ego_states(duration_s)
    ego = egomotion_from_states(t_us, x, y, yaw, v, a, wr)
    frames_t = t_us.copy()
    streams = {}
    for ci, cam in enumerate(cameras):
        frames = []
        for k, t in enumerate(frames_t):
            bump = 30.0 if perturb_after_us is not None and t > perturb_after_us else 0.0
            frames.append(smooth_frame(k, ci, h, w, bump))
        streams[cam] = CameraStream(np.stack(frames), frames_t)
    if perturb_after_us is not None:
        after = ego[K.TIMESTAMP] > perturb_after_us
        ego.loc[after, "y"] += 0.5 * ((ego.loc[after, K.TIMESTAMP] - perturb_after_us) * 1e-6) ** 2
        ego.loc[after, "vx"] += 1.0
    rig = default_rig(cameras, height=h, width=w)
    specs = {c.name: c for c in rig}
    obstacles = pd.DataFrame({
        "timestamp": np.array([0, 100_000], dtype=np.int64), "track_id": ["car_1", "car_1"],
        "label_class": ["automobile", "automobile"], "x": [20.0, 21.0], "y": [3.5, 3.5], "z": [0.75, 0.75],
        "qx": [0.0, 0.0], "qy": [0.0, 0.0], "qz": [0.0, 0.0], "qw": [1.0, 1.0],
        "length": [4.5, 4.5], "width": [1.9, 1.9], "height": [1.5, 1.5],
    })
    if events is None:
        events = [{K.EVENT_START_TIMESTAMP: 2_000_000, K.COT: "Keep lane and follow the curve."}]
    return ClipData(clip_id=clip_id, egomotion=ego, cameras=streams, camera_specs=specs, vehicle=VEHICLE,
                    obstacles=obstacles, events=events,
                    metadata=metadata or {"family": "road_following", "category": "nominal", "seed": 1},
                    split=split)
