"""Frame transforms between ``local``, ``rig``, ``aabb`` and camera optical frames (numpy).

Frames (DESIGN.md §4):
- ``local``: inertial per scenario, x east, y north, z up.
- ``rig``: body frame, x forward, y left, z up (FLU), origin at the rear-axle centre on the ground.
- ``aabb``: rig orientation, origin at the centre of the vehicle's bounding box.
- camera *optical*: z along the optical axis, x right in the image, y down in the image.

``T_a_b`` is the pose of frame b expressed in frame a (``p_a = T_a_b.apply(p_b)``).
"""

from __future__ import annotations

import numpy as np

from cordillera.geometry.pose import Pose, quat_from_matrix

__all__ = [
    "unwrap_yaw",
    "yaw_from_rotmat",
    "rotmat_from_yaw",
    "rotmat_from_ypr",
    "to_frame",
    "R_RIG_TO_OPTICAL",
    "T_rig_camera_optical",
    "T_rig_aabb",
    "aabb_corners",
]


def _finite(name: str, x: np.ndarray) -> None:
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf (shape {x.shape})")


def unwrap_yaw(yaw_rad) -> np.ndarray:
    """Remove 2π jumps along the last axis so consecutive yaws differ by less than π."""
    yaw = np.asarray(yaw_rad, dtype=np.float64)
    _finite("yaw_rad", yaw)
    return np.unwrap(yaw, axis=-1)


