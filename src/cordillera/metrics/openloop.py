"""Open-loop trajectory metrics (spec/alpamayo_model.md §6), numpy and batched torch.

Shapes: predictions ``pred_xyz`` (B, K, T, D) with K samples, ground truth ``gt_xyz`` (B, T, D),
D ≥ 2. Waypoint t (0-based) is at t0 + (t + 1)·dt. Distances are **XY only**.

``min_ade(...)`` keys (each the mean over B, or a (B,) array with ``reduce=False``):

- ``min_ade``: k* = argmin_k mean_t e[k, t]; the value mean_t e[k*, t] (e = XY L2 error).
- ``min_ade/by_t={h}``: mean of e[k*, :round(h/dt)] — the **same k*** chosen on the full horizon.
- ``ade``: mean_t e[0, t] (sample 0 — the original's dummy-logprob argmax); ``ade/by_t=3.0``.
- ``fde``: e[0, T − 1].
- ``l2@1s``, ``l2@2s``, ``l2@3s``: e[0, round(s/dt) − 1], the error of sample 0 at t0 + s.

Fixed-horizon keys (``ade/by_t=3.0``, ``l2@Ns``) are left out when T is too short for them;
horizons passed in ``horizons_s`` must fit in T or a ValueError is raised.

``corner_distance(...)``: boxes of size (L, W, H) centred at each pose with its full rotation;
XY L2 distance per corner and step, min over K element-wise (per step and corner), then the mean
over steps and the 8 corners.
"""

from __future__ import annotations

import numpy as np
import torch

from cordillera.geometry.frames import aabb_corners

__all__ = ["min_ade", "corner_distance", "DEFAULT_HORIZONS_S", "L2_AT_S"]

DEFAULT_HORIZONS_S = (0.5, 1.0, 3.0, 5.0)  # [s] spec/alpamayo_model.md §6 (min_ade/by_t)
ADE_BY_T_S = (3.0,)  # [s] spec/alpamayo_model.md §6 (ade/by_t=3.0)
L2_AT_S = (1, 2, 3)  # [s] single-step errors of sample 0
DEFAULT_LWH_M = (4.0, 3.0, 2.0)  # [m] spec/alpamayo_model.md §6 corner_distance box


def _steps(h_s: float, dt_s: float) -> int:
    return int(round(h_s / dt_s))


def _shape(x) -> tuple:
    return tuple(x.shape)


def _check_pred_gt(pred, gt, is_torch: bool):
    ps, gs = _shape(pred), _shape(gt)
    if len(ps) != 4 or ps[-1] < 2:
        raise ValueError(f"pred_xyz must have shape (B, K, T, D>=2), got {ps}")
    if len(gs) != 3 or gs[-1] < 2:
        raise ValueError(f"gt_xyz must have shape (B, T, D>=2), got {gs}")
    if ps[0] != gs[0] or ps[2] != gs[1]:
        raise ValueError(f"pred_xyz {ps} and gt_xyz {gs} disagree on batch size or number of steps")
    if ps[1] < 1 or ps[2] < 1:
        raise ValueError(f"pred_xyz needs K >= 1 samples and T >= 1 steps, got {ps}")
    finite = (lambda x: bool(torch.isfinite(x).all())) if is_torch else (lambda x: bool(np.all(np.isfinite(x))))
    for name, x in (("pred_xyz", pred), ("gt_xyz", gt)):
        if not finite(x):
            raise ValueError(f"{name} contains NaN or inf")


def min_ade(pred_xyz, gt_xyz, dt_s: float = 0.1, horizons_s=DEFAULT_HORIZONS_S, *, reduce: bool = True) -> dict:
    """minADE family (see the module docstring). Torch tensors in -> torch path, else numpy."""
    is_torch = isinstance(pred_xyz, torch.Tensor) or isinstance(gt_xyz, torch.Tensor)
    if is_torch:
        pred = torch.as_tensor(pred_xyz).to(torch.float64)
        gt = torch.as_tensor(gt_xyz, device=pred.device).to(torch.float64)
    else:
        pred, gt = np.asarray(pred_xyz, dtype=np.float64), np.asarray(gt_xyz, dtype=np.float64)
    _check_pred_gt(pred, gt, is_torch)
    if not dt_s > 0:
        raise ValueError(f"dt_s must be positive, got {dt_s}")
    T = pred.shape[2]
    for h in horizons_s:
        if not 1 <= _steps(h, dt_s) <= T:
            raise ValueError(f"horizon {h} s is {_steps(h, dt_s)} steps at dt={dt_s} s; predictions have T={T}")

    if is_torch:
        err = (pred[..., :2] - gt[:, None, :, :2]).norm(dim=-1)  # (B, K, T)
        k_star = err.mean(-1).argmin(-1)  # (B,)
        err_k = err.gather(1, k_star.view(-1, 1, 1).expand(-1, 1, T))[:, 0]  # (B, T)
    else:
        err = np.linalg.norm(pred[..., :2] - gt[:, None, :, :2], axis=-1)  # (B, K, T)
        k_star = err.mean(-1).argmin(-1)  # (B,)
        err_k = np.take_along_axis(err, k_star[:, None, None], axis=1)[:, 0]  # (B, T)
    err_0 = err[:, 0]  # (B, T)

    out = {"min_ade": err_k.mean(-1)}
    for h in horizons_s:
        out[f"min_ade/by_t={float(h)}"] = err_k[:, : _steps(h, dt_s)].mean(-1)
    out["ade"] = err_0.mean(-1)
    for h in ADE_BY_T_S:
        if _steps(h, dt_s) <= T:
            out[f"ade/by_t={float(h)}"] = err_0[:, : _steps(h, dt_s)].mean(-1)
    out["fde"] = err_0[:, -1]
    for s in L2_AT_S:
        if 1 <= _steps(s, dt_s) <= T:
            out[f"l2@{s}s"] = err_0[:, _steps(s, dt_s) - 1]
    if reduce:
        return {k: float(v.mean()) for k, v in out.items()}
    return out


