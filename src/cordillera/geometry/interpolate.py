"""Interpolation of pose and scalar time series sampled at integer-µs timestamps (numpy + scipy).

Like the PhysicalAI-AV devkit egomotion interpolator (spec/alpamayo_model.md §7): translation by a
cubic spline (or linearly), rotation by slerp, scalars linearly, and **no extrapolation**.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation, Slerp

__all__ = ["interpolate_poses", "interpolate_scalar"]


def _check_times(t_query_us, t_us) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t_us)
    tq = np.asarray(t_query_us)
    if t.ndim != 1 or t.shape[0] < 2:
        raise ValueError(f"t_us must be 1-D with at least 2 samples, got shape {t.shape}")
    for name, arr in (("t_us", t), ("t_query_us", tq)):
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"{name} must be numeric microseconds, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf")
    dt = np.diff(t)
    if np.any(dt <= 0):
        i = int(np.argmax(dt <= 0))
        raise ValueError(f"t_us must be strictly increasing; t_us[{i}]={t[i]} >= t_us[{i + 1}]={t[i + 1]}")
    if tq.size and (tq.min() < t[0] or tq.max() > t[-1]):
        raise ValueError(
            f"t_query_us range [{tq.min()}, {tq.max()}] is outside the sampled range [{t[0]}, {t[-1]}] "
            "(no extrapolation)"
        )
    # Work in float seconds relative to the first sample: absolute µs timestamps (~1e15) would
    # lose precision in the spline arithmetic.
    t0 = t[0]
    return (tq - t0).astype(np.float64) * 1e-6, (t - t0).astype(np.float64) * 1e-6


def interpolate_poses(t_query_us, t_us, xyz, quat_xyzw, method: str = "linear"):
    """Poses at ``t_query_us`` from samples at ``t_us``.

    Args:
        t_query_us: (...) query timestamps, µs, within [t_us[0], t_us[-1]].
        t_us: (N,) strictly increasing sample timestamps, µs.
        xyz: (N, 3) positions.
        quat_xyzw: (N, 4) orientations (normalised here).
        method: "linear" or "cubic" (scipy CubicSpline, not-a-knot) for the translation; rotation
            is always slerp.
    Returns:
        (xyz (..., 3), quat_xyzw (..., 4)).
    """
    if method not in ("linear", "cubic"):
        raise ValueError(f"method must be 'linear' or 'cubic', got {method!r}")
    tq, t = _check_times(t_query_us, t_us)
    xyz = np.asarray(xyz, dtype=np.float64)
    q = np.asarray(quat_xyzw, dtype=np.float64)
    n = t.shape[0]
    if xyz.shape != (n, 3):
        raise ValueError(f"xyz must have shape ({n}, 3) to match t_us, got {xyz.shape}")
    if q.shape != (n, 4):
        raise ValueError(f"quat_xyzw must have shape ({n}, 4) to match t_us, got {q.shape}")
    if not np.all(np.isfinite(xyz)):
        raise ValueError("xyz contains NaN or inf")
    if not np.all(np.isfinite(q)) or np.any(np.linalg.norm(q, axis=-1) < 1e-9):
        raise ValueError("quat_xyzw contains NaN, inf or a zero quaternion")
    flat = tq.reshape(-1)
    if method == "cubic":
        xyz_q = CubicSpline(t, xyz, axis=0)(flat)
    else:
        xyz_q = np.stack([np.interp(flat, t, xyz[:, i]) for i in range(3)], axis=-1)
    quat_q = Slerp(t, Rotation.from_quat(q))(flat).as_quat()
    return xyz_q.reshape(tq.shape + (3,)), quat_q.reshape(tq.shape + (4,))


def interpolate_scalar(t_query_us, t_us, values) -> np.ndarray:
    """Linear interpolation of ``values`` (N,) or (N, D) sampled at ``t_us`` -> (...) or (..., D)."""
    tq, t = _check_times(t_query_us, t_us)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim not in (1, 2) or v.shape[0] != t.shape[0]:
        raise ValueError(f"values must have shape ({t.shape[0]},) or ({t.shape[0]}, D), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values contains NaN or inf")
    flat = tq.reshape(-1)
    if v.ndim == 1:
        return np.interp(flat, t, v).reshape(tq.shape)
    out = np.stack([np.interp(flat, t, v[:, i]) for i in range(v.shape[1])], axis=-1)
    return out.reshape(tq.shape + (v.shape[1],))
