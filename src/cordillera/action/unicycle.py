"""Unicycle acceleration/curvature action space (spec/alpamayo_model.md §3).

The model's actions are 64 controls ``(acceleration a [m/s²], curvature κ [1/m])`` at dt = 0.1 s,
integrated by a unicycle from the state (x, y, θ, v) = (0, 0, 0, v0) in the rig frame at t0:

    v_{k+1} = v_k + a_k·dt
    θ_{k+1} = θ_k + κ_k·v_k·dt + κ_k·a_k·dt²/2
    x_{k+1} = x_k + dt/2·(v_k cos θ_k + v_{k+1} cos θ_{k+1})        (same for y with sin)

Ground truth is turned into controls by four Tikhonov-regularised least-squares fits (heading,
speed, acceleration, curvature), each solved through its normal equations with a Cholesky
factorisation (ridge × 10 retry on failure). v0 comes from the same speed fit on the history.

Every function here is batched over arbitrary leading dims (``...``), computes in float32 with
autocast disabled (under bf16 autocast the normal equations would lose positive definiteness), and
works on any device. Letters: H history poses (16), T future waypoints (``cfg.n_waypoints`` = 64).
Actions passed to or returned from the model are **normalised**: â = (a − μa)/σa, κ̂ = (κ − μκ)/σκ.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from cordillera.action.config import ActionSpaceConfig

__all__ = [
    "ActionSpaceConfig",
    "estimate_v0",
    "traj_to_action",
    "action_to_traj",
    "solve_regularized",
    "solve_banded_regularized",
    "difference_matrix",
    "normalize_actions",
    "denormalize_actions",
    "compute_action_stats",
    "is_within_bounds",
    "unwrap_angle_t",
]


# ---------------------------------------------------------------------------------------------
# input checking


def _tensor(name: str, x, tail: tuple[int, ...], device=None) -> torch.Tensor:
    """``x`` as a float32 tensor of shape (..., *tail), finite; ValueError naming ``name`` otherwise."""
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        x = np.array(x)  # torch refuses to wrap read-only arrays (e.g. np.broadcast_to views)
    t = torch.as_tensor(x, device=device)
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be a real tensor, got dtype {t.dtype}")
    shape = tuple(t.shape)
    if len(shape) < len(tail) or any(want >= 0 and got != want for got, want in zip(shape[len(shape) - len(tail):], tail)):
        want = "(..., " + ", ".join("*" if w < 0 else str(w) for w in tail) + ")"
        raise ValueError(f"{name} must have shape {want}, got {shape}")
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf (shape {shape})")
    return t


def _autocast_off(t: torch.Tensor):
    return torch.autocast(device_type=t.device.type, enabled=False)


def _broadcast_lead(name_a: str, a: tuple, name_b: str, b: tuple) -> tuple:
    try:
        return tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        raise ValueError(f"leading dims of {name_a} {a} and {name_b} {b} do not broadcast") from None


# ---------------------------------------------------------------------------------------------
# least-squares building blocks


@lru_cache(maxsize=64)
def _difference_matrix_np(n: int, order: int) -> np.ndarray:
    D = np.eye(n)
    for _ in range(order):
        D = D[1:] - D[:-1]
    return D  # (n − order, n), rows are the raw k-th difference stencils


def difference_matrix(n: int, order: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Raw k-th forward-difference matrix (n − k, n): stencils [−1, 1], [1, −2, 1], [−1, 3, −3, 1]."""
    if n <= order:
        return torch.zeros(0, n, dtype=dtype, device=device)
    return torch.as_tensor(_difference_matrix_np(n, order), dtype=dtype, device=device)


def _smoothing_gram(n: int, order: int, weight: float, dtype, device) -> torch.Tensor:
    D = difference_matrix(n, order, dtype=torch.float64)
    return (weight * (D.T @ D)).to(dtype=dtype, device=device)  # (n, n)