def _rot_from(name: str, x, lead: tuple, is_torch: bool):
    """Yaw (lead) or rotation matrices (lead + (3, 3)) -> rotation matrices (lead + (3, 3))."""
    shape = _shape(x)
    if shape == lead:
        if is_torch:
            c, s = torch.cos(x), torch.sin(x)
            z, o = torch.zeros_like(c), torch.ones_like(c)
            return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*lead, 3, 3)
        c, s = np.cos(x), np.sin(x)
        z, o = np.zeros_like(c), np.ones_like(c)
        return np.stack([c, -s, z, s, c, z, z, z, o], axis=-1).reshape(lead + (3, 3))
    if shape == lead + (3, 3):
        return x
    raise ValueError(f"{name} must be yaw {lead} or rotation matrices {lead + (3, 3)}, got {shape}")


def _pad_xyz(x, is_torch: bool):
    if x.shape[-1] >= 3:
        return x[..., :3]
    if is_torch:
        return torch.cat([x[..., :2], torch.zeros_like(x[..., :1])], dim=-1)
    return np.concatenate([x[..., :2], np.zeros_like(x[..., :1])], axis=-1)


def corner_distance(
    pred_xyz, pred_yaw_or_rot, gt_xyz, gt_rot, lwh=DEFAULT_LWH_M, *, only_xy: bool = True, reduce: bool = True
):
    """Mean distance between the 8 box corners of prediction and ground truth, min over K.

    Args:
        pred_xyz (B, K, T, D≥2); pred_yaw_or_rot (B, K, T) yaw or (B, K, T, 3, 3);
        gt_xyz (B, T, D≥2); gt_rot (B, T, 3, 3) or yaw (B, T); lwh box size in metres.
        only_xy: XY distance between corners (default, like every metric here) or 3-D.
    Returns:
        float (mean over B), or a (B,) array/tensor with ``reduce=False``.
    """
    is_torch = isinstance(pred_xyz, torch.Tensor) or isinstance(gt_xyz, torch.Tensor)
    if is_torch:
        pred = torch.as_tensor(pred_xyz).to(torch.float64)
        dev = pred.device
        gt = torch.as_tensor(gt_xyz, device=dev).to(torch.float64)
        pred_r = torch.as_tensor(pred_yaw_or_rot, device=dev).to(torch.float64)
        gt_r = torch.as_tensor(gt_rot, device=dev).to(torch.float64)
    else:
        pred, gt = np.asarray(pred_xyz, dtype=np.float64), np.asarray(gt_xyz, dtype=np.float64)
        pred_r, gt_r = np.asarray(pred_yaw_or_rot, dtype=np.float64), np.asarray(gt_rot, dtype=np.float64)
    _check_pred_gt(pred, gt, is_torch)
    B, K, T = pred.shape[:3]
    R_p = _rot_from("pred_yaw_or_rot", pred_r, (B, K, T), is_torch)
    R_g = _rot_from("gt_rot", gt_r, (B, T), is_torch)
    finite = (lambda x: bool(torch.isfinite(x).all())) if is_torch else (lambda x: bool(np.all(np.isfinite(x))))
    if not (finite(R_p) and finite(R_g)):
        raise ValueError("pred_yaw_or_rot or gt_rot contains NaN or inf")
    corners = aabb_corners(lwh)  # (8, 3)
    if is_torch:
        c = torch.as_tensor(corners, dtype=torch.float64, device=dev)
        pc = torch.einsum("bktij,cj->bktci", R_p, c) + _pad_xyz(pred, True)[:, :, :, None]  # (B, K, T, 8, 3)
        gc = torch.einsum("btij,cj->btci", R_g, c) + _pad_xyz(gt, True)[:, :, None]  # (B, T, 8, 3)
        diff = pc - gc[:, None]
        d = (diff[..., :2] if only_xy else diff).norm(dim=-1)  # (B, K, T, 8)
        per_b = d.amin(dim=1).mean(dim=(-1, -2))  # (B,)
    else:
        pc = np.einsum("bktij,cj->bktci", R_p, corners) + _pad_xyz(pred, False)[:, :, :, None]
        gc = np.einsum("btij,cj->btci", R_g, corners) + _pad_xyz(gt, False)[:, :, None]
        diff = pc - gc[:, None]
        d = np.linalg.norm(diff[..., :2] if only_xy else diff, axis=-1)  # (B, K, T, 8)
        per_b = d.min(axis=1).mean(axis=(-1, -2))  # (B,)
    return float(per_b.mean()) if reduce else per_b
