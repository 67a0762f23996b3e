import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cordillera.geometry.frames import (
    R_RIG_TO_OPTICAL,
    T_rig_aabb,
    T_rig_camera_optical,
    aabb_corners,
    rotmat_from_yaw,
    to_frame,
    unwrap_yaw,
    yaw_from_rotmat,
)
from cordillera.geometry.pose import Pose
from cordillera.geometry.torch_ops import rotmat_from_yaw_t, transform_to_frame_t, yaw_from_rotmat_t


def test_unwrap_yaw_removes_2pi_jumps_along_last_axis():
    yaw = np.array([[3.0, -3.1, -2.9, 3.1], [0.0, 0.1, 0.2, 0.3]])
    out = unwrap_yaw(yaw)
    np.testing.assert_allclose(out[0], [3.0, -3.1 + 2 * np.pi, -2.9 + 2 * np.pi, 3.1], atol=1e-12)
    np.testing.assert_allclose(out[1], yaw[1])
    with pytest.raises(ValueError, match="NaN"):
        unwrap_yaw([0.0, np.nan])


def test_yaw_rotmat_round_trip_numpy_and_torch():
    yaw = np.linspace(-3.1, 3.1, 41)
    R = rotmat_from_yaw(yaw)
    assert R.shape == (41, 3, 3)
    np.testing.assert_allclose(yaw_from_rotmat(R), yaw, atol=1e-12)
    np.testing.assert_allclose(R, Rotation.from_euler("z", yaw[:, None]).as_matrix(), atol=1e-12)
    Rt = rotmat_from_yaw_t(torch.tensor(yaw).view(41, 1))
    assert Rt.shape == (41, 1, 3, 3)
    np.testing.assert_allclose(Rt[:, 0].numpy(), R, atol=1e-12)
    np.testing.assert_allclose(yaw_from_rotmat_t(Rt)[:, 0].numpy(), yaw, atol=1e-12)