def solve_regularized(lhs: torch.Tensor, rhs: torch.Tensor, ridge: float, max_retries: int = 8) -> torch.Tensor:
    """Solve ``(lhs + ridge·I) x = rhs`` for symmetric PSD ``lhs`` (..., n, n), ``rhs`` (..., n).

    ``lhs`` is the normal matrix of a least-squares problem (AᵀA plus smoothing), ``ridge·‖x‖²`` its
    Tikhonov term. Cholesky; batch elements whose factorisation fails are retried with the ridge
    multiplied by 10 (spec/alpamayo_model.md §3.1 ``solve_xs_eq_y``), up to ``max_retries`` times.
    A 2-D ``lhs`` shared by the whole batch is factorised once.
    """
    n = lhs.shape[-1]
    if lhs.shape[-2:] != (n, n) or rhs.shape[-1] != n:
        raise ValueError(f"lhs must be (..., n, n) and rhs (..., n); got {tuple(lhs.shape)} and {tuple(rhs.shape)}")
    lead = torch.broadcast_shapes(lhs.shape[:-2], rhs.shape[:-1])
    shared = lhs.ndim == 2
    M = lhs.unsqueeze(0) if shared else lhs.expand(*lead, n, n).reshape(-1, n, n)
    b = rhs.expand(*lead, n).reshape(-1, n)
    eye = torch.eye(n, dtype=M.dtype, device=M.device)
    ridges = torch.full((M.shape[0],), float(ridge), dtype=M.dtype, device=M.device)
    L, info = torch.linalg.cholesky_ex(M + ridge * eye)
    for _ in range(max_retries):
        bad = info != 0
        if not bool(bad.any()):
            break
        ridges[bad] = torch.clamp(ridges[bad] * 10.0, min=1e-12)
        L_bad, info_bad = torch.linalg.cholesky_ex(M[bad] + ridges[bad, None, None] * eye)
        L[bad] = L_bad
        info[bad] = info_bad
    if bool((info != 0).any()):
        raise ValueError(f"normal equations are not positive definite even with ridge {ridges.max().item():.3g}")
    if shared:
        x = torch.cholesky_solve(b.T, L[0]).T  # one factorisation, all right-hand sides: (N, n)
    else:
        x = torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)  # (N, n)
    return x.reshape(*lead, n)


def solve_banded_regularized(diags: list[torch.Tensor], rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """:func:`solve_regularized` for a symmetric *banded* matrix given by its lower diagonals.

    ``diags[d]`` (..., n − d) holds ``M[k + d, k]`` (``torch.diagonal(M, -d)``), d = 0..p; leading
    dims broadcast (a constant diagonal can be 1-D). A banded Cholesky, written as a loop over
    the n rows that is vectorised over the batch, costs O(n·p²) per system instead of O(n³). Batch
    elements whose factorisation breaks down are re-solved densely by :func:`solve_regularized`,
    which applies the same ridge × 10 retry.
    """
    p, n = len(diags) - 1, rhs.shape[-1]
    lead = torch.broadcast_shapes(rhs.shape[:-1], *(d.shape[:-1] for d in diags))
    D = [d.expand(*lead, n - k).reshape(-1, n - k).T.contiguous() for k, d in enumerate(diags)]  # (n − k, N)
    D[0] = D[0] + ridge
    b = rhs.expand(*lead, n).reshape(-1, n).T.contiguous()  # (n, N)
    L: list[list] = [[None] * (p + 1) for _ in range(n)]  # L[i][d] = factor entry (i, i − d), each (N,)
    for i in range(n):
        for d in range(min(i, p), 0, -1):
            j = i - d
            acc = D[d][j]
            for k in range(max(0, i - p), j):
                acc = torch.addcmul(acc, L[i][i - k], L[j][j - k], value=-1.0)
            L[i][d] = acc / L[j][0]
        acc = D[0][i]
        for k in range(max(0, i - p), i):
            acc = torch.addcmul(acc, L[i][i - k], L[i][i - k], value=-1.0)
        L[i][0] = torch.sqrt(acc)  # NaN where not positive definite; batch elements stay independent
    y: list = [None] * n
    for i in range(n):
        acc = b[i]
        for k in range(max(0, i - p), i):
            acc = torch.addcmul(acc, L[i][i - k], y[k], value=-1.0)
        y[i] = acc / L[i][0]
    x: list = [None] * n
    for i in reversed(range(n)):
        acc = y[i]
        for m in range(i + 1, min(n, i + p + 1)):
            acc = torch.addcmul(acc, L[m][m - i], x[m], value=-1.0)
        x[i] = acc / L[i][0]
    X = torch.stack(x, dim=-1)  # (N, n)
    pivots = torch.stack([L[i][0] for i in range(n)], dim=-1)  # (N, n)
    bad = ~((pivots > 0).all(-1) & torch.isfinite(X).all(-1))
    if bool(bad.any()):
        M = torch.zeros(int(bad.sum()), n, n, dtype=X.dtype, device=X.device)
        for k in range(p + 1):
            band = D[k].T[bad] - (ridge if k == 0 else 0.0)  # (N_bad, n − k)
            M = M + torch.diag_embed(band, offset=-k) + (torch.diag_embed(band, offset=k) if k else 0.0)
        X[bad] = solve_regularized(M, b.T[bad], ridge)
    return X.reshape(*lead, n)


def _band(M: torch.Tensor, p: int) -> list[torch.Tensor]:
    return [torch.diagonal(M, -d) for d in range(p + 1)]


def _solve_with_first_pinned(M: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, ridge: float) -> torch.Tensor:
    """Minimise xᵀMx − 2bᵀx over x = [x0, y] with x0 fixed; ridge on y only. Returns y (..., n−1)."""
    rhs = b[..., 1:] - M[..., 1:, 0] * x0.unsqueeze(-1)
    return solve_regularized(M[..., 1:, 1:], rhs, ridge)


def unwrap_angle_t(theta: torch.Tensor) -> torch.Tensor:
    """numpy.unwrap along the last dim (jumps ≥ π replaced by their 2π complement)."""
    d = theta.diff(dim=-1)
    dd = torch.remainder(d + math.pi, 2 * math.pi) - math.pi
    dd = torch.where((dd == -math.pi) & (d > 0), torch.full_like(dd, math.pi), dd)
    corr = torch.where(d.abs() < math.pi, torch.zeros_like(d), dd - d)
    return torch.cat([theta[..., :1], theta[..., 1:] + corr.cumsum(-1)], dim=-1)


def _yaw(rot: torch.Tensor) -> torch.Tensor:
    return torch.atan2(rot[..., 1, 0], rot[..., 0, 0])


def _speed_band(theta: torch.Tensor, dxy: torch.Tensor, dt: float):
    """Like :func:`_speed_normal_equations` but returns only the off-diagonal cos(Δθ) (..., N) and Aᵀb."""
    u = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)  # (..., N+1, 2)
    y = dxy * (2.0 / dt)  # (..., N, 2)
    y_sum = F.pad(y, (0, 0, 0, 1)) + F.pad(y, (0, 0, 1, 0))  # (..., N+1, 2): steps t−1 and t
    return torch.cos(theta.diff(dim=-1)), (u * y_sum).sum(-1)


