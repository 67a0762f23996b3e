"""Conversions between AlpaSim v0 protos and cordillera's types — the only place they happen.

This is also the ONLY module that swaps quaternion order: the protos store ``Quat{w, x, y, z}``
(fields 1..4), cordillera stores (x, y, z, w) (DESIGN.md §4). Every other module sees
:class:`~cordillera.geometry.pose.Pose` or numpy arrays.

Other boundary facts handled here (spec/alpasim.md §2.1, §10):

- Timestamps are ``fixed64`` microseconds on the wire (unsigned 64-bit) and python ``int`` here.
  Controller fields ``future_time_us`` / ``pose_reporting_interval_us`` are ``int64`` — use
  :func:`t_us_to_proto_i64` for them.
- ``Vec3``/``Quat``/``AABB`` are float32 on the wire, so values round to float32 (≈0.06 mm at
  1 km from the origin); quaternions are re-normalised when read.
- ``DynamicState`` lists ``angular_velocity`` FIRST (field 1) and ``linear_velocity`` second, while
  AlpaSim's internal 12-vector — and ours — is ``[lin_vel xyz, ang_vel xyz, lin_acc xyz,
  ang_acc xyz]`` (``alpasim_utils/geometry.py``). The converters map by field name, never by order.
- Route waypoints may be NaN-padded (20 points); poses, states and boxes may not.

Malformed input (NaN where not allowed, a zero/unset quaternion, negative box size, timestamps
that are not integers, negative, beyond 64 bits, or not strictly increasing in a trajectory, a
wrong message type) raises ``ValueError`` naming what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cordillera.geometry.pose import Pose
from cordillera.serve.stubs import common_pb2, egodriver_pb2

__all__ = [
    "DYNAMIC_STATE_LAYOUT",
    "t_us_to_proto",
    "t_us_to_proto_i64",
    "t_us_from_proto",
    "vec3_to_proto",
    "vec3_from_proto",
    "quat_xyzw_to_proto",
    "quat_xyzw_from_proto",
    "pose_to_proto",
    "pose_from_proto",
    "pose_at_time_to_proto",
    "pose_at_time_from_proto",
    "trajectory_to_proto",
    "trajectory_from_proto",
    "trajectory_poses_to_proto",
    "trajectory_poses_from_proto",
    "dynamic_state_to_proto",
    "dynamic_state_from_proto",
    "dynamic_states_to_proto",
    "dynamic_states_from_proto",
    "state_at_time_to_proto",
    "state_at_time_from_proto",
    "aabb_to_proto",
    "aabb_from_proto",
    "route_to_proto",
    "route_from_proto",
]

_U64_MAX = 2**64 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

# Slices of our (and AlpaSim's internal) 12-vector, keyed by the proto field that carries them.
DYNAMIC_STATE_LAYOUT: dict[str, slice] = {
    "linear_velocity": slice(0, 3),  # [m/s]   rig frame
    "angular_velocity": slice(3, 6),  # [rad/s] rig frame
    "linear_acceleration": slice(6, 9),  # [m/s²]
    "angular_acceleration": slice(9, 12),  # [rad/s²]
}


def _check_type(msg, cls, what: str) -> None:
    if not isinstance(msg, cls):
        raise ValueError(f"{what}: expected {cls.DESCRIPTOR.full_name}, got {type(msg).__name__}")


# -- timestamps ---------------------------------------------------------------------------------
def _as_int_us(t_us, what: str) -> int:
    if isinstance(t_us, (bool, np.bool_)):
        raise ValueError(f"{what}: timestamp must be an integer number of µs, got bool {t_us!r}")
    if isinstance(t_us, (int, np.integer)):
        return int(t_us)
    if isinstance(t_us, (float, np.floating)) and np.isfinite(t_us) and float(t_us).is_integer():
        return int(t_us)
    raise ValueError(f"{what}: timestamp must be an integer number of µs, got {t_us!r}")


def t_us_to_proto(t_us, what: str = "timestamp_us") -> int:
    """A python/numpy integer µs -> value for a ``fixed64`` field (0 ≤ t < 2**64)."""
    t = _as_int_us(t_us, what)
    if not 0 <= t <= _U64_MAX:
        raise ValueError(f"{what}: fixed64 timestamp must be in [0, 2**64), got {t}")
    return t


def t_us_to_proto_i64(t_us, what: str = "time_us") -> int:
    """A python/numpy integer µs -> value for an ``int64`` field (controller.proto)."""
    t = _as_int_us(t_us, what)
    if not _I64_MIN <= t <= _I64_MAX:
        raise ValueError(f"{what}: int64 value out of range: {t}")
    return t


def t_us_from_proto(value) -> int:
    return int(value)


# -- vectors and quaternions --------------------------------------------------------------------
def vec3_to_proto(xyz, allow_nan: bool = False, what: str = "Vec3") -> common_pb2.Vec3:
    v = np.asarray(xyz, dtype=np.float64)
    if v.shape != (3,):
        raise ValueError(f"{what}: expected 3 components, got shape {v.shape}")
    if not (np.all(np.isfinite(v)) or (allow_nan and not np.any(np.isinf(v)))):
        raise ValueError(f"{what}: components must be finite, got {v.tolist()}")
    return common_pb2.Vec3(x=v[0], y=v[1], z=v[2])


def vec3_from_proto(msg: common_pb2.Vec3, allow_nan: bool = False, what: str = "Vec3") -> np.ndarray:
    _check_type(msg, common_pb2.Vec3, what)
    v = np.array([msg.x, msg.y, msg.z], dtype=np.float64)
    if not (np.all(np.isfinite(v)) or (allow_nan and not np.any(np.isinf(v)))):
        raise ValueError(f"{what}: components must be finite, got {v.tolist()}")
    return v


def quat_xyzw_to_proto(q_xyzw, what: str = "Quat") -> common_pb2.Quat:
    """Our (x, y, z, w) -> proto ``Quat{w=1, x=2, y=3, z=4}`` (assigned by name)."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ValueError(f"{what}: expected 4 finite components (x, y, z, w), got {q.tolist()}")
    return common_pb2.Quat(w=q[3], x=q[0], y=q[1], z=q[2])


