import pytest
import torch

from cordillera.model import flow_matching as fm


def test_euler_exact_for_constant_velocity():
    x0 = torch.randn(3, 64, 2, generator=torch.Generator().manual_seed(0))
    c = torch.tensor([0.7, -1.3])
    for n in (1, 3, 10):
        x1 = fm.euler_integrate(lambda x, t: c.expand_as(x), x0, n)
        torch.testing.assert_close(x1, x0 + c, rtol=0, atol=5e-6)  # float32 rounding only


def test_euler_time_grid_is_k_over_n():
    # v = t: Euler gives sum_k (k/N)(1/N) = (N-1)/(2N), not the exact 1/2
    x1 = fm.euler_integrate(lambda x, t: t.expand_as(x), torch.zeros(1), 10)
    assert x1.item() == pytest.approx(9 / 20, abs=1e-6)
    with pytest.raises(ValueError):
        fm.euler_integrate(lambda x, t: x, torch.zeros(1), 0)


def test_interpolation_endpoints_and_target():
    x1, eps = torch.full((2, 4, 2), 3.0), torch.full((2, 4, 2), -1.0)
    torch.testing.assert_close(fm.interpolate(x1, eps, torch.zeros(2, 1, 1)), eps)  # t=0 noise
    torch.testing.assert_close(fm.interpolate(x1, eps, torch.ones(2, 1, 1)), x1)  # t=1 data
    torch.testing.assert_close(fm.interpolate(x1, eps, torch.full((2, 1, 1), 0.25)), torch.full((2, 4, 2), 0.0))
    torch.testing.assert_close(fm.target_velocity(x1, eps), torch.full((2, 4, 2), 4.0))


def test_sample_t_beta_distribution_and_seed():
    t = fm.sample_t((200_000,), torch.Generator().manual_seed(1))
    assert 0.0 <= t.min() and t.max() <= 0.999
    # s ~ Beta(1.5, 1): E[s] = 0.6, so E[t] = 0.999 * 0.4; P(t < 0.5) = P(s > 0.4995) = 1 - 0.4995^1.5
    assert t.mean().item() == pytest.approx(0.999 * 0.4, abs=3e-3)
    assert (t < 0.5).float().mean().item() == pytest.approx(1 - (0.5 / 0.999) ** 1.5, abs=5e-3)
    a = fm.sample_t((5,), torch.Generator().manual_seed(3))
    b = fm.sample_t((5,), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_noise_and_guidance():
    n = fm.sample_noise((2, 64, 2), torch.Generator().manual_seed(0), temperature=0.0)
    assert torch.count_nonzero(n) == 0
    vu, vc = torch.tensor([1.0]), torch.tensor([3.0])
    assert fm.guided_velocity(vu, vc, 1.0).item() == 3.0
    assert fm.guided_velocity(vu, vc, 0.0).item() == 1.0
    assert fm.guided_velocity(vu, vc, 1.5).item() == 4.0