def _speed_normal_equations(theta: torch.Tensor, dxy: torch.Tensor, dt: float):
    """Normal equations of the trapezoid fit  v_t·u_t + v_{t+1}·u_{t+1} = 2Δp_t/dt,  u = (cos θ, sin θ).

    theta: (..., N+1) headings at the N+1 points; dxy: (..., N, 2) displacements.
    Returns AᵀA (..., N+1, N+1) (tridiagonal: diag = number of steps touching the point, off-diag
    = cos(θ_{t+1} − θ_t)) and Aᵀb (..., N+1).
    """
    n = theta.shape[-1]
    u = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)  # (..., N+1, 2)
    y = dxy * (2.0 / dt)  # (..., N, 2)
    count = torch.full((n,), 2.0, dtype=theta.dtype, device=theta.device)
    count[0] = count[-1] = 1.0
    off = torch.cos(theta.diff(dim=-1))  # (..., N)
    AtA = torch.diag_embed(count.expand_as(theta)) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    zero = torch.zeros_like(y[..., :1, :])
    y_sum = torch.cat([y, zero], dim=-2) + torch.cat([zero, y], dim=-2)  # (..., N+1, 2): steps t−1 and t
    Atb = (u * y_sum).sum(-1)  # (..., N+1)
    return AtA, Atb


# ---------------------------------------------------------------------------------------------
# public API


