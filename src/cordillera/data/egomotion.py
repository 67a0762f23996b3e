"""Egomotion tables: 10 Hz simulator states → the ~100 Hz PhysicalAI-AV egomotion parquet.

The table is in the *anchor* frame: origin = rig origin at clip start, yaw zeroed at t = 0
(spec/alpamayo_training_data.md §7.3). Our sim is planar, so z, pitch and roll stay 0 unless z is
given. Velocity ``vx, vy, vz`` and acceleration ``ax, ay, az`` are expressed in the anchor frame
(the devkit transforms them as vectors with the pose, ``tf.Transformable.VECTOR``); acceleration
is the rig-frame (longitudinal, centripetal v·ω) vector rotated into the anchor frame;
``curvature`` = ω / v (1/m), 0 below ``MIN_SPEED_FOR_CURVATURE_MPS``.

Densification: translation by a cubic spline (as the devkit interpolates), heading by slerp, the
rest linearly, so the 100 Hz rows pass exactly through the 10 Hz states.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cordillera.data import keys as K
from cordillera.geometry.frames import unwrap_yaw
from cordillera.geometry.interpolate import interpolate_poses, interpolate_scalar
from cordillera.geometry.pose import quat_from_yaw

__all__ = ["EGOMOTION_PERIOD_US", "MIN_SPEED_FOR_CURVATURE_MPS", "egomotion_from_states"]

EGOMOTION_PERIOD_US = 10_000  # [µs] ~100 Hz, spec/alpamayo_training_data.md §7.3
MIN_SPEED_FOR_CURVATURE_MPS = 0.5  # [m/s] below this ω / v is ill-conditioned; report 0


def egomotion_from_states(t_us, x_m, y_m, yaw_rad, speed_mps, accel_mps2=None, yaw_rate_radps=None,
                          lat_speed_mps=None, z_m=None, period_us: int = EGOMOTION_PERIOD_US) -> pd.DataFrame:
    """Egomotion DataFrame (columns :data:`keys.EGOMOTION_COLUMNS`) from rig states in ``local``.

    Args:
        t_us: (N,) strictly increasing state times, µs; the table's clock starts at ``t_us[0]`` = 0.
        x_m, y_m, yaw_rad, speed_mps: (N,) rig origin and heading in ``local``, forward speed.
        accel_mps2, yaw_rate_radps, lat_speed_mps, z_m: (N,) optional (0 when None).
        period_us: output sample period (10 000 µs = 100 Hz).
    """
    t = np.asarray(t_us, dtype=np.int64)
    n = len(t)
    if n < 2:
        raise ValueError(f"need at least 2 states, got {n}")
    if t[0] != 0:
        raise ValueError(f"state times must start at 0 (clip-relative), got {t[0]}")
    zeros = np.zeros(n)

    def arr(v, name):
        a = zeros if v is None else np.asarray(v, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf")
        return a

    x, y, yaw, v = arr(x_m, "x_m"), arr(y_m, "y_m"), unwrap_yaw(arr(yaw_rad, "yaw_rad")), arr(speed_mps, "speed_mps")
    a, w, vl, z = (arr(accel_mps2, "accel_mps2"), arr(yaw_rate_radps, "yaw_rate_radps"),
                   arr(lat_speed_mps, "lat_speed_mps"), arr(z_m, "z_m"))
    # Anchor frame: p_a = R(-yaw0) (p - p0), yaw_a = yaw - yaw0.
    c0, s0 = np.cos(yaw[0]), np.sin(yaw[0])
    dx, dy = x - x[0], y - y[0]
    xa, ya, za = c0 * dx + s0 * dy, -s0 * dx + c0 * dy, z - z[0]
    yaw_a = yaw - yaw[0]

    td = np.arange(0, t[-1] + 1, period_us, dtype=np.int64)
    if td[-1] != t[-1]:
        td = np.append(td, t[-1])
    xyz, quat = interpolate_poses(td, t, np.stack([xa, ya, za], -1), quat_from_yaw(yaw_a), method="cubic")
    yaw_d = interpolate_scalar(td, t, yaw_a)
    v_d, a_d, w_d, vl_d = (interpolate_scalar(td, t, q) for q in (v, a, w, vl))
    cy, sy = np.cos(yaw_d), np.sin(yaw_d)

    def rot(fx, fy):  # rig-frame planar vector -> anchor frame
        return cy * fx - sy * fy, sy * fx + cy * fy

    vx, vy = rot(v_d, vl_d)
    ax, ay = rot(a_d, v_d * w_d)
    curvature = np.where(np.abs(v_d) >= MIN_SPEED_FOR_CURVATURE_MPS, w_d / np.maximum(np.abs(v_d), 1e-9), 0.0)
    cols = {
        "timestamp": td, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
        "qx": quat[:, 0], "qy": quat[:, 1], "qz": quat[:, 2], "qw": quat[:, 3],
        "vx": vx, "vy": vy, "vz": np.zeros_like(vx), "ax": ax, "ay": ay, "az": np.zeros_like(ax),
        "curvature": curvature,
    }
    return pd.DataFrame({c: cols[c] for c in K.EGOMOTION_COLUMNS})
