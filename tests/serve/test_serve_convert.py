"""Proto <-> cordillera conversions (cordillera.serve.convert)."""

import math

import numpy as np
import pytest

from cordillera.geometry.pose import Pose
from cordillera.serve import convert as cv
from cordillera.serve.stubs import common_pb2, egodriver_pb2


def test_pose_quaternion_order_on_90deg_yaw():
    # 90° about +z: (x, y, z, w) = (0, 0, sin45°, cos45°); add a tilt so x, y, z, w are all distinct.
    pose = Pose.from_xy_yaw(1.0, -2.0, math.pi / 2, z_m=0.5)
    tilt = Pose(np.zeros(3), [math.sin(0.05), 0.0, 0.0, math.cos(0.05)])  # 0.1 rad about x
    tilt2 = Pose(np.zeros(3), [0.0, math.sin(0.1), 0.0, math.cos(0.1)])  # 0.2 rad about y
    pose = pose @ tilt @ tilt2
    x, y, z, w = pose.quat_xyzw
    assert len({round(v, 6) for v in (x, y, z, w)}) == 4

    msg = cv.pose_to_proto(pose)
    assert (msg.quat.w, msg.quat.x, msg.quat.y, msg.quat.z) == pytest.approx((w, x, y, z), abs=1e-7)
    assert (msg.vec.x, msg.vec.y, msg.vec.z) == pytest.approx((1.0, -2.0, 0.5))
    back = cv.pose_from_proto(common_pb2.Pose.FromString(msg.SerializeToString()))
    assert back.allclose(pose, atol=1e-6)


def test_pure_yaw_proto_values_by_hand():
    msg = cv.pose_to_proto(Pose.from_xy_yaw(0.0, 0.0, math.pi / 2))
    h = math.sqrt(0.5)
    assert (msg.quat.w, msg.quat.x, msg.quat.y, msg.quat.z) == pytest.approx((h, 0.0, 0.0, h), abs=1e-7)
    # And the other way: a proto built by hand as AlpaSim would (w first) yields yaw +90°.
    p = cv.pose_from_proto(common_pb2.Pose(quat=common_pb2.Quat(w=h, x=0, y=0, z=h)))
    assert p.yaw_rad == pytest.approx(math.pi / 2, abs=1e-6)
    assert p.apply([1.0, 0.0, 0.0]) == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)


def test_pose_from_proto_rejects_malformed():
    with pytest.raises(ValueError, match="non-zero"):
        cv.pose_from_proto(common_pb2.Pose(vec=common_pb2.Vec3(x=1)))  # quat unset -> all zero
    with pytest.raises(ValueError, match="finite"):
        cv.pose_from_proto(common_pb2.Pose(vec=common_pb2.Vec3(x=float("nan")), quat=common_pb2.Quat(w=1)))
    with pytest.raises(ValueError, match="finite"):
        cv.pose_from_proto(common_pb2.Pose(quat=common_pb2.Quat(w=float("nan"))))
    with pytest.raises(ValueError, match="common.Pose"):
        cv.pose_from_proto(common_pb2.Vec3())
    # unset vec = zero translation (proto3 default) is fine
    assert cv.pose_from_proto(common_pb2.Pose(quat=common_pb2.Quat(w=1))).allclose(Pose.identity())


def test_timestamps_fixed64_and_int64():
    big = 1_689_697_803_493_732  # epoch µs from spec/alpasim.md §2.2
    assert cv.t_us_to_proto(big) == big and cv.t_us_to_proto(np.int64(big)) == big
    assert cv.t_us_to_proto(2**64 - 1) == 2**64 - 1
    assert cv.t_us_to_proto(100_000.0) == 100_000
    for bad in (-1, 2**64, 1.5, float("nan"), True, "5"):
        with pytest.raises(ValueError):
            cv.t_us_to_proto(bad)
    assert cv.t_us_to_proto_i64(-5) == -5
    with pytest.raises(ValueError):
        cv.t_us_to_proto_i64(2**63)
    msg = common_pb2.PoseAtTime(timestamp_us=cv.t_us_to_proto(big))
    t, _ = cv.pose_at_time_from_proto(common_pb2.PoseAtTime(pose=cv.pose_to_proto(Pose()), timestamp_us=big))
    assert t == big and isinstance(t, int) and msg.timestamp_us == big


