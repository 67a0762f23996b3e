"""Discrete (future) and delta (history) tokenizers: bin arithmetic, half-bin error, clamping, layout."""

import numpy as np
import pytest
import torch

from cordillera.action import ActionSpaceConfig, DeltaHistoryTokenizer, DiscreteTrajectoryTokenizer, action_to_traj


def straight_history(speed_mps: float):
    xyz = np.zeros((16, 3))
    xyz[:, 0] = (np.arange(16) - 15) * speed_mps * 0.1
    return xyz, np.broadcast_to(np.eye(3), (16, 3, 3)).copy()


def test_discrete_tokenizer_layout_and_hand_computed_bins():
    tok = DiscreteTrajectoryTokenizer(num_bins=3000, dims_min=(-5.0, -5.0), dims_max=(5.0, 5.0))
    assert tok.vocab_size == 3000 and tok.num_tokens == 128
    a = torch.zeros(64, 2)
    a[0] = torch.tensor([-5.0, 5.0])
    a[1] = torch.tensor([0.0, 1.0])
    t = tok.encode_actions(a)
    assert t.shape == (128,) and t.dtype == torch.long
    # interleaved [a0, κ0, a1, κ1, ...]; bin = round((x + 5)/10 · 2999)
    assert t[:4].tolist() == [0, 2999, round(5 / 10 * 2999), round(6 / 10 * 2999)]
    assert t[4:].unique().tolist() == [1500]  # round(1499.5) = 1500 (round half to even)


def test_discrete_tokenizer_error_at_most_half_a_bin_and_clamps():
    tok = DiscreteTrajectoryTokenizer(num_bins=3000, dims_min=(-4.0, -2.0), dims_max=(6.0, 2.0))
    g = torch.Generator().manual_seed(0)
    lo, hi = torch.tensor([-4.0, -2.0]), torch.tensor([6.0, 2.0])
    a = lo + (hi - lo) * torch.rand(10, 64, 2, generator=g)
    back = tok.decode_actions(tok.encode_actions(a))
    half = torch.tensor(tok.bin_width) / 2
    assert ((back - a).abs() <= half * (1 + 1e-4)).all()
    # out of range clamps to the end bins and decodes to the range ends
    a_out = torch.zeros(64, 2)
    a_out[:, 0] = 100.0
    a_out[:, 1] = -100.0
    t = tok.encode_actions(a_out)
    assert t[0::2].unique().tolist() == [2999] and t[1::2].unique().tolist() == [0]
    back = tok.decode_actions(t)
    assert torch.allclose(back[:, 0], torch.tensor(6.0)) and torch.allclose(back[:, 1], torch.tensor(-2.0))


def test_discrete_tokenizer_trajectory_round_trip():
    cfg = ActionSpaceConfig(accel_std_mps2=2.0, curvature_std_1pm=0.05)
    tok = DiscreteTrajectoryTokenizer(cfg)
    h, r = straight_history(10.0)
    raw = torch.stack([torch.full((64,), 0.8), 0.02 * torch.cos(torch.arange(64) * 0.05)], dim=-1)
    fut_xyz, fut_rot = action_to_traj(raw, h, r, cfg, normalized=False)
    tokens = tok.encode(h[None], r[None], fut_xyz[None], fut_rot[None])
    assert tokens.shape == (1, 128)
    xyz, rot = tok.decode(tokens, h[None], r[None])
    assert xyz.shape == (1, 64, 3) and rot.shape == (1, 64, 3, 3)
    # Worst-case bound from quantisation alone: half a bin is 10/2999/2 normalised units, i.e.
    # |Δκ| ≤ 8.3e-5 1/m and |Δa| ≤ 6.7e-3 m/s². Over the ≈ 77 m path the heading error is
    # ≤ 8.3e-5·77 = 6.4e-3 rad, giving ≤ 6.4e-3·77/2 ≈ 0.25 m laterally, and ½·6.7e-3·6.4² ≈ 0.14 m
    # along track; errors of independent bins mostly cancel (observed ≈ 6 cm).
    err = (xyz[0] - fut_xyz).norm(dim=-1)
    assert err.max() < 0.3 and err[:20].max() < 0.01