def test_to_frame_hand_computed():
    # reference at (10, 5) facing north (+90°): a point 2 m further north is 2 m ahead (x_ref = 2)
    T_local_ref = Pose.from_xy_yaw(10.0, 5.0, np.pi / 2)
    xyz = np.array([[10.0, 7.0, 0.0], [9.0, 5.0, 1.0]])
    rot = rotmat_from_yaw(np.array([np.pi / 2, np.pi]))
    xyz_ref, rot_ref = to_frame(xyz, rot, T_local_ref)
    np.testing.assert_allclose(xyz_ref, [[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(yaw_from_rotmat(rot_ref), [0.0, np.pi / 2], atol=1e-12)
    # the reference pose itself maps to the origin with identity rotation
    o, r = to_frame(T_local_ref.translation[None], T_local_ref.rotation_matrix[None], T_local_ref.as_matrix())
    np.testing.assert_allclose(o, 0.0, atol=1e-12)
    np.testing.assert_allclose(r[0], np.eye(3), atol=1e-12)


def test_to_frame_batched_agrees_with_pose_inverse_and_torch():
    rng = np.random.default_rng(0)
    B, N = 4, 6
    T = np.stack([Pose(rng.normal(size=3), Rotation.random(random_state=rng).as_quat()).as_matrix() for _ in range(B)])
    xyz = rng.normal(size=(B, N, 3)) * 20
    rot = Rotation.random(B * N, random_state=rng).as_matrix().reshape(B, N, 3, 3)
    xyz_ref, rot_ref = to_frame(xyz, rot, T)
    for b in range(B):
        inv = Pose.from_matrix(T[b]).inverse()
        np.testing.assert_allclose(xyz_ref[b], inv.apply(xyz[b]), atol=1e-9)
        np.testing.assert_allclose(rot_ref[b], inv.rotation_matrix @ rot[b], atol=1e-9)
    xt, rt = transform_to_frame_t(
        torch.tensor(xyz), torch.tensor(rot), torch.tensor(T[:, :3, 3]), torch.tensor(T[:, :3, :3])
    )
    np.testing.assert_allclose(xt.numpy(), xyz_ref, atol=1e-9)
    np.testing.assert_allclose(rt.numpy(), rot_ref, atol=1e-9)


def test_to_frame_bad_input():
    with pytest.raises(ValueError, match=r"xyz_local must have shape \(\.\.\., N, 3\)"):
        to_frame(np.zeros((4, 2)), None, Pose())
    with pytest.raises(ValueError, match="NaN"):
        to_frame(np.full((4, 3), np.nan), None, Pose())
    with pytest.raises(ValueError, match="rot_local"):
        to_frame(np.zeros((4, 3)), np.zeros((3, 3, 3)), Pose())
    with pytest.raises(ValueError, match="T_local_ref"):
        to_frame(np.zeros((4, 3)), None, np.eye(3))
    with pytest.raises(ValueError, match="xyz must have shape"):
        transform_to_frame_t(torch.zeros(4, 2), None, torch.zeros(3), torch.eye(3))


def test_camera_optical_frame_convention():
    # forward camera, no rotation: optical axis = +x_rig, image right = -y_rig, image down = -z_rig
    T = T_rig_camera_optical([1.5, 0.0, 1.4])
    R = T.rotation_matrix
    np.testing.assert_allclose(R, R_RIG_TO_OPTICAL, atol=1e-12)
    np.testing.assert_allclose(T.apply([0, 0, 10.0]), [11.5, 0.0, 1.4], atol=1e-12)  # 10 m ahead
    np.testing.assert_allclose(T.apply([1.0, 0, 0]), [1.5, -1.0, 1.4], atol=1e-12)  # image right = rig right
    np.testing.assert_allclose(T.apply([0, 1.0, 0]), [1.5, 0.0, 0.4], atol=1e-12)  # image down = rig down
    # yaw +90°: looks left
    np.testing.assert_allclose(T_rig_camera_optical([0, 0, 0], yaw_rad=np.pi / 2).rotation_matrix[:, 2], [0, 1, 0], atol=1e-12)
    # pitch +10°: optical axis tips down
    axis = T_rig_camera_optical([0, 0, 0], pitch_rad=np.deg2rad(10)).rotation_matrix[:, 2]
    np.testing.assert_allclose(axis, [np.cos(np.deg2rad(10)), 0, -np.sin(np.deg2rad(10))], atol=1e-12)
    # roll +90° about the optical axis: the camera's left side (-x_opt) goes up, so image right points down
    R = T_rig_camera_optical([0, 0, 0], roll_rad=np.pi / 2).rotation_matrix
    np.testing.assert_allclose(R[:, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(R[:, 2], [1, 0, 0], atol=1e-12)
    with pytest.raises(ValueError, match="mount_xyz_m"):
        T_rig_camera_optical([0.0, 1.0])


def test_aabb_pose_and_corners():
    T = T_rig_aabb(length_m=4.8, height_m=1.6, rear_axle_to_center_m=1.4)
    np.testing.assert_allclose(T.translation, [1.4, 0.0, 0.8])
    np.testing.assert_allclose(T.rotation_matrix, np.eye(3))
    # front bumper on the ground, in rig coordinates: 1.4 + 2.4 = 3.8 m ahead of the rear axle
    np.testing.assert_allclose(T.apply([2.4, 0.0, -0.8]), [3.8, 0.0, 0.0])
    c = aabb_corners([4.0, 3.0, 2.0])
    assert c.shape == (8, 3)
    np.testing.assert_allclose(c[0], [2.0, 1.5, 1.0])
    np.testing.assert_allclose(c.sum(0), 0.0)
    with pytest.raises(ValueError, match="positive"):
        T_rig_aabb(0.0, 1.5, 1.0)
    with pytest.raises(ValueError, match="outside"):
        T_rig_aabb(4.0, 1.5, 5.0)
