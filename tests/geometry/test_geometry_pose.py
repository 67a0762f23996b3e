import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cordillera.geometry.pose import (
    Pose,
    quat_from_matrix,
    quat_from_yaw,
    quat_mul,
    quat_rotate,
    quat_to_matrix,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
    yaw_of_quat,
)


def _random_pose(rng) -> Pose:
    return Pose(rng.normal(size=3) * 10, Rotation.random(random_state=rng).as_quat())


def _same_rotation(q1, q2, atol=1e-9):
    q1, q2 = np.asarray(q1), np.asarray(q2)
    return min(np.abs(q1 - q2).max(), np.abs(q1 + q2).max()) <= atol


def _rotations_incl_180():
    rng = np.random.default_rng(0)
    quats = list(Rotation.random(200, random_state=rng).as_quat())
    # 180° about the axes and about random axes (w = 0): the hard case for matrix -> quaternion.
    for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3]):
        a = np.asarray(axis, float) / np.linalg.norm(axis)
        quats.append(np.concatenate([a, [0.0]]))
    for _ in range(20):
        a = rng.normal(size=3)
        quats.append(np.concatenate([a / np.linalg.norm(a), [0.0]]))
    quats.append([0.0, 0.0, 0.0, 1.0])
    return np.array(quats)


def test_compose_with_inverse_is_identity_and_apply_round_trips():
    rng = np.random.default_rng(1)
    for _ in range(50):
        T_a_b = _random_pose(rng)
        assert (T_a_b @ T_a_b.inverse()).allclose(Pose.identity(), atol=1e-9)
        assert (T_a_b.inverse() @ T_a_b).allclose(Pose.identity(), atol=1e-9)
        p_b = rng.normal(size=(7, 3))
        np.testing.assert_allclose(T_a_b.inverse().apply(T_a_b.apply(p_b)), p_b, atol=1e-9)


def test_composition_matches_homogeneous_matrices_and_is_associative():
    rng = np.random.default_rng(2)
    for _ in range(50):
        T_a_b, T_b_c, T_c_d = (_random_pose(rng) for _ in range(3))
        np.testing.assert_allclose((T_a_b @ T_b_c).as_matrix(), T_a_b.as_matrix() @ T_b_c.as_matrix(), atol=1e-9)
        assert ((T_a_b @ T_b_c) @ T_c_d).allclose(T_a_b @ (T_b_c @ T_c_d), atol=1e-9)
        p_c = rng.normal(size=3)
        np.testing.assert_allclose((T_a_b @ T_b_c).apply(p_c), T_a_b.apply(T_b_c.apply(p_c)), atol=1e-9)


def test_matrix_quaternion_round_trip_matches_scipy_including_180_degrees():
    quats = _rotations_incl_180()
    R = quat_to_matrix(quats)
    np.testing.assert_allclose(R, Rotation.from_quat(quats).as_matrix(), atol=1e-12)
    q_back = quat_from_matrix(R)
    assert np.all(q_back[:, 3] >= 0)
    for q, qb in zip(quats, q_back):
        assert _same_rotation(q, qb, atol=1e-9), (q, qb)
    np.testing.assert_allclose(quat_to_matrix(q_back), R, atol=1e-9)
    # single matrix, not batched
    assert _same_rotation(quat_from_matrix(R[-2]), quats[-2])


def test_quat_mul_and_rotate_match_scipy():
    rng = np.random.default_rng(3)
    a = Rotation.random(20, random_state=rng)
    b = Rotation.random(20, random_state=rng)
    ab = quat_mul(a.as_quat(), b.as_quat())
    for q, ref in zip(ab, (a * b).as_quat()):
        assert _same_rotation(q, ref, atol=1e-12)
    v = rng.normal(size=(20, 3))
    np.testing.assert_allclose(quat_rotate(a.as_quat(), v), a.apply(v), atol=1e-12)


@pytest.mark.parametrize("yaw", [0.0, 0.3, -1.2, np.pi / 2, 3.0, -3.1, np.pi])
def test_yaw_extraction(yaw):
    q = quat_from_yaw(yaw)
    expected = np.arctan2(np.sin(yaw), np.cos(yaw))
    assert np.isclose(yaw_of_quat(q), expected) or np.isclose(abs(expected), np.pi)
    assert np.isclose(np.cos(Pose.from_xy_yaw(1.0, 2.0, yaw).yaw_rad - yaw), 1.0)
    # heading of the x axis survives pitch/roll applied in the body frame
    body = Rotation.from_euler("ZYX", [yaw, 0.2, -0.3]).as_quat()
    assert np.isclose(np.cos(yaw_of_quat(body) - yaw), 1.0)


def test_wxyz_conversion_round_trip_and_order():
    q = np.array([0.1, 0.2, 0.3, 0.9])
    np.testing.assert_array_equal(xyzw_to_wxyz(q), [0.9, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(wxyz_to_xyzw(xyzw_to_wxyz(q)), q)
    p = Pose.from_wxyz([1, 2, 3], [0.0, 0.0, 0.0, 1.0])  # w x y z: 180° about z
    np.testing.assert_allclose(p.apply([1.0, 0.0, 0.0]), [0.0, 2.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(p.quat_wxyz, [0.0, 0.0, 0.0, 1.0])


def test_pose_from_matrix_and_hand_computed_apply():
    T = Pose.from_xy_yaw(1.0, 2.0, np.pi / 2)
    # rotate (1, 0, 0) by 90° -> (0, 1, 0), then translate
    np.testing.assert_allclose(T.apply([1.0, 0.0, 0.0]), [1.0, 3.0, 0.0], atol=1e-12)
    assert Pose.from_matrix(T.as_matrix()).allclose(T, atol=1e-12)


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="translation"):
        Pose([0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="quaternion"):
        Pose([0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="4 components"):
        quat_to_matrix([0, 0, 1])
    with pytest.raises(ValueError, match="4x4"):
        Pose.from_matrix(np.eye(3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        quat_from_matrix(np.eye(4))
