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

import math
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
    "kinematic_steering",
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
def _check_finite3(c: list, allow_nan: bool, what: str) -> None:
    # math.* on 3 python floats: ~10x cheaper than np.all(np.isfinite(...)) (called per pose per step)
    if not (all(map(math.isfinite, c)) or (allow_nan and not any(map(math.isinf, c)))):
        raise ValueError(f"{what}: components must be finite, got {c}")


def vec3_to_proto(xyz, allow_nan: bool = False, what: str = "Vec3") -> common_pb2.Vec3:
    v = np.asarray(xyz, dtype=np.float64)
    if v.shape != (3,):
        raise ValueError(f"{what}: expected 3 components, got shape {v.shape}")
    c = v.tolist()
    _check_finite3(c, allow_nan, what)
    return common_pb2.Vec3(x=c[0], y=c[1], z=c[2])


def vec3_from_proto(msg: common_pb2.Vec3, allow_nan: bool = False, what: str = "Vec3") -> np.ndarray:
    _check_type(msg, common_pb2.Vec3, what)
    c = [msg.x, msg.y, msg.z]
    _check_finite3(c, allow_nan, what)
    return np.array(c, dtype=np.float64)


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
    if t_us.size > 1 and np.any(t_us[1:] <= t_us[:-1]):  # compares, never subtracts (uint64 cannot wrap)
        raise ValueError(f"{what}: timestamps must be strictly increasing, got {t_us.tolist()}")


def _as_t_us_array(t_us, what: str) -> np.ndarray:
    a = np.asarray(t_us).reshape(-1)
    if a.dtype.kind in "iu" and (a.dtype.kind == "u" or a.size == 0 or a.min() >= 0):
        return a.astype(np.uint64)  # the common path: already non-negative integers
    t = [t_us_to_proto(x, what) for x in a.tolist()]
    # uint64 keeps the full fixed64 range; object arrays are avoided on the common path.
    return np.array(t, dtype=np.uint64)


def _wire_rows(*fields) -> tuple[np.dtype, dict[str, int]]:
    """A numpy record of one length-delimited wire entry: ``fields`` are (name, byte value) for
    tag/length bytes (``"u1"``) or (name, dtype) for values (``"<f4"``: float, ``"<u8"``: fixed64)."""
    dt = np.dtype([(n, "u1" if isinstance(v, int) else v) for n, v in fields])
    return dt, {n: v for n, v in fields if isinstance(v, int)}


def _vec3_fields(prefix: str, field_number: int) -> list:
    """A Vec3 as field ``field_number`` of its parent (17 bytes); values ``<prefix>x/y/z``."""
    out = [(f"{prefix}tag", field_number << 3 | 2), (f"{prefix}len", 15)]
    for i, n in enumerate("xyz"):
        out += [(f"{prefix}{n}tag", (i + 1) << 3 | 5), (f"{prefix}{n}", "<f4")]
    return out


# Trajectory.poses[i] = PoseAtTime{1 pose: Pose{1 vec: Vec3, 2 quat: Quat{w, x, y, z}}, 2 timestamp_us fixed64}
_TRAJ_ROW, _TRAJ_TAGS = _wire_rows(
    ("tag", 1 << 3 | 2), ("len", 50), ("ptag", 1 << 3 | 2), ("plen", 39), *_vec3_fields("v", 1),
    ("qtag", 2 << 3 | 2), ("qlen", 20), ("qwtag", 1 << 3 | 5), ("qw", "<f4"), ("qxtag", 2 << 3 | 5), ("qx", "<f4"),
    ("qytag", 3 << 3 | 5), ("qy", "<f4"), ("qztag", 4 << 3 | 5), ("qz", "<f4"), ("ttag", 2 << 3 | 1), ("t", "<u8"))
