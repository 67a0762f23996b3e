"""Unicycle action space: v0 estimate, closed-form integration, GT -> controls -> trajectory round trip."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cordillera.action import (
    ActionSpaceConfig,
    action_to_traj,
    compute_action_stats,
    denormalize_actions,
    estimate_v0,
    is_within_bounds,
    normalize_actions,
    solve_regularized,
)
from cordillera.action.unicycle import (
    difference_matrix,
    solve_banded_regularized,
    traj_to_action,
)
from cordillera.action.reference_np import action_to_traj_np, traj_to_action_np

CFG = ActionSpaceConfig()
DT = CFG.dt_s


def rollout(speed_mps: np.ndarray, kappa_1pm: np.ndarray, yaw0: float = 0.3, xy0=(5.0, -2.0)):
    """Drive the unicycle through 80 samples (16 history + 64 future) with the exact discrete model.

    ``speed_mps`` (80,) are the speeds at the samples (so a_k = Δv/dt), ``kappa_1pm`` (79,) the
    curvatures between them. Returns history and future in the frame of sample 15 (t0) as the
    loader does, plus the true raw controls of the 64 future steps.
    """
    a = np.diff(speed_mps) / DT
    x, y, th = xy0[0], xy0[1], yaw0
    pts = [(x, y, th)]
    for k in range(79):
        v, vn = speed_mps[k], speed_mps[k + 1]
        thn = th + kappa_1pm[k] * v * DT + kappa_1pm[k] * a[k] * DT * DT / 2
        x += DT / 2 * (v * math.cos(th) + vn * math.cos(thn))
        y += DT / 2 * (v * math.sin(th) + vn * math.sin(thn))
        th = thn
        pts.append((x, y, th))
    pts = np.array(pts)
    c, s = math.cos(pts[15, 2]), math.sin(pts[15, 2])
    dx, dy = pts[:, 0] - pts[15, 0], pts[:, 1] - pts[15, 1]
    xyz = np.stack([c * dx + s * dy, -s * dx + c * dy, np.zeros(80)], axis=-1)
    yaw = pts[:, 2] - pts[15, 2]
    rot = np.zeros((80, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = (
        np.cos(yaw), -np.sin(yaw), np.sin(yaw), np.cos(yaw), 1.0)
    controls = np.stack([a[15:], kappa_1pm[15:]], axis=-1)
    return xyz[:16], rot[:16], xyz[16:], rot[16:], controls


def straight_history(speed_mps: float):
    xyz = np.zeros((16, 3))
    xyz[:, 0] = (np.arange(16) - 15) * speed_mps * DT
    return xyz, np.broadcast_to(np.eye(3), (16, 3, 3)).copy()


def smooth_profile(t_s, v_mid, amp, omega, phase):
    return v_mid + amp * np.sin(omega * t_s + phase)


# -- config ------------------------------------------------------------------------------------


def test_config_round_trip_and_validation():
    cfg = ActionSpaceConfig(accel_mean_mps2=0.1, accel_std_mps2=2.0)
    d = cfg.to_dict()
    assert d["accel_bounds_mps2"] == [-9.8, 9.8]
    assert ActionSpaceConfig.from_dict(d) == cfg
    assert CFG.horizon_s == pytest.approx(6.4)
    # the smoothing coefficients of all four fits are 1.0 at dt = 0.1 (spec §3.1)
    assert CFG.theta_lambda / DT**6 == pytest.approx(1.0)
    assert CFG.a_lambda / DT**4 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="accel_std_mps2"):
        ActionSpaceConfig(accel_std_mps2=0.0)
    with pytest.raises(ValueError, match="unknown"):
        ActionSpaceConfig.from_dict({"foo": 1})
    with pytest.raises(ValueError, match="curvature_bounds_1pm"):
        ActionSpaceConfig(curvature_bounds_1pm=(0.2, -0.2))


# -- v0 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("speed", [0.0, 3.0, 10.0, 15.0])
def test_v0_of_straight_constant_speed_history(speed):
    xyz, rot = straight_history(speed)
    assert abs(float(estimate_v0(xyz, rot)) - speed) < 1e-3


def test_v0_ridge_shrinkage_is_proportional_to_speed():
    # The ridge 1e-4·‖v‖² (spec §3.3) shrinks the fit by ≈ 5.9e-5 relative (float64 reference:
    # −0.59 mm/s at 10 m/s), so above ~17 m/s the bias exceeds 1 mm/s; it stays below 2 mm/s at 30.
    for speed in (20.0, 30.0):
        xyz, rot = straight_history(speed)
        err = float(estimate_v0(xyz, rot)) - speed
        assert -2e-3 < err < 0 and err / speed == pytest.approx(-5.9e-5, rel=0.1)


def test_v0_batched_rotated_history_matches_numpy_reference():
    rng = np.random.default_rng(0)
    hs, rs, true_v0 = [], [], []
    for _ in range(8):
        v = smooth_profile(np.arange(80) * DT, rng.uniform(5, 20), 2.0, 0.5, rng.uniform(0, 6))
        h, r, *_ = rollout(v, np.full(79, rng.uniform(-0.05, 0.05)), yaw0=rng.uniform(-3, 3))
        hs.append(h), rs.append(r), true_v0.append(v[15])
    v0 = estimate_v0(torch.tensor(np.array(hs)).view(2, 4, 16, 3), torch.tensor(np.array(rs)).view(2, 4, 16, 3, 3))
    assert v0.shape == (2, 4) and v0.dtype == torch.float32
    np.testing.assert_allclose(v0.reshape(-1).numpy(), true_v0, atol=5e-3)


# -- closed forms ------------------------------------------------------------------------------


def test_constant_acceleration_integrates_to_closed_form():
    xyz_h, rot_h = straight_history(8.0)
    v0 = float(estimate_v0(xyz_h, rot_h))
    accel = 1.5
    actions = torch.zeros(64, 2)
    actions[:, 0] = accel
    xyz, rot = action_to_traj(actions, xyz_h, rot_h)
    t = np.arange(1, 65) * DT
    # trapezoid integration of a linear speed is exact: x(t) = v0 t + a t²/2
    np.testing.assert_allclose(xyz[:, 0].numpy(), v0 * t + 0.5 * accel * t**2, atol=1e-3)
    np.testing.assert_allclose(xyz[:, 1:].numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(rot.numpy(), np.broadcast_to(np.eye(3), (64, 3, 3)), atol=1e-6)


def test_constant_curvature_integrates_to_closed_form_arc():
    """Derivation. With a = 0 the speed stays v0 and θ_k = k·φ, φ = κ·v0·dt. The trapezoid rule gives
    x_n + i·y_n = (v0·dt/2)·Σ_{k<n} (e^{ikφ} + e^{i(k+1)φ}) = (v0·dt/2)·(1 + e^{iφ})(e^{inφ} − 1)/(e^{iφ} − 1)
    and (1 + e^{iφ})/(e^{iφ} − 1) = −i·cot(φ/2), so with R' = (v0·dt/2)·cot(φ/2):
    x_n = R'·sin(nφ), y_n = R'·(1 − cos(nφ)): a circle of radius R' = (1/κ)(1 − φ²/12 + …).
    """
    xyz_h, rot_h = straight_history(10.0)
    v0 = float(estimate_v0(xyz_h, rot_h))
    kappa = 0.05
    actions = torch.zeros(64, 2)
    actions[:, 1] = kappa
    xyz, rot = action_to_traj(actions, xyz_h, rot_h)
    n = np.arange(1, 65)
    phi = kappa * v0 * DT
    r_eff = v0 * DT / 2 / math.tan(phi / 2)
    np.testing.assert_allclose(xyz[:, 0].numpy(), r_eff * np.sin(n * phi), atol=1e-3)
    np.testing.assert_allclose(xyz[:, 1].numpy(), r_eff * (1 - np.cos(n * phi)), atol=1e-3)
    yaw = torch.atan2(rot[:, 1, 0], rot[:, 0, 0]).numpy()
    np.testing.assert_allclose(np.unwrap(yaw), n * phi, atol=1e-5)
    # and it stays on the continuous circle of radius 1/κ to within the trapezoid error (~φ²/12 · R)
    r = 1 / kappa
    np.testing.assert_allclose(xyz[:, 0].numpy(), r * np.sin(n * phi), atol=0.02)
    np.testing.assert_allclose(xyz[:, 1].numpy(), r * (1 - np.cos(n * phi)), atol=0.02)


def test_z_is_last_history_z_and_batch_broadcasts_over_samples():
    xyz_h, rot_h = straight_history(5.0)
    xyz_h[:, 2] = 0.7
    hist_xyz = torch.tensor(xyz_h).expand(3, 1, 16, 3)  # (B, 1, H, 3)
    hist_rot = torch.tensor(rot_h).expand(3, 1, 16, 3, 3)
    actions = torch.randn(3, 6, 64, 2) * 0.1  # (B, K, T, 2)
    xyz, rot = action_to_traj(actions, hist_xyz, hist_rot)
    assert xyz.shape == (3, 6, 64, 3) and rot.shape == (3, 6, 64, 3, 3)
    assert xyz.dtype == torch.float32
    np.testing.assert_allclose(xyz[..., 2].numpy(), 0.7, atol=1e-6)


def test_loop_reference_and_cumsum_integration_agree():
    rng = np.random.default_rng(1)
    xyz_h, rot_h = straight_history(12.0)
    actions = rng.normal(size=(64, 2)) * [1.0, 0.03]
    x_t, r_t = action_to_traj(torch.tensor(actions), xyz_h, rot_h)
    x_n, r_n = action_to_traj_np(actions, xyz_h, rot_h)
    np.testing.assert_allclose(x_t.numpy(), x_n, atol=2e-3)
    np.testing.assert_allclose(r_t.numpy(), r_n, atol=1e-4)


# -- GT -> controls -> trajectory -----------------------------------------------------------------


def test_known_controls_are_recovered_and_torch_matches_numpy_reference():
    t = np.arange(80) * DT
    v = smooth_profile(t, 12.0, 3.0, 0.6, 0.4)
    kap = 0.03 * np.cos(0.4 * t[:-1])
    h, hr, f, fr, controls = rollout(v, kap)
    act = traj_to_action(h, hr, f, fr)
    assert act.shape == (64, 2) and act.dtype == torch.float32
    # smoothing and the v0 fit bias the ends a little; the interior is recovered closely
    np.testing.assert_allclose(act[3:-3, 0].numpy(), controls[3:-3, 0], atol=0.05)
    np.testing.assert_allclose(act[3:-3, 1].numpy(), controls[3:-3, 1], atol=1e-3)
    np.testing.assert_allclose(act.numpy(), traj_to_action_np(h, hr, f, fr), atol=2e-3, rtol=0)


def test_autocast_does_not_change_the_float32_math():
    t = np.arange(80) * DT
    h, hr, f, fr, _ = rollout(smooth_profile(t, 15.0, 2.0, 0.5, 0.0), np.full(79, 0.02))
    ref = traj_to_action(h, hr, f, fr)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        act = traj_to_action(h, hr, f, fr)
        xyz, _ = action_to_traj(act, h, hr)
    assert act.dtype == torch.float32 and xyz.dtype == torch.float32
    torch.testing.assert_close(act, ref)


def test_stationary_vehicle_gives_zero_controls():
    h = np.zeros((16, 3))
    r = np.broadcast_to(np.eye(3), (16, 3, 3))
    f = np.zeros((64, 3))
    fr = np.broadcast_to(np.eye(3), (64, 3, 3))
    act = traj_to_action(h, r, f, fr)
    np.testing.assert_allclose(act.numpy(), 0.0, atol=1e-6)
    xyz, _ = action_to_traj(act, h, r)
    np.testing.assert_allclose(xyz.numpy(), 0.0, atol=1e-6)


# Domain note: while the car creeps (< 0.5 m/s) around t0 the heading barely changes, so curvature
# is unobservable and the κ fit shrinks it towards 0 (smoothing + ridge, as in the original); if the
# car then speeds up on a curve the small heading error grows into > 5 cm (worst seen: 6 cm in 2000
# random draws, identical in the float64 reference). Those draws are excluded below; starting from
# rest with a constant turn is covered separately (test_start_from_rest_on_a_curve).
MIN_SPEED_NEAR_T0_MPS = 0.5


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    v_mid=st.floats(0.0, 30.0),
    v_amp_frac=st.floats(0.0, 1.0),
    v_omega=st.floats(0.1, 1.0),
    v_phase=st.floats(0.0, 6.28),
    k_mid=st.floats(-0.05, 0.05),
    k_amp=st.floats(0.0, 0.05),
    k_omega=st.floats(0.1, 1.0),
    k_phase=st.floats(0.0, 6.28),
    yaw0=st.floats(-3.14, 3.14),
)
def test_round_trip_within_5cm_on_smooth_trajectories(v_mid, v_amp_frac, v_omega, v_phase, k_mid, k_amp, k_omega, k_phase, yaw0):
    # speed stays in [0, 30] m/s and |a| = amp·ω ≤ 3 m/s²; |κ| ≤ 0.1 1/m
    amp = v_amp_frac * min(v_mid, 30.0 - v_mid, 3.0 / v_omega)
    t = np.arange(80) * DT
    v = smooth_profile(t, v_mid, amp, v_omega, v_phase)
    assume(v[15:36].min() >= MIN_SPEED_NEAR_T0_MPS)
    kap = smooth_profile(t[:-1], k_mid, k_amp, k_omega, k_phase)
    h, hr, f, fr, _ = rollout(v, kap, yaw0=yaw0)
    act = traj_to_action(h, hr, f, fr)
    xyz, rot = action_to_traj(act, h, hr)
    err = np.linalg.norm(xyz.numpy() - f, axis=-1).max()
    assert err < 0.05, f"max position error {err:.4f} m"


@pytest.mark.parametrize("accel", [0.5, 1.5, 3.0])
def test_start_from_rest_on_a_curve(accel):
    t = np.arange(80) * DT
    v = np.where(t < 1.5 + 1e-9, 0.0, (t - 1.5) * accel)  # at rest through t0, then constant accel
    h, hr, f, fr, _ = rollout(v, np.full(79, 0.05))
    act = traj_to_action(h, hr, f, fr)
    np.testing.assert_allclose(act[:, 0].numpy(), accel, atol=1e-2)  # end effects of the smoothing
    xyz, _ = action_to_traj(act, h, hr)
    assert np.linalg.norm(xyz.numpy() - f, axis=-1).max() < 0.05


def test_round_trip_batched_random_trajectories():
    rng = np.random.default_rng(7)
    B = 64
    t = np.arange(80) * DT
    batch = []
    while len(batch) < B:
        v_mid = rng.uniform(0, 30)
        omega = rng.uniform(0.1, 1.0)
        amp = rng.uniform(0, 1) * min(v_mid, 30 - v_mid, 3 / omega)
        v = smooth_profile(t, v_mid, amp, omega, rng.uniform(0, 6.28))
        if v[15:36].min() < MIN_SPEED_NEAR_T0_MPS:
            continue
        kap = smooth_profile(t[:-1], rng.uniform(-0.05, 0.05), rng.uniform(0, 0.05), rng.uniform(0.1, 1), rng.uniform(0, 6.28))
        batch.append(rollout(v, kap, yaw0=rng.uniform(-3, 3)))
    h, hr, f, fr = (torch.tensor(np.stack([b[i] for b in batch])) for i in range(4))
    act = traj_to_action(h.view(8, 8, 16, 3), hr.view(8, 8, 16, 3, 3), f.view(8, 8, 64, 3), fr.view(8, 8, 64, 3, 3))
    assert act.shape == (8, 8, 64, 2)
    xyz, _ = action_to_traj(act, h.view(8, 8, 16, 3), hr.view(8, 8, 16, 3, 3))
    err = (xyz.view(B, 64, 3) - f.float()).norm(dim=-1).max()
    assert err < 0.05
    # the batch result equals the per-trajectory result
    single = traj_to_action(h[5], hr[5], f[5], fr[5])
    torch.testing.assert_close(act.view(B, 64, 2)[5], single, atol=1e-4, rtol=0)  # float32 rounding


# -- normalisation and helpers -----------------------------------------------------------------


def test_normalisation_round_trip_and_stats():
    rng = np.random.default_rng(2)
    raw = np.stack([rng.normal(0.3, 1.2, size=(500, 64)), rng.normal(-0.01, 0.02, size=(500, 64))], axis=-1)
    stats = compute_action_stats(raw)
    assert stats["accel_mean_mps2"] == pytest.approx(0.3, abs=0.02)
    assert stats["curvature_std_1pm"] == pytest.approx(0.02, rel=0.02)
    cfg = dataclasses.replace(CFG, **stats)
    norm = normalize_actions(torch.tensor(raw), cfg)
    assert abs(float(norm[..., 0].mean())) < 1e-6 and float(norm[..., 1].std()) == pytest.approx(1.0, rel=1e-3)
    torch.testing.assert_close(denormalize_actions(norm, cfg), torch.tensor(raw))
    np.testing.assert_allclose(normalize_actions(raw, cfg), norm.numpy())
    # traj_to_action returns normalised actions, raw ones with normalize=False
    h, r = straight_history(10.0)
    f, fr = action_to_traj(torch.tensor([[1.0, 0.02]]).expand(64, 2), h, r, normalized=False)
    a_raw = traj_to_action(h, r, f, fr, normalize=False)
    torch.testing.assert_close(traj_to_action(h, r, f, fr, cfg), normalize_actions(a_raw, cfg))
    assert float(a_raw[32, 0]) == pytest.approx(1.0, abs=0.01)
    assert float(a_raw[32, 1]) == pytest.approx(0.02, abs=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        compute_action_stats(np.zeros((1, 2)))


def test_is_within_bounds():
    a = torch.zeros(2, 64, 2)
    a[1, 10, 1] = 0.25  # curvature above 0.2 1/m
    assert is_within_bounds(a, normalized=False).tolist() == [True, False]


def test_solve_regularized_retries_with_larger_ridge():
    # an indefinite "normal matrix" fails Cholesky until the ridge exceeds 1; the retry loop finds it
    lhs = torch.tensor([[[1.0, 0.0], [0.0, -0.5]], [[2.0, 0.0], [0.0, 2.0]]])
    rhs = torch.tensor([[1.0, 1.0], [2.0, 4.0]])
    x = solve_regularized(lhs, rhs, ridge=1e-4)
    torch.testing.assert_close(x[1], torch.tensor([1.0, 2.0]), atol=1e-3, rtol=0)  # ridge 1e-4 untouched
    # first element: ridge grew to 1.0 (1e-4 × 10⁴), so x = (1/2, 1/0.5)
    torch.testing.assert_close(x[0], torch.tensor([0.5, 2.0]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="positive definite"):
        solve_regularized(torch.tensor([[-1e9, 0.0], [0.0, 1.0]]), torch.ones(2), ridge=1e-4, max_retries=2)


def test_banded_solver_matches_dense_and_falls_back_on_breakdown():
    g = torch.Generator().manual_seed(0)
    n, p = 20, 3
    D3 = difference_matrix(n, 3, dtype=torch.float64)
    diag = torch.rand(5, n, generator=g, dtype=torch.float64) + 0.1
    M = torch.diag_embed(diag) + D3.T @ D3  # (5, n, n), bandwidth 3
    M[4] = M[4] - 10.0 * torch.eye(n, dtype=torch.float64)  # indefinite: needs the dense ridge retry
    rhs = torch.randn(5, n, generator=g, dtype=torch.float64)
    bands = [torch.diagonal(M, -d, dim1=-2, dim2=-1) for d in range(p + 1)]
    x_band = solve_banded_regularized(bands, rhs, ridge=1e-4)
    x_dense = solve_regularized(M, rhs, ridge=1e-4)
    torch.testing.assert_close(x_band, x_dense, atol=1e-9, rtol=1e-9)
    # the indefinite element was solved with the first ridge 1e-4·10^k that makes it positive definite
    lam_min = float(torch.linalg.eigvalsh(M[4])[0])
    assert lam_min < 0
    ridge = next(1e-4 * 10**k for k in range(1, 9) if lam_min + 1e-4 * 10**k > 0)
    expected = torch.linalg.solve(M[4] + ridge * torch.eye(n, dtype=torch.float64), rhs[4])
    torch.testing.assert_close(x_band[4], expected)


# -- bad input -----------------------------------------------------------------------------------


def test_bad_input_raises_value_error_naming_argument():
    h, r = straight_history(5.0)
    f = np.zeros((64, 3))
    fr = np.broadcast_to(np.eye(3), (64, 3, 3))
    with pytest.raises(ValueError, match=r"fut_xyz must have shape \(\.\.\., 64, 3\), got \(60, 3\)"):
        traj_to_action(h, r, np.zeros((60, 3)), fr)
    bad = h.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"hist_xyz contains NaN or inf \(shape \(16, 3\)\)"):
        traj_to_action(bad, r, f, fr)
    with pytest.raises(ValueError, match="hist_rot"):
        estimate_v0(h, np.zeros((16, 3)))
    with pytest.raises(ValueError, match="actions must have shape"):
        action_to_traj(torch.zeros(64, 3), h, r)
    with pytest.raises(ValueError, match="actions contains NaN"):
        action_to_traj(torch.full((64, 2), float("inf")), h, r)
    with pytest.raises(ValueError, match="do not broadcast"):
        action_to_traj(torch.zeros(3, 64, 2), np.stack([h, h]), np.stack([r, r]))
    with pytest.raises(ValueError, match="fut_rot"):
        traj_to_action(h, r, f, fr[:1].repeat(64, 0)[None].repeat(2, 0))