def estimate_v0(hist_xyz, hist_rot, cfg: ActionSpaceConfig = ActionSpaceConfig()) -> torch.Tensor:
    """Speed at t0 (m/s) from the ego history (spec/alpamayo_model.md §3.3).

    Solves the trapezoid least squares for v_0..v_{H−1} with headings from the history rotations
    (unwrapped), 3rd-order smoothing (λ_v/dt⁶) and ridge ``v_ridge``; returns the last speed.

    hist_xyz (..., H, 3), hist_rot (..., H, 3, 3), H ≥ 2 (16 in the model) -> (...,) float32.
    """
    xyz = _tensor("hist_xyz", hist_xyz, (-1, 3))
    rot = _tensor("hist_rot", hist_rot, (-1, 3, 3), device=xyz.device)
    H = xyz.shape[-2]
    if H < 2 or rot.shape[:-2] != xyz.shape[:-1]:
        raise ValueError(f"hist_xyz (..., H, 3) and hist_rot (..., H, 3, 3) must agree with H >= 2; "
                         f"got {tuple(xyz.shape)} and {tuple(rot.shape)}")
    with _autocast_off(xyz):
        return _estimate_v0(xyz, rot, cfg)


def _estimate_v0(xyz: torch.Tensor, rot: torch.Tensor, cfg: ActionSpaceConfig) -> torch.Tensor:
    H = xyz.shape[-2]
    theta = unwrap_angle_t(_yaw(rot))  # (..., H)
    AtA, Atb = _speed_normal_equations(theta, xyz[..., :2].diff(dim=-2), cfg.dt_s)
    M = AtA + _smoothing_gram(H, 3, cfg.v_lambda / cfg.dt_s**6, xyz.dtype, xyz.device)
    v = solve_regularized(M, Atb, cfg.v_ridge)  # (..., H)
    return v[..., -1]


def traj_to_action(
    hist_xyz, hist_rot, fut_xyz, fut_rot, cfg: ActionSpaceConfig = ActionSpaceConfig(), *, normalize: bool = True
) -> torch.Tensor:
    """Ground-truth future poses -> controls (spec/alpamayo_model.md §3.4).

    Args:
        hist_xyz (..., H, 3), hist_rot (..., H, 3, 3): history in the t0 rig frame (last = origin).
        fut_xyz (..., T, 3), fut_rot (..., T, 3, 3): the T = ``cfg.n_waypoints`` future poses.
        normalize: return normalised actions (default, what the model trains on) or raw (a, κ).
    Returns:
        (..., T, 2) float32 [acceleration, curvature]; leading dims are the broadcast of both inputs.
    """
    T = cfg.n_waypoints
    hxyz = _tensor("hist_xyz", hist_xyz, (-1, 3))
    dev = hxyz.device
    hrot = _tensor("hist_rot", hist_rot, (-1, 3, 3), device=dev)
    fxyz = _tensor("fut_xyz", fut_xyz, (T, 3), device=dev)
    frot = _tensor("fut_rot", fut_rot, (T, 3, 3), device=dev)
    if hxyz.shape[-2] < 2 or hrot.shape[:-2] != hxyz.shape[:-1]:
        raise ValueError(f"hist_xyz (..., H, 3) and hist_rot (..., H, 3, 3) must agree with H >= 2; "
                         f"got {tuple(hxyz.shape)} and {tuple(hrot.shape)}")
    if frot.shape[:-2] != fxyz.shape[:-1]:
        raise ValueError(f"fut_rot {tuple(frot.shape)} does not match fut_xyz {tuple(fxyz.shape)}")
    lead = _broadcast_lead("hist_xyz", tuple(hxyz.shape[:-2]), "fut_xyz", tuple(fxyz.shape[:-2]))
    dt = cfg.dt_s
    with _autocast_off(hxyz):
        v0 = _estimate_v0(hxyz, hrot, cfg).expand(lead)  # (...)
        fxyz = fxyz.expand(*lead, T, 3)
        frot = frot.expand(*lead, T, 3, 3)

        # 1. heading: unwrap (continuing from θ0 = 0), smooth with θ0 pinned at 0
        zeros = torch.zeros((*lead, 1), dtype=fxyz.dtype, device=dev)
        theta_gt = unwrap_angle_t(torch.cat([zeros, _yaw(frot)], dim=-1))  # (..., T+1)
        data = torch.ones(T + 1, dtype=fxyz.dtype, device=dev)
        data[0] = 0.0  # θ0 is pinned, not observed
        M = torch.diag(data) + _smoothing_gram(T + 1, 3, cfg.theta_lambda / dt**6, fxyz.dtype, dev)
        theta_fit = _solve_with_first_pinned(M, theta_gt * data, zeros[..., 0], cfg.theta_ridge)
        theta = torch.cat([zeros, theta_fit], dim=-1)  # (..., T+1)

        # 2. speed: trapezoid fit on [hist_last, fut_1..T] with v0 pinned, 3rd-order smoothing
        p = torch.cat([hxyz[..., -1:, :2].expand(*lead, 1, 2), fxyz[..., :2]], dim=-2)  # (..., T+1, 2)
        # M = AᵀA (tridiagonal) + smoothing (7 diagonals): solved as a band of width 3
        off, Atb = _speed_band(theta, p.diff(dim=-2), dt)
        G = _band(_smoothing_gram(T + 1, 3, cfg.v_lambda / dt**6, fxyz.dtype, dev), 3)
        count = torch.full((T + 1,), 2.0, dtype=fxyz.dtype, device=dev)
        count[0] = count[-1] = 1.0
        band = [count + G[0], off + G[1], G[2], G[3]]  # lower diagonals of M, (..., T+1−d)
        first_col = torch.stack([band[1][..., 0].expand(lead), *(g[0].expand(lead) for g in G[2:])], dim=-1)
        rhs = Atb[..., 1:] - F.pad(first_col * v0.unsqueeze(-1), (0, T - 3))  # move pinned v0 to the right
        v_fit = solve_banded_regularized([d[..., 1:] for d in band], rhs, cfg.v_ridge)
        v = torch.cat([v0.unsqueeze(-1), v_fit], dim=-1)  # (..., T+1)

        # 3. acceleration: a_t ≈ (v_{t+1} − v_t)/dt, 2nd-order smoothing
        M = torch.eye(T, dtype=fxyz.dtype, device=dev) + _smoothing_gram(T, 2, cfg.a_lambda / dt**4, fxyz.dtype, dev)
        accel = solve_regularized(M, v.diff(dim=-1) / dt, cfg.a_ridge)  # (..., T)

        # 4. curvature: κ_t·s_t ≈ Δθ_t with s_t = v_t·dt + a_t·dt²/2, 2nd-order smoothing
        s = v[..., :-1] * dt + accel * (0.5 * dt * dt)  # (..., T)
        G = _band(_smoothing_gram(T, 2, cfg.kappa_lambda / dt**4, fxyz.dtype, dev), 2)
        kappa = solve_banded_regularized([s * s + G[0], G[1], G[2]], s * theta.diff(dim=-1), cfg.kappa_ridge)

        actions = torch.stack([accel, kappa], dim=-1)  # (..., T, [accel, curvature])
        return normalize_actions(actions, cfg) if normalize else actions


