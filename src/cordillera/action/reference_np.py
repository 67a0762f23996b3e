"""Plain per-trajectory numpy (float64) reference of the unicycle action space.

Written independently of :mod:`cordillera.action.unicycle`: the least-squares design matrices are
built row by row and the dynamics are stepped in a Python loop, exactly as the formulas in
spec/alpamayo_model.md §3 read. Used by tests (agreement with the batched torch path) and by
``benchmarks/action_space.py`` (the baseline). Not for production use: one trajectory at a time.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from cordillera.action.config import ActionSpaceConfig

__all__ = ["traj_to_action_np", "action_to_traj_np", "estimate_v0_np"]


def _diff(n: int, order: int) -> np.ndarray:
    D = np.eye(n)
    for _ in range(order):
        D = D[1:] - D[:-1]
    return D


def _lstsq(A: np.ndarray, b: np.ndarray, D: np.ndarray, w: float, ridge: float, d: np.ndarray | None = None) -> np.ndarray:
    """argmin ‖Ax − b‖² + w‖Dx + d‖² + ridge‖x‖² via normal equations + Cholesky (ridge ×10 retry)."""
    d = np.zeros(D.shape[0]) if d is None else d
    lhs = A.T @ A + w * D.T @ D
    rhs = A.T @ b - w * D.T @ d
    r = ridge
    for _ in range(9):
        try:
            return cho_solve(cho_factor(lhs + r * np.eye(lhs.shape[0]), lower=True), rhs)
        except np.linalg.LinAlgError:
            r = max(r * 10.0, 1e-12)
    raise ValueError("normal equations are not positive definite")


def _trapezoid_design(theta: np.ndarray, dxy: np.ndarray, dt: float):
    """Rows v_t·u_t + v_{t+1}·u_{t+1} = 2Δp_t/dt (x and y rows per step); unknowns v_0..v_N."""
    n_steps = dxy.shape[0]
    A = np.zeros((2 * n_steps, n_steps + 1))
    t = np.arange(n_steps)
    c, s = np.cos(theta), np.sin(theta)
    A[2 * t, t], A[2 * t, t + 1] = c[:-1], c[1:]  # x rows
    A[2 * t + 1, t], A[2 * t + 1, t + 1] = s[:-1], s[1:]  # y rows
    b = (2.0 * dxy / dt).reshape(-1)  # [x0, y0, x1, y1, ...]
    return A, b


def estimate_v0_np(hist_xyz: np.ndarray, hist_rot: np.ndarray, cfg: ActionSpaceConfig = ActionSpaceConfig()) -> float:
    theta = np.unwrap(np.arctan2(hist_rot[:, 1, 0], hist_rot[:, 0, 0]))
    A, b = _trapezoid_design(theta, np.diff(hist_xyz[:, :2], axis=0), cfg.dt_s)
    v = _lstsq(A, b, _diff(len(theta), 3), cfg.v_lambda / cfg.dt_s**6, cfg.v_ridge)
    return float(v[-1])


def traj_to_action_np(hist_xyz, hist_rot, fut_xyz, fut_rot, cfg: ActionSpaceConfig = ActionSpaceConfig()) -> np.ndarray:
    """One trajectory: (H, 3), (H, 3, 3), (T, 3), (T, 3, 3) -> normalised actions (T, 2)."""
    hist_xyz, hist_rot, fut_xyz, fut_rot = (np.asarray(x, dtype=np.float64) for x in (hist_xyz, hist_rot, fut_xyz, fut_rot))
    T, dt = cfg.n_waypoints, cfg.dt_s
    v0 = estimate_v0_np(hist_xyz, hist_rot, cfg)

    # heading: x = θ_1..θ_T, penalty on Δ³[0, x] (θ0 = 0 contributes nothing to D x)
    theta_gt = np.unwrap(np.concatenate([[0.0], np.arctan2(fut_rot[:, 1, 0], fut_rot[:, 0, 0])]))[1:]
    D = _diff(T + 1, 3)
    theta = np.concatenate([[0.0], _lstsq(np.eye(T), theta_gt, D[:, 1:], cfg.theta_lambda / dt**6, cfg.theta_ridge)])

    # speed: unknowns v_1..v_T, v_0 pinned (moved to the right-hand side of data and smoothing)
    p = np.concatenate([hist_xyz[-1:, :2], fut_xyz[:, :2]], axis=0)
    A, b = _trapezoid_design(theta, np.diff(p, axis=0), dt)
    b = b - A[:, 0] * v0
    D = _diff(T + 1, 3)
    v = np.concatenate([[v0], _lstsq(A[:, 1:], b, D[:, 1:], cfg.v_lambda / dt**6, cfg.v_ridge, d=D[:, 0] * v0)])

    accel = _lstsq(np.eye(T), np.diff(v) / dt, _diff(T, 2), cfg.a_lambda / dt**4, cfg.a_ridge)
    s = v[:-1] * dt + accel * dt * dt / 2
    kappa = _lstsq(np.diag(s), np.diff(theta), _diff(T, 2), cfg.kappa_lambda / dt**4, cfg.kappa_ridge)
    a_n = (accel - cfg.accel_mean_mps2) / cfg.accel_std_mps2
    k_n = (kappa - cfg.curvature_mean_1pm) / cfg.curvature_std_1pm
    return np.stack([a_n, k_n], axis=-1)


def action_to_traj_np(actions, hist_xyz, hist_rot, cfg: ActionSpaceConfig = ActionSpaceConfig()):
    """One trajectory: normalised actions (T, 2) -> xyz (T, 3), rot (T, 3, 3), stepping the model."""
    actions = np.asarray(actions, dtype=np.float64)
    hist_xyz = np.asarray(hist_xyz, dtype=np.float64)
    dt = cfg.dt_s
    x = y = th = 0.0
    v = estimate_v0_np(hist_xyz, np.asarray(hist_rot, dtype=np.float64), cfg)
    xyz, rot = [], []
    for a_n, k_n in actions:
        a = a_n * cfg.accel_std_mps2 + cfg.accel_mean_mps2
        k = k_n * cfg.curvature_std_1pm + cfg.curvature_mean_1pm
        v_next = v + a * dt
        th_next = th + k * v * dt + k * a * dt * dt / 2
        x += dt / 2 * (v * np.cos(th) + v_next * np.cos(th_next))
        y += dt / 2 * (v * np.sin(th) + v_next * np.sin(th_next))
        v, th = v_next, th_next
        xyz.append([x, y, hist_xyz[-1, 2]])
        rot.append([[np.cos(th), -np.sin(th), 0.0], [np.sin(th), np.cos(th), 0.0], [0.0, 0.0, 1.0]])
    return np.array(xyz), np.array(rot)
