"""Open-loop metrics on hand-made examples; numpy and torch paths agree."""

import math

import numpy as np
import pytest
import torch

from cordillera.metrics.openloop import corner_distance, min_ade


def _straight_gt(T=64):
    gt = np.zeros((1, T, 3))
    gt[0, :, 0] = np.arange(1, T + 1)  # 1 m per step along x
    return gt


def test_min_ade_hand_computed():
    gt = _straight_gt()
    pred = np.repeat(gt[:, None], 2, axis=1).copy()  # (1, 2, 64, 3)
    # sample 0: constant 2 m lateral offset; sample 1: 0 error for 10 steps, then 1 m, z error ignored
    pred[0, 0, :, 1] += 2.0
    pred[0, 1, 10:, 1] += 1.0
    pred[0, 1, :, 2] += 100.0
    m = min_ade(pred, gt)
    # k* = 1 (mean 54/64 < 2)
    assert m["min_ade"] == pytest.approx(54 / 64)
    assert m["min_ade/by_t=0.5"] == pytest.approx(0.0)  # first 5 steps of the same k*
    assert m["min_ade/by_t=1.0"] == pytest.approx(0.0)
    assert m["min_ade/by_t=3.0"] == pytest.approx(20 / 30)
    assert m["min_ade/by_t=5.0"] == pytest.approx(40 / 50)
    assert m["ade"] == pytest.approx(2.0) and m["ade/by_t=3.0"] == pytest.approx(2.0)
    assert m["fde"] == pytest.approx(2.0)
    assert m["l2@1s"] == pytest.approx(2.0)


def test_same_k_star_for_all_prefixes_and_sample0_metrics():
    gt = _straight_gt()
    pred = np.repeat(gt[:, None], 2, axis=1).copy()
    # sample 0 perfect for the first 3 s then far off; sample 1 has a constant 0.5 m error -> k* = 1,
    # so by_t=3.0 reports 0.5 although sample 0 is perfect over that prefix
    pred[0, 0, 30:, 0] += 10.0
    pred[0, 1, :, 0] += 0.5
    m = min_ade(pred, gt)
    assert m["min_ade"] == pytest.approx(0.5)
    assert m["min_ade/by_t=3.0"] == pytest.approx(0.5)
    assert m["ade/by_t=3.0"] == pytest.approx(0.0)
    assert m["ade"] == pytest.approx(10 * 34 / 64)
    # l2 at t0 + 1, 2, 3 s are waypoints 9, 19, 29 (sample 0), all before the jump at index 30
    assert (m["l2@1s"], m["l2@2s"], m["l2@3s"]) == (0.0, 0.0, 0.0)
    assert m["fde"] == pytest.approx(10.0)


def test_l2_at_uses_waypoint_at_that_time():
    gt = np.zeros((1, 64, 2))
    pred = np.zeros((1, 1, 64, 2))
    pred[0, 0, :, 0] = np.arange(64)  # error at waypoint i is i
    m = min_ade(pred, gt)
    assert (m["l2@1s"], m["l2@2s"], m["l2@3s"]) == (9.0, 19.0, 29.0)
    assert m["fde"] == 63.0


def test_reduce_false_and_batch_mean():
    gt = np.zeros((2, 64, 2))
    pred = np.zeros((2, 3, 64, 2))
    pred[0, :, :, 0] = [[1.0], [2.0], [3.0]]
    pred[1, :, :, 1] = [[4.0], [0.5], [6.0]]
    per = min_ade(pred, gt, reduce=False)
    np.testing.assert_allclose(per["min_ade"], [1.0, 0.5])
    np.testing.assert_allclose(per["ade"], [1.0, 4.0])
    assert min_ade(pred, gt)["min_ade"] == pytest.approx(0.75)


