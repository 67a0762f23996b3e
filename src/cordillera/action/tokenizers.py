"""Discrete tokenizers for trajectories (spec/alpamayo_model.md §2.3 and §3.5).

- :class:`DiscreteTrajectoryTokenizer` — the *future*: GT poses -> normalised (accel, curvature)
  controls (:func:`traj_to_action`) -> 128 uniform-bin tokens interleaved [a0, κ0, a1, κ1, …].
- :class:`DeltaHistoryTokenizer` — the *history*: 16 positions -> 48 tokens of per-axis binned
  deltas, interleaved [dx0, dy0, dz0, dx1, …]. Rotation is ignored.

Token values are bin indices in [0, num_bins); the model adds its vocabulary offsets
(future bins first, history bins after them, spec §2.3/§2.5).
Binning: ``bin = clamp(round((x − lo)/(hi − lo)·(n − 1)), 0, n − 1)``; decoding maps bin i to
``lo + i·(hi − lo)/(n − 1)``, so inside [lo, hi] the round-trip error is at most half a bin width
``(hi − lo)/(2(n − 1))``; values outside the range clamp to the end bins.
"""

from __future__ import annotations

import torch

from cordillera.action.unicycle import ActionSpaceConfig, _tensor, action_to_traj, traj_to_action

__all__ = ["DiscreteTrajectoryTokenizer", "DeltaHistoryTokenizer", "quantize", "dequantize"]