def yaw_from_rotmat(R) -> np.ndarray:
    """Heading of the x axis about +z, atan2(R[1, 0], R[0, 0]), in (-π, π]; (..., 3, 3) -> (...)."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim < 2 or R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape (..., 3, 3), got {R.shape}")
    return np.arctan2(R[..., 1, 0], R[..., 0, 0])


def rotmat_from_yaw(yaw_rad) -> np.ndarray:
    """Pure rotation about +z by ``yaw_rad``: (...) -> (..., 3, 3)."""
    yaw = np.asarray(yaw_rad, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    z, o = np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack([c, -s, z, s, c, z, z, z, o], axis=-1).reshape(yaw.shape + (3, 3))


def rotmat_from_ypr(yaw_rad, pitch_rad, roll_rad) -> np.ndarray:
    """Body (FLU) attitude R = Rz(yaw) · Ry(pitch) · Rx(roll) (intrinsic z-y'-x'').

    Right-hand rule about the FLU axes: positive yaw turns the x axis to the left, positive pitch
    (about +y, which points left) tips the x axis *down*, positive roll (about +x) raises the
    left side (rotates +y towards +z).
    """
    y, p, r = (np.asarray(a, dtype=np.float64) for a in (yaw_rad, pitch_rad, roll_rad))
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    Rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    Ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    Rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return Rz @ Ry @ Rx


def _as_T(T) -> np.ndarray:
    if isinstance(T, Pose):
        return T.as_matrix()
    T = np.asarray(T, dtype=np.float64)
    if T.ndim < 2 or T.shape[-2:] != (4, 4):
        raise ValueError(f"T_local_ref must be a Pose or a (..., 4, 4) homogeneous matrix, got shape {T.shape}")
    _finite("T_local_ref", T)
    return T


def to_frame(xyz_local, rot_local, T_local_ref):
    """Express a batch of poses in a reference frame (spec/alpamayo_model.md §2.3).

    ``xyz_ref = R_ref⁻¹ (xyz − t_ref)`` and ``rot_ref = R_ref⁻¹ · rot``.

    Args:
        xyz_local: (..., N, 3) positions in the ``local`` frame.
        rot_local: (..., N, 3, 3) orientations in ``local``, or None (then None is returned).
        T_local_ref: the reference pose in ``local`` — a :class:`Pose`, a (4, 4) matrix, or a
            (..., 4, 4) stack whose leading dims match those of ``xyz_local`` without N.
    Returns:
        (xyz_ref (..., N, 3), rot_ref (..., N, 3, 3) or None).
    """
    xyz = np.asarray(xyz_local, dtype=np.float64)
    if xyz.ndim < 2 or xyz.shape[-1] != 3:
        raise ValueError(f"xyz_local must have shape (..., N, 3), got {xyz.shape}")
    _finite("xyz_local", xyz)
    T = _as_T(T_local_ref)
    R_ref = T[..., None, :3, :3]  # (..., 1, 3, 3)
    t_ref = T[..., None, :3, 3]  # (..., 1, 3)
    R_inv = np.swapaxes(R_ref, -1, -2)
    xyz_ref = np.einsum("...ij,...j->...i", R_inv, xyz - t_ref)
    if rot_local is None:
        return xyz_ref, None
    rot = np.asarray(rot_local, dtype=np.float64)
    if rot.shape[-2:] != (3, 3) or rot.shape[:-2] != xyz.shape[:-1]:
        raise ValueError(f"rot_local must have shape {xyz.shape[:-1] + (3, 3)} to match xyz_local, got {rot.shape}")
    _finite("rot_local", rot)
    return xyz_ref, R_inv @ rot


# Orientation of the camera optical frame in the rig frame for a camera looking straight ahead:
# its columns are the optical axes written in rig (FLU) coordinates:
#   x_opt (image right) = −y_rig,  y_opt (image down) = −z_rig,  z_opt (optical axis) = +x_rig.
# So p_rig = R_RIG_TO_OPTICAL @ p_opt (naming: "pose of optical expressed in rig").
R_RIG_TO_OPTICAL = np.array(
    [
        [0.0, 0.0, 1.0],
        [-1.0, 0.0, 0.0],
        [0.0, -1.0, 0.0],
    ]
)


def T_rig_camera_optical(mount_xyz_m, yaw_rad: float = 0.0, pitch_rad: float = 0.0, roll_rad: float = 0.0) -> Pose:
    """Pose of a camera's optical frame in the rig frame.

    The camera *body* frame (FLU, x along the optical axis) is placed at ``mount_xyz_m`` (rig
    frame, metres) with attitude ``Rz(yaw)·Ry(pitch)·Rx(roll)`` (see :func:`rotmat_from_ypr`):
    yaw > 0 looks left, pitch > 0 looks down, roll > 0 raises the camera's left side. The optical frame is then the body frame re-labelled by
    :data:`R_RIG_TO_OPTICAL`, so ``R_rig_optical = R_body · R_RIG_TO_OPTICAL``.
    A forward camera with zero angles has its optical axis along +x_rig, image x along −y_rig and
    image y along −z_rig.
    """
    t = np.asarray(mount_xyz_m, dtype=np.float64).reshape(-1)
    if t.shape != (3,):
        raise ValueError(f"mount_xyz_m must have 3 components, got shape {np.shape(mount_xyz_m)}")
    angles = np.array([yaw_rad, pitch_rad, roll_rad], dtype=np.float64)
    _finite("camera mount (xyz, yaw, pitch, roll)", np.concatenate([t, angles]))
    R = rotmat_from_ypr(yaw_rad, pitch_rad, roll_rad) @ R_RIG_TO_OPTICAL
    return Pose(t, quat_from_matrix(R))


def T_rig_aabb(length_m: float, height_m: float, rear_axle_to_center_m: float) -> Pose:
    """Pose of the vehicle bounding-box centre (``aabb`` frame) in the rig frame.

    The rig origin is the rear-axle centre on the ground, so the box centre sits
    ``rear_axle_to_center_m`` ahead of it and ``height_m / 2`` above the ground; axes coincide.
    (PhysicalAI-AV stores ``rear_axle_to_bbox_center``; ``ego_length_offset`` is that over length.)
    """
    vals = np.array([length_m, height_m, rear_axle_to_center_m], dtype=np.float64)
    _finite("vehicle dimensions", vals)
    if length_m <= 0 or height_m <= 0:
        raise ValueError(f"vehicle length and height must be positive, got length={length_m}, height={height_m}")
    if abs(rear_axle_to_center_m) > length_m:
        raise ValueError(
            f"rear_axle_to_center_m={rear_axle_to_center_m} puts the box centre outside a {length_m} m long vehicle"
        )
    return Pose(np.array([rear_axle_to_center_m, 0.0, 0.5 * height_m]))


def aabb_corners(lwh_m) -> np.ndarray:
    """The 8 corners (8, 3) of a box of size (length, width, height) centred at the origin.

    Order: x ∈ {+, −} outer, then y ∈ {+, −}, then z ∈ {+, −} (front-left-top first).
    """
    lwh = np.asarray(lwh_m, dtype=np.float64).reshape(-1)
    if lwh.shape != (3,) or not np.all(np.isfinite(lwh)) or np.any(lwh <= 0):
        raise ValueError(f"lwh_m must be 3 positive finite sizes, got {lwh_m!r}")
    signs = np.array([[sx, sy, sz] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], dtype=np.float64)
    return 0.5 * signs * lwh
