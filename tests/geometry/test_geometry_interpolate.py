import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cordillera.geometry.interpolate import interpolate_poses, interpolate_scalar
from cordillera.geometry.pose import quat_from_yaw, yaw_of_quat

T0 = 1_700_000_000_000_000  # a realistic absolute µs timestamp, to exercise precision


def test_linear_translation_and_slerp_hand_computed():
    t = np.array([0, 1_000_000, 2_000_000]) + T0
    xyz = np.array([[0.0, 0, 0], [10.0, 0, 0], [10.0, 10.0, 2.0]])
    q = quat_from_yaw(np.array([0.0, np.pi / 2, np.pi / 2]))
    xq, qq = interpolate_poses(np.array([T0 + 250_000, T0 + 1_500_000]), t, xyz, q)
    np.testing.assert_allclose(xq, [[2.5, 0, 0], [10.0, 5.0, 1.0]], atol=1e-9)
    np.testing.assert_allclose(yaw_of_quat(qq), [np.pi / 8, np.pi / 2], atol=1e-9)
    # query at the sample times returns the samples
    xs, qs = interpolate_poses(t, t, xyz, q, method="cubic")
    np.testing.assert_allclose(xs, xyz, atol=1e-9)


def test_cubic_is_exact_for_a_cubic_polynomial_and_beats_linear():
    t_s = np.linspace(0.0, 2.0, 21)
    t = T0 + np.round(t_s * 1e6).astype(np.int64)
    f = lambda s: np.stack([s**3 - s, 2 * s**2, 0.5 * s], axis=-1)  # noqa: E731
    q = Rotation.from_euler("z", t_s[:, None]).as_quat()
    tq_s = np.array([0.05, 0.77, 1.333, 1.99])
    tq = T0 + np.round(tq_s * 1e6).astype(np.int64)
    xc, qc = interpolate_poses(tq, t, f(t_s), q, method="cubic")
    xl, _ = interpolate_poses(tq, t, f(t_s), q, method="linear")
    np.testing.assert_allclose(xc, f((tq - T0) * 1e-6), atol=1e-9)  # not-a-knot reproduces cubics
    assert np.abs(xl - f((tq - T0) * 1e-6)).max() > 1e-3
    np.testing.assert_allclose(yaw_of_quat(qc), (tq - T0) * 1e-6, atol=1e-9)  # constant-rate yaw


def test_interpolate_scalar_1d_and_2d():
    t = np.array([0, 100_000, 200_000])
    np.testing.assert_allclose(interpolate_scalar([50_000, 200_000], t, [0.0, 1.0, 3.0]), [0.5, 3.0])
    out = interpolate_scalar(np.array([[150_000]]), t, np.array([[0.0, 0.0], [1.0, -1.0], [3.0, -3.0]]))
    assert out.shape == (1, 1, 2)
    np.testing.assert_allclose(out[0, 0], [2.0, -2.0])


def test_bad_input_raises_clear_value_errors():
    t = np.array([0, 100_000, 200_000])
    xyz = np.zeros((3, 3))
    q = quat_from_yaw(np.zeros(3))
    with pytest.raises(ValueError, match="strictly increasing"):
        interpolate_poses([50_000], np.array([0, 100_000, 100_000]), xyz, q)
    with pytest.raises(ValueError, match="outside the sampled range"):
        interpolate_poses([250_000], t, xyz, q)
    with pytest.raises(ValueError, match="outside the sampled range"):
        interpolate_scalar([-1], t, [0.0, 1.0, 2.0])
    bad = xyz.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="xyz contains NaN"):
        interpolate_poses([50_000], t, bad, q)
    with pytest.raises(ValueError, match="quat_xyzw"):
        interpolate_poses([50_000], t, xyz, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"xyz must have shape \(3, 3\)"):
        interpolate_poses([50_000], t, np.zeros((2, 3)), q)
    with pytest.raises(ValueError, match="method"):
        interpolate_poses([50_000], t, xyz, q, method="quintic")
    with pytest.raises(ValueError, match="t_query_us contains NaN"):
        interpolate_scalar([np.nan], t, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="values must have shape"):
        interpolate_scalar([0], t, [0.0, 1.0])
