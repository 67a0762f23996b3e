"""Batched torch versions of the frame helpers the model needs (any leading dims, any device)."""

from __future__ import annotations

import torch

__all__ = ["yaw_from_rotmat_t", "rotmat_from_yaw_t", "transform_to_frame_t"]


def yaw_from_rotmat_t(R: torch.Tensor) -> torch.Tensor:
    """atan2(R[..., 1, 0], R[..., 0, 0]): (..., 3, 3) -> (...), in (-π, π]."""
    if R.ndim < 2 or R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape (..., 3, 3), got {tuple(R.shape)}")
    return torch.atan2(R[..., 1, 0], R[..., 0, 0])


def rotmat_from_yaw_t(yaw_rad: torch.Tensor) -> torch.Tensor:
    """Pure rotation about +z: (...) -> (..., 3, 3), same dtype/device as ``yaw_rad``."""
    c, s = torch.cos(yaw_rad), torch.sin(yaw_rad)
    z, o = torch.zeros_like(yaw_rad), torch.ones_like(yaw_rad)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*yaw_rad.shape, 3, 3)


def transform_to_frame_t(
    xyz: torch.Tensor, rot: torch.Tensor | None, ref_xyz: torch.Tensor, ref_rot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Express poses in a reference frame: ``R_ref⁻¹ (xyz − t_ref)``, ``R_ref⁻¹ · rot``.

    Args:
        xyz: (..., N, 3); rot: (..., N, 3, 3) or None.
        ref_xyz: (..., 3) and ref_rot: (..., 3, 3), the reference pose in the same frame as
            ``xyz`` (leading dims broadcast against those of ``xyz`` without N).
    """
    if xyz.ndim < 2 or xyz.shape[-1] != 3:
        raise ValueError(f"xyz must have shape (..., N, 3), got {tuple(xyz.shape)}")
    if ref_xyz.shape[-1:] != (3,) or ref_rot.shape[-2:] != (3, 3):
        raise ValueError(
            f"ref_xyz must be (..., 3) and ref_rot (..., 3, 3), got {tuple(ref_xyz.shape)} and {tuple(ref_rot.shape)}"
        )
    R_inv = ref_rot.transpose(-1, -2).unsqueeze(-3)  # (..., 1, 3, 3)
    out_xyz = (R_inv @ (xyz - ref_xyz.unsqueeze(-2)).unsqueeze(-1)).squeeze(-1)  # (..., N, 3)
    if rot is None:
        return out_xyz, None
    if rot.shape[-2:] != (3, 3) or rot.shape[:-2] != xyz.shape[:-1]:
        raise ValueError(f"rot must have shape {tuple(xyz.shape[:-1]) + (3, 3)}, got {tuple(rot.shape)}")
    return out_xyz, R_inv @ rot  # (..., N, 3, 3)