def test_trajectory_round_trip_arrays_and_poses():
    t0 = 1_689_697_803_493_732
    t_us = t0 + np.arange(5) * 100_000
    yaw = np.linspace(-0.3, 0.4, 5)
    xyz = np.stack([np.arange(5) * 1.5, np.arange(5) * -0.25, np.full(5, 0.125)], axis=1)
    q = np.stack([np.zeros(5), np.zeros(5), np.sin(yaw / 2), np.cos(yaw / 2)], axis=1)
    msg = cv.trajectory_to_proto(t_us, xyz, q)
    assert [p.timestamp_us for p in msg.poses] == t_us.tolist()
    assert msg.poses[2].pose.quat.w == pytest.approx(math.cos(yaw[2] / 2), abs=1e-7)
    t2, xyz2, q2 = cv.trajectory_from_proto(common_pb2.Trajectory.FromString(msg.SerializeToString()))
    assert t2.dtype == np.int64 and t2.tolist() == t_us.tolist()
    np.testing.assert_allclose(xyz2, xyz, atol=1e-6)
    np.testing.assert_allclose(q2, q, atol=1e-6)

    poses = [Pose(xyz[i], q[i]) for i in range(5)]
    t3, poses3 = cv.trajectory_poses_from_proto(cv.trajectory_poses_to_proto(t_us, poses))
    assert t3.tolist() == t_us.tolist() and all(a.allclose(b, atol=1e-6) for a, b in zip(poses3, poses))


def test_trajectory_empty_and_invalid():
    t, xyz, q = cv.trajectory_from_proto(cv.trajectory_to_proto([], [], []))
    assert t.shape == (0,) and xyz.shape == (0, 3) and q.shape == (0, 4)
    ident = [0, 0, 0, 1]
    with pytest.raises(ValueError, match="strictly increasing"):
        cv.trajectory_to_proto([200, 100], [[0, 0, 0]] * 2, [ident] * 2)
    with pytest.raises(ValueError, match="disagree"):
        cv.trajectory_to_proto([100, 200], [[0, 0, 0]], [ident] * 2)
    with pytest.raises(ValueError):
        cv.trajectory_to_proto([100], [[0, float("nan"), 0]], [ident])
    bad = common_pb2.Trajectory()
    for ts in (300, 300):
        bad.poses.add(timestamp_us=ts, pose=common_pb2.Pose(quat=common_pb2.Quat(w=1)))
    with pytest.raises(ValueError, match="strictly increasing"):
        cv.trajectory_from_proto(bad)


def test_dynamic_state_maps_by_field_name_not_order():
    s = np.arange(1, 13, dtype=float)  # [lin_vel 1..3, ang_vel 4..6, lin_acc 7..9, ang_acc 10..12]
    msg = cv.dynamic_state_to_proto(s)
    # proto field 1 is angular_velocity: it must carry our ang_vel (4, 5, 6), not lin_vel.
    assert (msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z) == (4, 5, 6)
    assert (msg.linear_velocity.x, msg.linear_velocity.z) == (1, 3)
    assert msg.linear_acceleration.y == 8 and msg.angular_acceleration.z == 12
    wire = msg.SerializeToString()
    assert wire[0] == (1 << 3) | 2  # first field on the wire is #1 = angular_velocity
    np.testing.assert_array_equal(cv.dynamic_state_from_proto(common_pb2.DynamicState.FromString(wire)), s)
    np.testing.assert_array_equal(cv.dynamic_state_from_proto(common_pb2.DynamicState()), np.zeros(12))

    many = np.arange(24, dtype=float).reshape(2, 12)
    np.testing.assert_array_equal(cv.dynamic_states_from_proto(cv.dynamic_states_to_proto(many)), many)
    with pytest.raises(ValueError, match="12"):
        cv.dynamic_state_to_proto(np.zeros(9))
    with pytest.raises(ValueError):
        cv.dynamic_state_to_proto(np.full(12, np.nan))


def test_state_at_time_and_aabb():
    pose = Pose.from_xy_yaw(3.0, 4.0, 0.25)
    s = np.linspace(-1, 1, 12)
    t, p, s2 = cv.state_at_time_from_proto(cv.state_at_time_to_proto(1_000_000, pose, s))
    assert t == 1_000_000 and p.allclose(pose, atol=1e-6)
    np.testing.assert_allclose(s2, s, atol=1e-6)

    # defaults of spec/alpasim.md §1.2: L=5.393, W=2.109, H=1.503
    size = np.array([5.393, 2.109, 1.503])
    np.testing.assert_allclose(cv.aabb_from_proto(cv.aabb_to_proto(size)), size, rtol=1e-6)
    with pytest.raises(ValueError):
        cv.aabb_to_proto([1.0, -2.0, 1.0])
    with pytest.raises(ValueError):
        cv.aabb_from_proto(common_pb2.AABB(size_x=float("inf")))


def test_route_keeps_nan_padding():
    w = np.full((20, 3), np.nan)
    w[:3] = [[0.0, 0.0, 0.0], [4.21, 0.1, 0.0], [8.42, 0.3, 0.0]]
    msg = cv.route_to_proto(5_000_000, w)
    assert len(msg.waypoints) == 20
    t, w2 = cv.route_from_proto(egodriver_pb2.Route.FromString(msg.SerializeToString()))
    assert t == 5_000_000
    np.testing.assert_allclose(w2[:3], w[:3], atol=1e-6)
    assert np.isnan(w2[3:]).all()
    with pytest.raises(ValueError):
        cv.route_to_proto(0, [[np.inf, 0, 0]])