assert _TRAJ_ROW.itemsize == 52


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
    # Vectorised checks (a per-pose Pose() costs ~20 µs; plans have 65 poses and go out every step).
    bad = ~np.all(np.isfinite(xyz), axis=1)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"trajectory pose {i}: translation must be 3 finite numbers, got {xyz[i].tolist()}")
    n = np.linalg.norm(q, axis=1)
    bad = ~(np.all(np.isfinite(q), axis=1) & (n >= 1e-12))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"trajectory pose {i}: quaternion must be finite and non-zero, got {q[i].tolist()}")
    q = q / n[:, None]
    # Bulk: every pose is one fixed-size record of the wire format, filled by numpy and parsed by
    # protobuf in C (≈ 20x faster than building 65 x 4 messages in Python, same message).
    rec = np.zeros(len(t), _TRAJ_ROW)
    for name, tag in _TRAJ_TAGS.items():
        rec[name] = tag
    rec["vx"], rec["vy"], rec["vz"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rec["qw"], rec["qx"], rec["qy"], rec["qz"] = q[:, 3], q[:, 0], q[:, 1], q[:, 2]
    rec["t"] = t
    return common_pb2.Trajectory.FromString(rec.tobytes())


def trajectory_from_proto(msg: common_pb2.Trajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trajectory -> (t_us (N,) int64, translations (N, 3), quats_xyzw (N, 4)).

    int64 holds every realistic µs timestamp (epoch µs fit until year 294 247); larger values
    raise rather than wrap."""
    _check_type(msg, common_pb2.Trajectory, "trajectory_from_proto")
    n = len(msg.poses)
    ts = [p.timestamp_us for p in msg.poses]
    if ts and max(ts) > _I64_MAX:
        i = int(np.argmax(ts))
        raise ValueError(f"Trajectory.poses[{i}].timestamp_us {ts[i]} does not fit int64")
    t = np.array(ts, dtype=np.int64).reshape(n)
    poses = [p.pose for p in msg.poses]  # one attribute hop per list: half the time of p.pose.vec.x
    xyz = np.array([(v.x, v.y, v.z) for v in [p.vec for p in poses]], dtype=np.float64).reshape(n, 3)
    q = np.array([(u.x, u.y, u.z, u.w) for u in [p.quat for p in poses]], dtype=np.float64).reshape(n, 4)
    bad = ~np.all(np.isfinite(xyz), axis=1)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"Trajectory.poses[{i}].pose.vec: components must be finite, got {xyz[i].tolist()}")
    norm = np.linalg.norm(q, axis=1)
    bad = ~(np.all(np.isfinite(q), axis=1) & (norm >= 1e-6))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"Trajectory.poses[{i}].pose.quat: quaternion must be finite and non-zero, got "
                         f"(x,y,z,w)={q[i].tolist()}")
    q = q / norm[:, None]
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


# RolloutEgoTrajectory.dynamic_states[i] (field 5) = DynamicState{1 angular_velocity, 2 linear_velocity,
# 3 linear_acceleration, 4 angular_acceleration}, each a Vec3: the bulk record of dynamic_states_to_proto.
_DYN_FIELD_NUMBERS = {"angular_velocity": 1, "linear_velocity": 2, "linear_acceleration": 3, "angular_acceleration": 4}
_DYN_ROW, _DYN_TAGS = _wire_rows(("tag", 5 << 3 | 2), ("len", 68),
                                 *[f for name, k in _DYN_FIELD_NUMBERS.items() for f in _vec3_fields(f"{name}.", k)])
assert _DYN_ROW.itemsize == 70


def dynamic_states_to_proto(states) -> list[common_pb2.DynamicState]:
    """(N, 12) -> N DynamicState messages (e.g. for ``RolloutEgoTrajectory.dynamic_states``)."""
    s = np.asarray(states, dtype=np.float64)
    if s.size == 0:
        return []
    if s.ndim != 2 or s.shape[1] != 12:
        raise ValueError(f"dynamic states must be (N, 12), got {s.shape}")
    bad = ~np.all(np.isfinite(s), axis=1)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"dynamic state {i} must be 12 finite numbers [lin_vel, ang_vel, lin_acc, ang_acc], "
                         f"got {s[i].tolist()}")
    # Bulk, as trajectory_to_proto: the records of a RolloutEgoTrajectory's field 5, parsed in C.
    from cordillera.serve.stubs import egodriver_pb2

    rec = np.zeros(len(s), _DYN_ROW)
    for name, tag in _DYN_TAGS.items():
        rec[name] = tag
    for name, sl in DYNAMIC_STATE_LAYOUT.items():
        for j, c in enumerate("xyz"):
            rec[f"{name}.{c}"] = s[:, sl.start + j]
    return list(egodriver_pb2.RolloutEgoTrajectory.FromString(rec.tobytes()).dynamic_states)


def dynamic_states_from_proto(msgs) -> np.ndarray:
    """N DynamicState messages -> (N, 12) ``[lin_vel, ang_vel, lin_acc, ang_acc]``; unset parts are zero."""
    msgs = list(msgs)
    if any(not isinstance(m, common_pb2.DynamicState) for m in msgs):
        raise ValueError("dynamic_states_from_proto: every element must be a common.DynamicState")
    s = np.zeros((len(msgs), 12))
    for name, sl in DYNAMIC_STATE_LAYOUT.items():
        s[:, sl] = np.array([(v.x, v.y, v.z) for v in [getattr(m, name) for m in msgs]], dtype=np.float64).reshape(-1, 3)
    bad = ~np.all(np.isfinite(s), axis=1)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"dynamic_states[{i}]: components must be finite, got {s[i].tolist()}")
    return s


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
    if np.any(np.isinf(w)):
        i = int(np.flatnonzero(np.any(np.isinf(w), axis=1))[0])
        raise ValueError(f"Route.waypoints[{i}]: components must be finite or NaN padding, got {w[i].tolist()}")
    V = common_pb2.Vec3
    return egodriver_pb2.Route(waypoints=[V(x=a, y=b, z=c) for a, b, c in w.tolist()],
                               timestamp_us=t_us_to_proto(t_us, "Route.timestamp_us"))


def route_from_proto(msg: egodriver_pb2.Route) -> tuple[int, np.ndarray]:
    """Route -> (t_us, waypoints (N, 3) rig frame, NaN padding kept)."""
    _check_type(msg, egodriver_pb2.Route, "route_from_proto")
    w = np.array([(p.x, p.y, p.z) for p in msg.waypoints], dtype=np.float64).reshape(-1, 3)
    if np.any(np.isinf(w)):
        i = int(np.flatnonzero(np.any(np.isinf(w), axis=1))[0])
        raise ValueError(f"Route.waypoints[{i}]: components must be finite or NaN padding, got {w[i].tolist()}")
    return t_us_from_proto(msg.timestamp_us), w


# ================================================================================================
# Contracts of the simulator <-> protos (servicers and runtime client)
# ================================================================================================
# These map cordillera's runtime types (AgentState, EgoHistory, Plan, CameraSpec) onto the AlpaSim
# messages. Kept here so that servicers and client only call functions, never touch quaternions.
#
# Time base. A cordillera scenario's clock starts at 0 at the first policy call, and the seeded ego
# history reaches back before it (negative µs), which fixed64 cannot carry. On the wire a scene's
# time is therefore ``scenario time + SCENE_EPOCH_US`` — the role a recording's start timestamp
# plays in AlpaSim. Every function below that takes or returns scenario times converts with
# :func:`to_wire_t` / :func:`from_wire_t`; the generic functions above never shift.
SCENE_EPOCH_US = 100_000_000  # [µs] wire time of scenario t = 0 (leaves 100 s for seeded history)


def to_wire_t(t_us) -> int:
    """Scenario µs -> wire (fixed64) µs."""
    return t_us_to_proto(_as_int_us(t_us, "scenario time") + SCENE_EPOCH_US, "wire timestamp")


def from_wire_t(value) -> int:
    """Wire µs -> scenario µs (negative before the scenario start)."""
    return t_us_from_proto(value) - SCENE_EPOCH_US

def ego_pose(state) -> Pose:
    """Rig pose in local (``local→rig``) of an ego :class:`AgentState` (rig origin, yaw only)."""
    return Pose.from_xy_yaw(state.x_m, state.y_m, state.yaw_rad, state.z_m)


def box_pose(state, z_center_m: float) -> Pose:
    """``local→aabb`` pose of an actor :class:`AgentState` (box centre), z = box-centre height."""
    return Pose.from_xy_yaw(state.x_m, state.y_m, state.yaw_rad, z_center_m)


def ego_box_pose(state, rear_axle_to_center_m: float, height_m: float) -> Pose:
    """``local→aabb`` of the ego: rig origin + (rear_axle_to_center, 0, height/2) in the rig frame
    (spec/alpasim.md §1.2)."""
    return ego_pose(state) @ Pose([rear_axle_to_center_m, 0.0, 0.5 * height_m], [0.0, 0.0, 0.0, 1.0])


def ego_from_box_pose(pose: Pose, rear_axle_to_center_m: float, height_m: float) -> tuple[float, float, float, float]:
    """Inverse of :func:`ego_box_pose`: (x, y, yaw, z) of the rig origin."""
    rig = pose @ Pose([-rear_axle_to_center_m, 0.0, -0.5 * height_m], [0.0, 0.0, 0.0, 1.0])
    return float(rig.translation[0]), float(rig.translation[1]), rig.yaw_rad, float(rig.translation[2])


def agent_dynamic12(state) -> np.ndarray:
    """The rig-frame 12-vector of an ego state, matching ``sim.runtime.ego_history_from_states``:
    velocity ``(speed, lateral speed, 0)``, angular velocity ``(0, 0, yaw rate)``, acceleration
    ``(accel, speed · yaw rate, 0)``, angular acceleration 0."""
    s = np.zeros(12)
    s[0], s[1] = state.speed_mps, state.lat_speed_mps
    s[5] = state.yaw_rate_radps
    s[6], s[7] = state.accel_mps2, state.speed_mps * state.yaw_rate_radps
    return s


def kinematic_steering(speed_mps: float, yaw_rate_radps: float) -> float:
    """Steering angle a kinematic bicycle needs for ``yaw_rate`` at ``speed`` (0 below 0.1 m/s).
    Steering is not on the wire; both ends re-estimate it with this one function."""
    from cordillera.sim.dynamics import ALPASIM_VEHICLE

    return math.atan(yaw_rate_radps / speed_mps * ALPASIM_VEHICLE.wheelbase_m) if speed_mps > 0.1 else 0.0


def agent_state_from_pose_dynamic(pose: Pose, state12, steering_rad: float = 0.0):
    """(local→rig pose, 12-vector) -> ego :class:`AgentState` (steering is not on the wire)."""
    from cordillera.world.scenario import AgentState

    s = np.asarray(state12, dtype=np.float64)
    return AgentState(x_m=float(pose.translation[0]), y_m=float(pose.translation[1]), yaw_rad=pose.yaw_rad,
                      speed_mps=float(s[0]), accel_mps2=float(s[6]), yaw_rate_radps=float(s[5]),
                      z_m=float(pose.translation[2]), lat_speed_mps=float(s[1]), steering_rad=float(steering_rad))


def ego_history_to_proto(history, after_t_us: int | None = None) -> tuple[common_pb2.Trajectory, list]:
    """Rows of an :class:`~cordillera.sim.types.EgoHistory` with ``t > after_t_us`` (all when None)
    -> (``local→rig`` Trajectory, DynamicStates) for ``RolloutEgoTrajectory``."""
    t = np.asarray(history.t_us, dtype=np.int64)
    sel = np.ones(len(t), bool) if after_t_us is None else t > int(after_t_us)
    traj = trajectory_to_proto(t[sel] + SCENE_EPOCH_US, np.asarray(history.xyz_local)[sel],
                               np.asarray(history.quat_local)[sel])
    s12 = np.zeros((int(sel.sum()), 12))
    s12[:, 0:3] = np.asarray(history.velocity_rig_mps)[sel]
    s12[:, 5] = np.asarray(history.yaw_rate_radps)[sel]
    s12[:, 6:9] = np.asarray(history.accel_rig_mps2)[sel]
    return traj, dynamic_states_to_proto(s12)


def ego_history_from_proto(trajectory: common_pb2.Trajectory, dynamic_states) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``RolloutEgoTrajectory`` parts -> (scenario t_us (N,), xyz (N, 3), quat_xyzw (N, 4), 12-vectors (N, 12)).

    Every pose needs its DynamicState (1:1, spec/alpasim.md §2.2)."""
    t, xyz, q = trajectory_from_proto(trajectory)
    t = t - SCENE_EPOCH_US
    s = dynamic_states_from_proto(dynamic_states)
    if len(s) != len(t):
        raise ValueError(f"egomotion has {len(t)} poses but {len(s)} dynamic states (must be 1:1)")
    return t, xyz, q, s


def ego_history_from_arrays(t_us, xyz, quat_xyzw, state12):
    """Arrays (as from :func:`ego_history_from_proto`) -> :class:`~cordillera.sim.types.EgoHistory`."""
    from cordillera.sim.types import EgoHistory

    s = np.asarray(state12, dtype=np.float64).reshape(-1, 12)
    return EgoHistory(t_us=np.asarray(t_us, dtype=np.int64), xyz_local=np.asarray(xyz, dtype=np.float64).reshape(-1, 3),
                      quat_local=np.asarray(quat_xyzw, dtype=np.float64).reshape(-1, 4),
                      velocity_rig_mps=s[:, 0:3].copy(), accel_rig_mps2=s[:, 6:9].copy(),
                      yaw_rate_radps=s[:, 5].copy())


# -- plans <-> driver trajectories ----------------------------------------------------------------
def _yaw_quats(yaw) -> np.ndarray:
    yaw = np.asarray(yaw, dtype=np.float64)
    z = np.zeros_like(yaw)
    return np.stack([z, z, np.sin(0.5 * yaw), np.cos(0.5 * yaw)], axis=-1)


def rig_path_to_local(T_local_rig: Pose, xyz_rig, yaw_rig) -> tuple[np.ndarray, np.ndarray]:
    """Rig-frame points + yaws at ``T_local_rig`` -> local (xyz (N, 3), quats (N, 4))."""
    from cordillera.geometry.pose import quat_mul

    xyz = T_local_rig.apply(np.asarray(xyz_rig, dtype=np.float64).reshape(-1, 3))
    q = quat_mul(T_local_rig.quat_xyzw[None], _yaw_quats(yaw_rig)).reshape(-1, 4)
    return xyz, q


def local_path_to_rig(T_local_rig: Pose, xyz_local, quats_local) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`rig_path_to_local`: (xyz_rig (N, 3), yaw_rig (N,))."""
    from cordillera.geometry.pose import quat_mul, yaw_of_quat

    inv = T_local_rig.inverse()
    xyz = inv.apply(np.asarray(xyz_local, dtype=np.float64).reshape(-1, 3))
    q = quat_mul(inv.quat_xyzw[None], np.asarray(quats_local, dtype=np.float64).reshape(-1, 4))
    return xyz, np.asarray(yaw_of_quat(q), dtype=np.float64).reshape(-1)


def scene_trajectory_to_proto(t_us, poses) -> common_pb2.Trajectory:
    """Poses at scenario times -> Trajectory in wire time."""
    return trajectory_poses_to_proto(np.asarray(t_us, dtype=np.int64).reshape(-1) + SCENE_EPOCH_US, poses)


def scene_trajectory_from_proto(msg: common_pb2.Trajectory) -> tuple[np.ndarray, list[Pose]]:
    """Trajectory in wire time -> (scenario t_us, poses)."""
    t, poses = trajectory_poses_from_proto(msg)
    return t - SCENE_EPOCH_US, poses


def plan_to_trajectory(plan, anchor_t_us: int, T_local_rig: Pose) -> common_pb2.Trajectory:
    """A rig-frame plan -> ``DriveResponse.trajectory`` (``local→rig`` poses). Pose 0 is the anchor
    (the latest egomotion pose, at its own timestamp) as AlpaSim's driver sends it; then the plan's
    poses 1.. at their times (spec/alpasim.md §2.2)."""
    t = np.asarray(plan.t_us, dtype=np.int64)
    if len(t) < 2:
        raise ValueError(f"a plan needs >= 2 poses to become a trajectory, got {len(t)}")
    xyz, q = rig_path_to_local(T_local_rig, np.asarray(plan.xyz_rig)[1:], np.asarray(plan.yaw_rig)[1:])
    ts = np.concatenate([[int(anchor_t_us)], t[1:]]) + SCENE_EPOCH_US
    return trajectory_to_proto(ts, np.concatenate([T_local_rig.translation[None], xyz]),
                               np.concatenate([T_local_rig.quat_xyzw[None], q]))


def plan_arrays_from_trajectory(msg: common_pb2.Trajectory, T_local_rig: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``DriveResponse.trajectory`` -> (scenario t_us, xyz_rig, yaw_rig) in the rig frame ``T_local_rig``."""
    t, xyz, q = trajectory_from_proto(msg)
    t = t - SCENE_EPOCH_US
    if len(t) == 0:
        return t, np.zeros((0, 3)), np.zeros(0)
    xyz_rig, yaw_rig = local_path_to_rig(T_local_rig, xyz, q)
    return t, xyz_rig, yaw_rig


def rig_trajectory_to_proto(t_us, xyz_rig, yaw_rig) -> common_pb2.Trajectory:
    """A rig-frame path (plan or reference, scenario times) -> ``planned_trajectory_in_rig``."""
    return trajectory_to_proto(np.asarray(t_us, dtype=np.int64) + SCENE_EPOCH_US, xyz_rig, _yaw_quats(yaw_rig))


def rig_trajectory_from_proto(msg: common_pb2.Trajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``planned_trajectory_in_rig`` -> (scenario t_us, xyz_rig, yaw_rig)."""
    from cordillera.geometry.pose import yaw_of_quat

    t, xyz, q = trajectory_from_proto(msg)
    t = t - SCENE_EPOCH_US
    return t, xyz, np.asarray(yaw_of_quat(q), dtype=np.float64).reshape(-1)


# -- cameras ----------------------------------------------------------------------------------------
def camera_spec_to_proto(cam):
    """:class:`cordillera.render.rig.CameraSpec` -> sensorsim ``CameraSpec`` (pinhole or f-theta)."""
    from cordillera.serve.stubs import sensorsim_pb2

    spec = sensorsim_pb2.CameraSpec(logical_id=cam.name, resolution_h=cam.height, resolution_w=cam.width,
                                    shutter_type=sensorsim_pb2.ShutterType.GLOBAL)
    if cam.model == "pinhole":
        spec.opencv_pinhole_param.CopyFrom(sensorsim_pb2.OpenCVPinholeCameraParam(
            principal_point_x=cam.cx, principal_point_y=cam.cy, focal_length_x=cam.fx, focal_length_y=cam.fy,
            radial_coeffs=[0.0] * 6, tangential_coeffs=[0.0] * 2, thin_prism_coeffs=[0.0] * 4))
    else:
        spec.ftheta_param.CopyFrom(sensorsim_pb2.FthetaCameraParam(
            principal_point_x=cam.cx, principal_point_y=cam.cy,
            reference_poly=sensorsim_pb2.FthetaCameraParam.PolynomialType.ANGLE_TO_PIXELDIST,
            pixeldist_to_angle_poly=list(cam.bw_poly), angle_to_pixeldist_poly=list(cam.fw_poly),
            max_angle=cam.max_angle_rad))
    return spec


def camera_spec_from_proto(msg, T_rig_camera: Pose, name: str | None = None):
    """sensorsim ``CameraSpec`` -> :class:`cordillera.render.rig.CameraSpec` with the given mount.

    Pinhole distortion coefficients must be zero (our renderer draws undistorted pinholes);
    OpenCV fisheye is not supported."""
    from cordillera.render.rig import CameraSpec

    which = msg.WhichOneof("camera_param")
    lid = name or msg.logical_id
    if not lid:
        raise ValueError("CameraSpec.logical_id is empty")
    if msg.resolution_w <= 0 or msg.resolution_h <= 0:
        raise ValueError(f"camera {lid}: resolution must be positive, got {msg.resolution_w}x{msg.resolution_h}")
    if which == "opencv_pinhole_param":
        p = msg.opencv_pinhole_param
        if any(abs(c) > 1e-12 for c in (*p.radial_coeffs, *p.tangential_coeffs, *p.thin_prism_coeffs)):
            raise ValueError(f"camera {lid}: pinhole distortion is not supported (coefficients must be 0)")
        return CameraSpec(lid, "pinhole", msg.resolution_w, msg.resolution_h, p.principal_point_x, p.principal_point_y,
                          T_rig_camera, fx=p.focal_length_x, fy=p.focal_length_y)
    if which == "ftheta_param":
        p = msg.ftheta_param
        return CameraSpec(lid, "ftheta", msg.resolution_w, msg.resolution_h, p.principal_point_x, p.principal_point_y,
                          T_rig_camera, fw_poly=tuple(p.angle_to_pixeldist_poly), bw_poly=tuple(p.pixeldist_to_angle_poly),
                          max_angle_rad=p.max_angle)
    raise ValueError(f"camera {lid}: camera model {which!r} is not supported (pinhole or f-theta)")


def available_camera_to_proto(cam):
    """:class:`CameraSpec` -> ``AvailableCamera`` (intrinsics + optical-frame ``rig_to_camera``)."""
    from cordillera.serve.stubs import sensorsim_pb2

    return sensorsim_pb2.AvailableCamerasReturn.AvailableCamera(
        intrinsics=camera_spec_to_proto(cam), rig_to_camera=pose_to_proto(cam.T_rig_camera), logical_id=cam.name)


def available_camera_from_proto(msg):
    """``AvailableCamera`` -> :class:`CameraSpec`."""
    return camera_spec_from_proto(msg.intrinsics, pose_from_proto(msg.rig_to_camera), msg.logical_id or None)


# -- images -------------------------------------------------------------------------------------
def encode_image(rgb, image_format: int, quality: float = 95.0) -> bytes:
    """HxWx3 uint8 -> bytes in a sensorsim ``ImageFormat`` (PNG or JPEG; UNDEFINED = JPEG)."""
    from cordillera.render.video import encode_jpeg, encode_png
    from cordillera.serve.stubs import sensorsim_pb2

    F = sensorsim_pb2.ImageFormat
    if image_format == F.PNG:
        return encode_png(rgb)
    if image_format in (F.JPEG, F.UNDEFINED):
        q = int(round(quality)) if quality and quality > 0 else 95
        if not 1 <= q <= 100:
            raise ValueError(f"image_quality must be in [1, 100], got {quality}")
        return encode_jpeg(rgb, q)
    raise ValueError(f"image format {F.Name(image_format) if image_format in F.values() else image_format} "
                     "is not supported (PNG or JPEG)")


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> HxWx3 uint8 RGB; empty or undecodable bytes raise ValueError."""
    from cordillera.render.video import decode_image as _decode

    if not data:
        raise ValueError("image_bytes is empty")
    return _decode(data)