def test_discrete_tokenizer_bad_input():
    tok = DiscreteTrajectoryTokenizer()
    with pytest.raises(ValueError, match=r"actions must have shape \(\.\.\., 64, 2\)"):
        tok.encode_actions(torch.zeros(64, 3))
    with pytest.raises(ValueError, match="actions contains NaN"):
        tok.encode_actions(torch.full((64, 2), float("nan")))
    with pytest.raises(ValueError, match=r"tokens must have shape \(\.\.\., 128\)"):
        tok.decode_actions(torch.zeros(127, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3000\)"):
        tok.decode_actions(torch.full((128,), 3000))
    with pytest.raises(ValueError, match="integer"):
        tok.decode_actions(torch.zeros(128))
    with pytest.raises(ValueError, match="dims_min"):
        DiscreteTrajectoryTokenizer(dims_min=(1.0, 1.0), dims_max=(0.0, 2.0))


def test_delta_tokenizer_origin_prepended_first_delta_is_oldest_position():
    tok = DeltaHistoryTokenizer()  # 1000 bins over (−4, −4, −10)..(4, 4, 10)
    assert tok.vocab_size == 1000
    h, _ = straight_history(2.0)  # oldest point at x = −3.0 m, then +0.2 m steps
    d = tok.deltas(h)
    assert d.shape == (16, 3)
    np.testing.assert_allclose(d[0].numpy(), [-3.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(d[1:, 0].numpy(), 0.2, atol=1e-6)
    t = tok.encode(h)
    assert t.shape == (48,) and t.dtype == torch.long
    # interleaved dx0, dy0, dz0, dx1...: bin = round((d − lo)/(hi − lo) · 999)
    assert t[:6].tolist() == [round(1 / 8 * 999), round(4 / 8 * 999), round(10 / 20 * 999), round(4.2 / 8 * 999), 500, 500]


def test_delta_tokenizer_error_half_a_bin_per_delta_and_clamp():
    tok = DeltaHistoryTokenizer()
    g = torch.Generator().manual_seed(1)
    # positions whose every delta (including the first, absolute one) lies in range
    deltas = (torch.rand(5, 16, 3, generator=g) - 0.5) * torch.tensor([7.0, 7.0, 18.0])
    xyz = deltas.cumsum(dim=-2)
    tokens = tok.encode(xyz)
    half = torch.tensor(tok.bin_width_m) / 2
    assert ((tok.decode_deltas(tokens) - deltas).abs() <= half * (1 + 1e-4)).all()
    # decoded positions are cumulative sums, so the error of point i is at most (i + 1) half-bins
    err = (tok.decode(tokens) - xyz).abs()
    bound = half * torch.arange(1, 17).view(16, 1) * (1 + 1e-4)
    assert (err <= bound).all()
    # 10 m/s history: the oldest point is 15 m back -> saturates at −4 m (spec §2.3 observation)
    h, _ = straight_history(10.0)
    t = tok.encode(h)
    assert t[0].item() == 0
    np.testing.assert_allclose(tok.decode(t)[0].numpy(), [-4.0, 0.0, 0.0], atol=0.011)  # 0 is half a bin off-centre
    big = torch.zeros(16, 3)
    big[:, 2] = 50.0  # first dz = +50 m > 10 m: clamps to the last bin
    assert tok.encode(big)[2].item() == 999


def test_delta_tokenizer_bad_input():
    tok = DeltaHistoryTokenizer()
    with pytest.raises(ValueError, match=r"hist_xyz must have shape \(\.\.\., \*, 3\)"):
        tok.encode(torch.zeros(16, 2))
    with pytest.raises(ValueError, match="hist_xyz contains NaN"):
        tok.encode(torch.full((16, 3), float("nan")))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1000\)"):
        tok.decode(torch.full((48,), -1))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3H\)"):
        tok.decode(torch.zeros(47, dtype=torch.long))