def action_to_traj(
    actions, hist_xyz, hist_rot, cfg: ActionSpaceConfig = ActionSpaceConfig(), *, normalized: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate controls into T waypoints with the unicycle model (spec/alpamayo_model.md §3.2).

    Args:
        actions: (..., T, 2) [acceleration, curvature], normalised unless ``normalized=False``.
        hist_xyz (..., H, 3), hist_rot (..., H, 3, 3): history in the t0 frame, for v0 and z; its
            leading dims broadcast against those of ``actions`` (e.g. (B, 1) vs (B, K)).
    Returns:
        xyz (..., T, 3) for k = 1..T (z = the last history z) and rot (..., T, 3, 3) = Rz(θ_k).
    """
    T = cfg.n_waypoints
    act = _tensor("actions", actions, (T, 2))
    dev = act.device
    hxyz = _tensor("hist_xyz", hist_xyz, (-1, 3), device=dev)
    hrot = _tensor("hist_rot", hist_rot, (-1, 3, 3), device=dev)
    if hxyz.shape[-2] < 2 or hrot.shape[:-2] != hxyz.shape[:-1]:
        raise ValueError(f"hist_xyz (..., H, 3) and hist_rot (..., H, 3, 3) must agree with H >= 2; "
                         f"got {tuple(hxyz.shape)} and {tuple(hrot.shape)}")
    lead = _broadcast_lead("actions", tuple(act.shape[:-2]), "hist_xyz", tuple(hxyz.shape[:-2]))
    dt = cfg.dt_s
    with _autocast_off(act):
        raw = denormalize_actions(act, cfg) if normalized else act
        accel, kappa = raw[..., 0].expand(*lead, T), raw[..., 1].expand(*lead, T)  # (..., T)
        v0 = _estimate_v0(hxyz, hrot, cfg).expand(lead).unsqueeze(-1)  # (..., 1)
        v = torch.cat([v0, v0 + torch.cumsum(accel * dt, dim=-1)], dim=-1)  # (..., T+1)
        dtheta = kappa * v[..., :-1] * dt + kappa * accel * (0.5 * dt * dt)  # (..., T)
        theta = torch.cat([torch.zeros_like(v0), torch.cumsum(dtheta, dim=-1)], dim=-1)  # (..., T+1)
        vx, vy = v * torch.cos(theta), v * torch.sin(theta)
        x = torch.cumsum(0.5 * dt * (vx[..., :-1] + vx[..., 1:]), dim=-1)  # (..., T)
        y = torch.cumsum(0.5 * dt * (vy[..., :-1] + vy[..., 1:]), dim=-1)
        z = hxyz[..., -1, 2].expand(lead).unsqueeze(-1).expand(*lead, T)
        xyz = torch.stack([x, y, z], dim=-1)  # (..., T, 3)
        c, s = torch.cos(theta[..., 1:]), torch.sin(theta[..., 1:])
        o, i = torch.zeros_like(c), torch.ones_like(c)
        rot = torch.stack([c, -s, o, s, c, o, o, o, i], dim=-1).reshape(*lead, T, 3, 3)
        return xyz, rot


# ---------------------------------------------------------------------------------------------
# normalisation


def _channel_stats(cfg: ActionSpaceConfig, like):
    mean = [cfg.accel_mean_mps2, cfg.curvature_mean_1pm]
    std = [cfg.accel_std_mps2, cfg.curvature_std_1pm]
    if isinstance(like, torch.Tensor):
        kw = dict(dtype=like.dtype if like.is_floating_point() else torch.float32, device=like.device)
        return torch.tensor(mean, **kw), torch.tensor(std, **kw)
    return np.asarray(mean), np.asarray(std)


def normalize_actions(actions_raw, cfg: ActionSpaceConfig = ActionSpaceConfig()):
    """(..., 2) raw [a (m/s²), κ (1/m)] -> normalised, (x − mean)/std per channel (torch or numpy)."""
    if actions_raw.shape[-1] != 2:
        raise ValueError(f"actions must have shape (..., 2), got {tuple(actions_raw.shape)}")
    mean, std = _channel_stats(cfg, actions_raw)
    return (actions_raw - mean) / std


def denormalize_actions(actions, cfg: ActionSpaceConfig = ActionSpaceConfig()):
    """Inverse of :func:`normalize_actions`."""
    if actions.shape[-1] != 2:
        raise ValueError(f"actions must have shape (..., 2), got {tuple(actions.shape)}")
    mean, std = _channel_stats(cfg, actions)
    return actions * std + mean


def compute_action_stats(actions_raw, min_std: float = 1e-6) -> dict:
    """Per-channel mean/std of raw actions (..., 2) over all leading dims.

    Returns a dict keyed like the config fields, so ``dataclasses.replace(cfg, **stats)`` applies
    it. The std is floored at ``min_std`` so a constant channel cannot produce a division by zero.
    """
    a = np.asarray(actions_raw.detach().cpu() if isinstance(actions_raw, torch.Tensor) else actions_raw, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != 2:
        raise ValueError(f"actions_raw must have shape (..., 2), got {a.shape}")
    a = a.reshape(-1, 2)
    if a.shape[0] < 2:
        raise ValueError(f"need at least 2 actions to estimate statistics, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError("actions_raw contains NaN or inf")
    mean, std = a.mean(0), np.maximum(a.std(0), min_std)
    return {
        "accel_mean_mps2": float(mean[0]),
        "accel_std_mps2": float(std[0]),
        "curvature_mean_1pm": float(mean[1]),
        "curvature_std_1pm": float(std[1]),
    }


def is_within_bounds(actions, cfg: ActionSpaceConfig = ActionSpaceConfig(), *, normalized: bool = True):
    """(..., T, 2) -> bool (...): every step's accel and curvature lie within the config bounds."""
    raw = denormalize_actions(actions, cfg) if normalized else actions
    lo_a, hi_a = cfg.accel_bounds_mps2
    lo_k, hi_k = cfg.curvature_bounds_1pm
    ok = (raw[..., 0] >= lo_a) & (raw[..., 0] <= hi_a) & (raw[..., 1] >= lo_k) & (raw[..., 1] <= hi_k)
    return ok.all(-1)
