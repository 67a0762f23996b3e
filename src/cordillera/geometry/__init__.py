"""Poses, quaternions, frame transforms and interpolation (numpy; torch ops in ``torch_ops``)."""

from cordillera.geometry.frames import (
    R_RIG_TO_OPTICAL,
    T_rig_aabb,
    T_rig_camera_optical,
    aabb_corners,
    rotmat_from_yaw,
    rotmat_from_ypr,
    to_frame,
    unwrap_yaw,
    yaw_from_rotmat,
)
from cordillera.geometry.interpolate import interpolate_poses, interpolate_scalar
from cordillera.geometry.pose import (
    Pose,
    quat_conj,
    quat_from_matrix,
    quat_from_yaw,
    quat_mul,
    quat_normalize,
    quat_rotate,
    quat_to_matrix,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
    yaw_of_quat,
)

__all__ = [
    "Pose",
    "quat_mul",
    "quat_conj",
    "quat_normalize",
    "quat_rotate",
    "quat_from_yaw",
    "yaw_of_quat",
    "quat_to_matrix",
    "quat_from_matrix",
    "xyzw_to_wxyz",
    "wxyz_to_xyzw",
    "unwrap_yaw",
    "yaw_from_rotmat",
    "rotmat_from_yaw",
    "rotmat_from_ypr",
    "to_frame",
    "R_RIG_TO_OPTICAL",
    "T_rig_camera_optical",
    "T_rig_aabb",
    "aabb_corners",
    "interpolate_poses",
    "interpolate_scalar",
]