def test_numpy_and_torch_agree_on_random_batches():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(5, 6, 64, 3)) * 3
    gt = rng.normal(size=(5, 64, 3)) * 3
    m_np = min_ade(pred, gt)
    m_t = min_ade(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32))
    assert m_np.keys() == m_t.keys()
    for k in m_np:
        assert m_t[k] == pytest.approx(m_np[k], rel=1e-5), k
    yaw_p = rng.uniform(-3, 3, size=(5, 6, 64))
    yaw_g = rng.uniform(-3, 3, size=(5, 64))
    c_np = corner_distance(pred, yaw_p, gt, yaw_g, reduce=False)
    c_t = corner_distance(torch.tensor(pred), torch.tensor(yaw_p), torch.tensor(gt), torch.tensor(yaw_g), reduce=False)
    np.testing.assert_allclose(c_t.numpy(), c_np, rtol=1e-10)
    c3 = corner_distance(torch.tensor(pred), torch.tensor(yaw_p), torch.tensor(gt), torch.tensor(yaw_g), only_xy=False)
    assert c3 == pytest.approx(corner_distance(pred, yaw_p, gt, yaw_g, only_xy=False))


def test_corner_distance_hand_computed():
    T = 4
    gt = np.zeros((1, T, 3))
    gt_rot = np.broadcast_to(np.eye(3), (1, T, 3, 3))
    # pure 1 m translation: every corner moves 1 m
    pred = gt[:, None].copy()
    pred[..., 0] += 1.0
    assert corner_distance(pred, np.zeros((1, 1, T)), gt, gt_rot) == pytest.approx(1.0)
    # pure 90° yaw about the box centre, box 4 x 3: corner (2, 1.5) -> (−1.5, 2) moves by
    # |(−3.5, 0.5)| = √12.5, and by symmetry so do all 8 corners
    assert corner_distance(gt[:, None], np.full((1, 1, T), math.pi / 2), gt, gt_rot) == pytest.approx(math.sqrt(12.5))
    # min over K is element-wise per step: sample 0 right on steps 0-1, sample 1 right on steps 2-3
    pred2 = np.repeat(gt[:, None], 2, axis=1).copy()
    pred2[0, 0, 2:, 0] += 5.0
    pred2[0, 1, :2, 0] += 5.0
    assert corner_distance(pred2, np.zeros((1, 2, T)), gt, gt_rot) == pytest.approx(0.0)
    # whereas min_ade must pick one sample for all steps
    assert min_ade(pred2, gt, horizons_s=())["min_ade"] == pytest.approx(2.5)
    # rotation matrices and yaw give the same result; 2-D inputs are accepted
    yaw = np.full((1, 1, T), 0.3)
    R = np.zeros((1, 1, T, 3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = np.cos(0.3), -np.sin(0.3), np.sin(0.3), np.cos(0.3), 1
    assert corner_distance(pred[..., :2], yaw, gt[..., :2], gt_rot) == pytest.approx(corner_distance(pred, R, gt, gt_rot))


def test_bad_input_raises_value_error():
    gt = np.zeros((2, 64, 3))
    with pytest.raises(ValueError, match=r"pred_xyz must have shape \(B, K, T, D>=2\)"):
        min_ade(np.zeros((2, 64, 3)), gt)
    with pytest.raises(ValueError, match="disagree"):
        min_ade(np.zeros((2, 1, 50, 3)), gt)
    bad = np.zeros((2, 1, 64, 3))
    bad[1, 0, 5, 0] = np.nan
    with pytest.raises(ValueError, match="pred_xyz contains NaN"):
        min_ade(bad, gt)
    with pytest.raises(ValueError, match="pred_xyz contains NaN"):
        min_ade(torch.tensor(bad), torch.tensor(gt))
    with pytest.raises(ValueError, match="horizon 3.0 s is 30 steps at dt=0.1 s; predictions have T=20"):
        min_ade(np.zeros((2, 1, 20, 3)), np.zeros((2, 20, 3)))
    with pytest.raises(ValueError, match="gt_rot must be yaw"):
        corner_distance(np.zeros((2, 1, 64, 3)), np.zeros((2, 1, 64)), gt, np.zeros((2, 64, 3)))
    # short predictions: fixed-horizon keys are omitted, not invented
    m = min_ade(np.zeros((1, 1, 20, 2)), np.zeros((1, 20, 2)), horizons_s=(0.5, 1.0))
    assert "l2@3s" not in m and "ade/by_t=3.0" not in m and m["l2@2s"] == 0.0