def quat_xyzw_from_proto(msg: common_pb2.Quat, what: str = "Quat") -> np.ndarray:
    """Proto ``Quat`` -> our unit (x, y, z, w); raises on NaN or a zero (e.g. unset) quaternion."""
    _check_type(msg, common_pb2.Quat, what)
    q = np.array([msg.x, msg.y, msg.z, msg.w], dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.all(np.isfinite(q)) or n < 1e-6:
        raise ValueError(f"{what}: quaternion must be finite and non-zero, got (x,y,z,w)={q.tolist()}")
    return q / n


# -- poses ---------------------------------------------------------------------------------------
def pose_to_proto(pose: Pose) -> common_pb2.Pose:
    if not isinstance(pose, Pose):
        raise ValueError(f"pose_to_proto: expected a Pose, got {type(pose).__name__}")
    return common_pb2.Pose(vec=vec3_to_proto(pose.translation, what="Pose.vec"),
                           quat=quat_xyzw_to_proto(pose.quat_xyzw, what="Pose.quat"))


def pose_from_proto(msg: common_pb2.Pose) -> Pose:
    """An unset ``vec`` is the zero translation (proto3 default); an unset ``quat`` is invalid."""
    _check_type(msg, common_pb2.Pose, "pose_from_proto")
    return Pose(vec3_from_proto(msg.vec, what="Pose.vec"), quat_xyzw_from_proto(msg.quat, what="Pose.quat"))


def pose_at_time_to_proto(t_us, pose: Pose) -> common_pb2.PoseAtTime:
    return common_pb2.PoseAtTime(pose=pose_to_proto(pose), timestamp_us=t_us_to_proto(t_us))


def pose_at_time_from_proto(msg: common_pb2.PoseAtTime) -> tuple[int, Pose]:
    _check_type(msg, common_pb2.PoseAtTime, "pose_at_time_from_proto")
    return t_us_from_proto(msg.timestamp_us), pose_from_proto(msg.pose)


# -- trajectories --------------------------------------------------------------------------------
def _check_times(t_us: np.ndarray, what: str) -> None:
    if t_us.size > 1 and np.any(np.diff(t_us.astype(object)) <= 0):
        raise ValueError(f"{what}: timestamps must be strictly increasing, got {t_us.tolist()}")


def _as_t_us_array(t_us, what: str) -> np.ndarray:
    t = [t_us_to_proto(x, what) for x in np.asarray(t_us).reshape(-1).tolist()]
    # uint64 keeps the full fixed64 range; object arrays are avoided on the common path.
    return np.array(t, dtype=np.uint64)


def trajectory_to_proto(t_us, translations, quats_xyzw) -> common_pb2.Trajectory:
    """Arrays ``t_us`` (N,) ints, ``translations`` (N, 3) m, ``quats_xyzw`` (N, 4) -> Trajectory.

    N may be 0 (an empty plan is legal during force-GT, spec/alpasim.md §2.2)."""
    t = _as_t_us_array(t_us, "Trajectory.timestamp_us")
    xyz = np.asarray(translations, dtype=np.float64).reshape(-1, 3) if np.size(translations) else np.zeros((0, 3))
    q = np.asarray(quats_xyzw, dtype=np.float64).reshape(-1, 4) if np.size(quats_xyzw) else np.zeros((0, 4))
    if not (len(t) == len(xyz) == len(q)):
        raise ValueError(f"trajectory: t_us {len(t)}, translations {np.shape(translations)}, "
                         f"quats_xyzw {np.shape(quats_xyzw)} disagree in length")
    _check_times(t, "trajectory_to_proto")
    msg = common_pb2.Trajectory()
    for i in range(len(t)):
        pose = Pose(xyz[i], q[i])  # validates finiteness and normalises
        msg.poses.append(pose_at_time_to_proto(int(t[i]), pose))
    return msg


def trajectory_from_proto(msg: common_pb2.Trajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trajectory -> (t_us (N,) int64, translations (N, 3), quats_xyzw (N, 4)).

    int64 holds every realistic µs timestamp (epoch µs fit until year 294 247); larger values
    raise rather than wrap."""
    _check_type(msg, common_pb2.Trajectory, "trajectory_from_proto")
    n = len(msg.poses)
    t = np.zeros(n, dtype=np.int64)
    xyz, q = np.zeros((n, 3)), np.zeros((n, 4))
    for i, p in enumerate(msg.poses):
        ts = t_us_from_proto(p.timestamp_us)
        if ts > _I64_MAX:
            raise ValueError(f"Trajectory.poses[{i}].timestamp_us {ts} does not fit int64")
        t[i] = ts
        pose = pose_from_proto(p.pose)
        xyz[i], q[i] = pose.translation, pose.quat_xyzw
    _check_times(t, "trajectory_from_proto")
    return t, xyz, q


def trajectory_poses_to_proto(t_us, poses: Sequence[Pose]) -> common_pb2.Trajectory:
    poses = list(poses)
    if any(not isinstance(p, Pose) for p in poses):
        raise ValueError("trajectory_poses_to_proto: every element of poses must be a Pose")
    xyz = np.array([p.translation for p in poses]).reshape(-1, 3)
    q = np.array([p.quat_xyzw for p in poses]).reshape(-1, 4)
    return trajectory_to_proto(t_us, xyz, q)


def trajectory_poses_from_proto(msg: common_pb2.Trajectory) -> tuple[np.ndarray, list[Pose]]:
    t, xyz, q = trajectory_from_proto(msg)
    return t, [Pose(xyz[i], q[i]) for i in range(len(t))]


# -- dynamic states ------------------------------------------------------------------------------
def dynamic_state_to_proto(state12) -> common_pb2.DynamicState:
    """Our 12-vector ``[lin_vel, ang_vel, lin_acc, ang_acc]`` (rig frame) -> DynamicState."""
    s = np.asarray(state12, dtype=np.float64)
    if s.shape != (12,) or not np.all(np.isfinite(s)):
        raise ValueError(f"dynamic state must be 12 finite numbers [lin_vel, ang_vel, lin_acc, ang_acc], "
                         f"got shape {s.shape}")
    return common_pb2.DynamicState(**{name: vec3_to_proto(s[sl], what=f"DynamicState.{name}")
                                      for name, sl in DYNAMIC_STATE_LAYOUT.items()})


def dynamic_state_from_proto(msg: common_pb2.DynamicState) -> np.ndarray:
    """DynamicState -> 12-vector ``[lin_vel, ang_vel, lin_acc, ang_acc]``; unset parts are zero."""
    _check_type(msg, common_pb2.DynamicState, "dynamic_state_from_proto")
    s = np.zeros(12)
    for name, sl in DYNAMIC_STATE_LAYOUT.items():
        s[sl] = vec3_from_proto(getattr(msg, name), what=f"DynamicState.{name}")
    return s


def dynamic_states_to_proto(states) -> list[common_pb2.DynamicState]:
    """(N, 12) -> N DynamicState messages (e.g. for ``RolloutEgoTrajectory.dynamic_states``)."""
    s = np.asarray(states, dtype=np.float64)
    if s.size == 0:
        return []
    if s.ndim != 2 or s.shape[1] != 12:
        raise ValueError(f"dynamic states must be (N, 12), got {s.shape}")
    return [dynamic_state_to_proto(row) for row in s]


def dynamic_states_from_proto(msgs) -> np.ndarray:
    rows = [dynamic_state_from_proto(m) for m in msgs]
    return np.array(rows).reshape(-1, 12)


def state_at_time_to_proto(t_us, pose: Pose, state12) -> common_pb2.StateAtTime:
    return common_pb2.StateAtTime(timestamp_us=t_us_to_proto(t_us), pose=pose_to_proto(pose),
                                  state=dynamic_state_to_proto(state12))


def state_at_time_from_proto(msg: common_pb2.StateAtTime) -> tuple[int, Pose, np.ndarray]:
    _check_type(msg, common_pb2.StateAtTime, "state_at_time_from_proto")
    return t_us_from_proto(msg.timestamp_us), pose_from_proto(msg.pose), dynamic_state_from_proto(msg.state)


# -- boxes ---------------------------------------------------------------------------------------
def aabb_to_proto(size_xyz_m) -> common_pb2.AABB:
    s = np.asarray(size_xyz_m, dtype=np.float64)
    if s.shape != (3,) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"AABB size must be 3 finite non-negative lengths (x, y, z) in m, got {s.tolist()}")
    return common_pb2.AABB(size_x=s[0], size_y=s[1], size_z=s[2])


def aabb_from_proto(msg: common_pb2.AABB) -> np.ndarray:
    _check_type(msg, common_pb2.AABB, "aabb_from_proto")
    s = np.array([msg.size_x, msg.size_y, msg.size_z], dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"AABB size must be finite and non-negative, got {s.tolist()}")
    return s


# -- route ---------------------------------------------------------------------------------------
def route_to_proto(t_us, waypoints_rig) -> egodriver_pb2.Route:
    """(N, 3) rig-frame waypoints at ``t_us`` -> Route; NaN rows (padding) are allowed."""
    w = np.asarray(waypoints_rig, dtype=np.float64)
    if w.size == 0:
        w = w.reshape(0, 3)
    if w.ndim != 2 or w.shape[1] != 3:
        raise ValueError(f"route waypoints must be (N, 3), got {w.shape}")
    return egodriver_pb2.Route(
        waypoints=[vec3_to_proto(p, allow_nan=True, what=f"Route.waypoints[{i}]") for i, p in enumerate(w)],
        timestamp_us=t_us_to_proto(t_us, "Route.timestamp_us"),
    )


def route_from_proto(msg: egodriver_pb2.Route) -> tuple[int, np.ndarray]:
    """Route -> (t_us, waypoints (N, 3) rig frame, NaN padding kept)."""
    _check_type(msg, egodriver_pb2.Route, "route_from_proto")
    w = [vec3_from_proto(p, allow_nan=True, what=f"Route.waypoints[{i}]") for i, p in enumerate(msg.waypoints)]
    return t_us_from_proto(msg.timestamp_us), np.array(w, dtype=np.float64).reshape(-1, 3)
