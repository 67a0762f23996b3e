"""Rigid poses and quaternions (numpy).

Conventions (DESIGN.md §4): quaternions are stored (x, y, z, w) like scipy; a pose named
``T_a_b`` is the pose of frame b expressed in frame a, so ``T_a_b.apply(p_b) == p_a`` and
``T_a_b @ T_b_c == T_a_c``. The AlpaSim protos use (w, x, y, z); convert only at that boundary
with :func:`xyzw_to_wxyz` / :func:`wxyz_to_xyzw`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
]


def _as_quat(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"quaternion must have 4 components (x, y, z, w), got shape {q.shape}")
    return q


def quat_normalize(q) -> np.ndarray:
    """Unit quaternion(s); raises on zero or non-finite input."""
    q = _as_quat(q)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(np.isfinite(q)) or np.any(n < 1e-12):
        raise ValueError("quaternion is zero or not finite")
    return q / n


def quat_conj(q) -> np.ndarray:
    q = _as_quat(q)
    return np.concatenate([-q[..., :3], q[..., 3:]], axis=-1)


def quat_mul(a, b) -> np.ndarray:
    """Hamilton product a ⊗ b (rotate by b first, then by a), broadcasting over leading dims."""
    a, b = _as_quat(a), _as_quat(b)
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def quat_rotate(q, v) -> np.ndarray:
    """Rotate vector(s) v (..., 3) by unit quaternion(s) q (..., 4)."""
    q = _as_quat(q)
    v = np.asarray(v, dtype=np.float64)
    u, w = q[..., :3], q[..., 3:4]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def quat_from_yaw(yaw_rad) -> np.ndarray:
    """Rotation about +z by ``yaw_rad`` (..., ) -> (..., 4)."""
    h = 0.5 * np.asarray(yaw_rad, dtype=np.float64)
    z = np.zeros_like(h)
    return np.stack([z, z, np.sin(h), np.cos(h)], axis=-1)


def yaw_of_quat(q) -> np.ndarray:
    """Heading (rotation of the x axis about z) in (-pi, pi]."""
    q = _as_quat(q)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quat_to_matrix(q) -> np.ndarray:
    q = quat_normalize(q)
    x, y, z, w = np.moveaxis(q, -1, 0)
    m = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def quat_from_matrix(m) -> np.ndarray:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4) with w >= 0."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrix must be (..., 3, 3), got {m.shape}")
    # Shepperd's method, vectorised: pick the largest of (w, x, y, z) as pivot for stability.
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = np.stack(
        [1 + 2 * m[..., 0, 0] - tr, 1 + 2 * m[..., 1, 1] - tr, 1 + 2 * m[..., 2, 2] - tr, 1 + tr], axis=-1
    )
    k = np.argmax(cands, axis=-1)
    q = np.empty(m.shape[:-2] + (4,))
    s = np.sqrt(np.maximum(np.take_along_axis(cands, k[..., None], -1)[..., 0], 1e-300)) * 2  # 4*pivot
    m01, m10, m02, m20, m12, m21 = m[..., 0, 1], m[..., 1, 0], m[..., 0, 2], m[..., 2, 0], m[..., 1, 2], m[..., 2, 1]
    rows = {
        0: (0.25 * s, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s),
        1: ((m01 + m10) / s, 0.25 * s, (m12 + m21) / s, (m02 - m20) / s),
        2: ((m02 + m20) / s, (m12 + m21) / s, 0.25 * s, (m10 - m01) / s),
        3: ((m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s, 0.25 * s),
    }
    for pivot, comps in rows.items():
        sel = k == pivot
        for i in range(4):
            q[..., i] = np.where(sel, comps[i], q[..., i])
    q = q * np.where(q[..., 3:4] < 0, -1.0, 1.0)
    return quat_normalize(q)


def xyzw_to_wxyz(q) -> np.ndarray:
    q = _as_quat(q)
    return np.concatenate([q[..., 3:], q[..., :3]], axis=-1)


def wxyz_to_xyzw(q) -> np.ndarray:
    q = _as_quat(q)
    return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


@dataclass(frozen=True, eq=False)
class Pose:
    """A rigid transform: translation (m) then rotation, as in AlpaSim's ``Pose{vec, quat}``.

    ``T_a_b = Pose(t, q)`` maps points of frame b into frame a: ``p_a = R(q) p_b + t``.
    """

    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    quat_xyzw: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))

    def __post_init__(self):
        t = np.asarray(self.translation, dtype=np.float64).reshape(-1)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ValueError(f"pose translation must be 3 finite numbers, got {self.translation!r}")
        object.__setattr__(self, "translation", t)
        object.__setattr__(self, "quat_xyzw", quat_normalize(np.asarray(self.quat_xyzw, dtype=np.float64).reshape(4)))

    # -- constructors -------------------------------------------------------------------------
    @staticmethod
    def identity() -> "Pose":
        return Pose()

    @staticmethod
    def from_xy_yaw(x_m: float, y_m: float, yaw_rad: float, z_m: float = 0.0) -> "Pose":
        return Pose(np.array([x_m, y_m, z_m]), quat_from_yaw(yaw_rad))

    @staticmethod
    def from_matrix(T) -> "Pose":
        T = np.asarray(T, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"homogeneous transform must be 4x4, got {T.shape}")
        return Pose(T[:3, 3], quat_from_matrix(T[:3, :3]))

    @staticmethod
    def from_wxyz(translation, quat_wxyz) -> "Pose":
        return Pose(translation, wxyz_to_xyzw(quat_wxyz))

    # -- algebra ------------------------------------------------------------------------------
    def __matmul__(self, other: "Pose") -> "Pose":
        """Composition: ``T_a_b @ T_b_c == T_a_c``."""
        return Pose(self.apply(other.translation), quat_mul(self.quat_xyzw, other.quat_xyzw))

    def inverse(self) -> "Pose":
        qi = quat_conj(self.quat_xyzw)
        return Pose(-quat_rotate(qi, self.translation), qi)

    def apply(self, points) -> np.ndarray:
        """Transform points (..., 3) from the child frame into the parent frame."""
        return quat_rotate(self.quat_xyzw, points) + self.translation

    def as_matrix(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = quat_to_matrix(self.quat_xyzw)
        T[:3, 3] = self.translation
        return T

    @property
    def rotation_matrix(self) -> np.ndarray:
        return quat_to_matrix(self.quat_xyzw)

    @property
    def yaw_rad(self) -> float:
        return float(yaw_of_quat(self.quat_xyzw))

    @property
    def quat_wxyz(self) -> np.ndarray:
        return xyzw_to_wxyz(self.quat_xyzw)

    def allclose(self, other: "Pose", atol: float = 1e-9) -> bool:
        same_rot = min(
            np.abs(self.quat_xyzw - other.quat_xyzw).max(), np.abs(self.quat_xyzw + other.quat_xyzw).max()
        )
        return bool(np.allclose(self.translation, other.translation, atol=atol) and same_rot <= atol)

    def __repr__(self) -> str:
        t = np.round(self.translation, 4).tolist()
        return f"Pose(t={t}, yaw={self.yaw_rad:.4f})"