def quantize(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Uniform bins over [lo, hi] per last-dim channel, clamped -> int64."""
    idx = torch.round((x - lo) / (hi - lo) * (num_bins - 1))
    return idx.clamp(0, num_bins - 1).to(torch.long)


def dequantize(tokens: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Bin centres (float32) of integer tokens; inverse of :func:`quantize` inside the range."""
    return lo + tokens.to(torch.float32) * ((hi - lo) / (num_bins - 1))


def _check_range(name_min, lo, name_max, hi, n_dims):
    lo, hi = tuple(float(v) for v in lo), tuple(float(v) for v in hi)
    if len(lo) != n_dims or len(hi) != n_dims or not all(a < b for a, b in zip(lo, hi)):
        raise ValueError(f"{name_min} {lo} and {name_max} {hi} must have {n_dims} entries each with min < max")
    return lo, hi


def _check_tokens(name: str, tokens, n: int, num_bins: int) -> torch.Tensor:
    t = torch.as_tensor(tokens)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {t.dtype}")
    if t.ndim < 1 or t.shape[-1] != n:
        raise ValueError(f"{name} must have shape (..., {n}), got {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_bins):
        raise ValueError(f"{name} values must lie in [0, {num_bins}), got range [{int(t.min())}, {int(t.max())}]")
    return t


class DiscreteTrajectoryTokenizer:
    """Future trajectory <-> 2·T discrete tokens (spec/alpamayo_model.md §3.5).

    ``dims_min``/``dims_max`` bound each channel in **normalised** action units (i.e. after
    ``(x − mean)/std`` with the statistics of ``cfg``): with our fitted statistics ±5 covers ±5σ.
    The released ranges are unknown (spec §3.5); ``num_bins`` = 3000 is the inferred release value.
    """

    def __init__(
        self,
        cfg: ActionSpaceConfig = ActionSpaceConfig(),
        num_bins: int = 3000,  # [-] spec/alpamayo_model.md §3.5 (inferred release value)
        dims_min: tuple[float, float] = (-5.0, -5.0),  # normalised units; release value unknown
        dims_max: tuple[float, float] = (5.0, 5.0),
    ):
        if int(num_bins) != num_bins or num_bins < 2:
            raise ValueError(f"num_bins must be an integer >= 2, got {num_bins}")
        self.cfg = cfg
        self.num_bins = int(num_bins)
        self.dims_min, self.dims_max = _check_range("dims_min", dims_min, "dims_max", dims_max, 2)

    @property
    def vocab_size(self) -> int:
        return self.num_bins

    @property
    def num_tokens(self) -> int:
        return 2 * self.cfg.n_waypoints

    @property
    def bin_width(self) -> tuple[float, float]:
        return tuple((hi - lo) / (self.num_bins - 1) for lo, hi in zip(self.dims_min, self.dims_max))

    def _range(self, like: torch.Tensor):
        lo = torch.tensor(self.dims_min, dtype=torch.float32, device=like.device)
        hi = torch.tensor(self.dims_max, dtype=torch.float32, device=like.device)
        return lo, hi

    def encode_actions(self, actions) -> torch.Tensor:
        """Normalised actions (..., T, 2) -> Long (..., 2T) interleaved [a0, κ0, a1, κ1, …]."""
        a = _tensor("actions", actions, (self.cfg.n_waypoints, 2))
        tok = quantize(a, *self._range(a), self.num_bins)  # (..., T, 2)
        return tok.flatten(-2)  # (..., 2T)

    def decode_actions(self, tokens) -> torch.Tensor:
        """Long (..., 2T) -> normalised actions (..., T, 2) float32 (bin values)."""
        t = _check_tokens("tokens", tokens, self.num_tokens, self.num_bins)
        t = t.unflatten(-1, (self.cfg.n_waypoints, 2))  # (..., T, 2)
        return dequantize(t, *self._range(t), self.num_bins)

    def encode(self, hist_xyz, hist_rot, fut_xyz, fut_rot) -> torch.Tensor:
        """GT poses (t0 frame) -> Long (..., 2T) via :func:`traj_to_action`."""
        return self.encode_actions(traj_to_action(hist_xyz, hist_rot, fut_xyz, fut_rot, self.cfg))

    def decode(self, tokens, hist_xyz, hist_rot) -> tuple[torch.Tensor, torch.Tensor]:
        """Long (..., 2T) -> (xyz (..., T, 3), rot (..., T, 3, 3)) via :func:`action_to_traj`."""
        return action_to_traj(self.decode_actions(tokens), hist_xyz, hist_rot, self.cfg)


class DeltaHistoryTokenizer:
    """Ego history positions <-> 3·H tokens of binned consecutive deltas (spec/alpamayo_model.md §2.3).

    The origin is inserted *before* the H points and differences are taken, so delta 0 is the
    absolute oldest position (e.g. −15 m at 10 m/s, which saturates at the ±4 m clamp by design —
    that is what the original does), and deltas 1..H−1 are the step displacements. Decoding is the
    cumulative sum of the dequantised deltas.
    """

    def __init__(
        self,
        num_bins: int = 1000,  # [-] spec/alpamayo_model.md §2.3 (class default)
        xyz_min: tuple[float, float, float] = (-4.0, -4.0, -10.0),  # [m] spec/alpamayo_model.md §2.3
        xyz_max: tuple[float, float, float] = (4.0, 4.0, 10.0),  # [m] spec/alpamayo_model.md §2.3
    ):
        if int(num_bins) != num_bins or num_bins < 2:
            raise ValueError(f"num_bins must be an integer >= 2, got {num_bins}")
        self.num_bins = int(num_bins)
        self.xyz_min, self.xyz_max = _check_range("xyz_min", xyz_min, "xyz_max", xyz_max, 3)

    @property
    def vocab_size(self) -> int:
        return self.num_bins

    @property
    def bin_width_m(self) -> tuple[float, float, float]:
        return tuple((hi - lo) / (self.num_bins - 1) for lo, hi in zip(self.xyz_min, self.xyz_max))

    def _range(self, like: torch.Tensor):
        lo = torch.tensor(self.xyz_min, dtype=torch.float32, device=like.device)
        hi = torch.tensor(self.xyz_max, dtype=torch.float32, device=like.device)
        return lo, hi

    @staticmethod
    def deltas(hist_xyz) -> torch.Tensor:
        """(..., H, 3) -> (..., H, 3): [p0 − 0, p1 − p0, …] (origin prepended, then differences)."""
        xyz = _tensor("hist_xyz", hist_xyz, (-1, 3))
        return torch.diff(xyz, dim=-2, prepend=torch.zeros_like(xyz[..., :1, :]))

    def encode(self, hist_xyz) -> torch.Tensor:
        """Positions (..., H, 3) in the t0 frame -> Long (..., 3H) interleaved [dx0, dy0, dz0, dx1, …]."""
        d = self.deltas(hist_xyz)
        return quantize(d, *self._range(d), self.num_bins).flatten(-2)  # (..., 3H)

    def decode_deltas(self, tokens) -> torch.Tensor:
        t = torch.as_tensor(tokens)
        if t.ndim < 1 or t.shape[-1] % 3 != 0 or t.shape[-1] == 0:
            raise ValueError(f"tokens must have shape (..., 3H), got {tuple(t.shape)}")
        t = _check_tokens("tokens", t, t.shape[-1], self.num_bins).unflatten(-1, (-1, 3))  # (..., H, 3)
        return dequantize(t, *self._range(t), self.num_bins)

    def decode(self, tokens) -> torch.Tensor:
        """Long (..., 3H) -> positions (..., H, 3) float32, the cumulative sum of the deltas."""
        return self.decode_deltas(tokens).cumsum(dim=-2)
