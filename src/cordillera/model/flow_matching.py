"""Rectified-flow primitives (spec/alpamayo_model.md §4), pure functions.

Convention (as the original, the opposite of LeRobot's π0): **t = 0 is noise, t = 1 is data**.
    x_t = t · x1 + (1 − t) · ε,     target velocity v = x1 − ε,
    training t: s ~ Beta(1.5, 1), t = 0.999 · (1 − s)  (mass near t = 0, the noisy end),
    inference: x_0 = ε · temperature, t_k = k / N, explicit Euler x ← x + (1/N) · v(x, t_k).
Shapes: x (..., T, D) with T = 64 waypoints and D = 2 controls; t broadcast as (..., 1, 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["sample_t", "sample_noise", "interpolate", "target_velocity", "euler_integrate", "guided_velocity"]


def sample_t(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    alpha: float = 1.5,
    beta: float = 1.0,
    scale: float = 0.999,
    device=None,
) -> torch.Tensor:
    """Training times t = scale · (1 − s), s ~ Beta(alpha, beta); float32 of `shape`.

    Beta samples are drawn as X/(X+Y) with X ~ Gamma(alpha), Y ~ Gamma(beta) so that the
    explicit generator is honoured (torch.distributions has no generator argument).
    """
    x = torch._standard_gamma(torch.full(shape, float(alpha), device=device), generator=generator)
    y = torch._standard_gamma(torch.full(shape, float(beta), device=device), generator=generator)
    s = x / (x + y)
    return scale * (1.0 - s)


def sample_noise(shape: tuple[int, ...], generator: torch.Generator | None = None, device=None,
                 temperature: float = 1.0) -> torch.Tensor:  # fmt: skip
    """ε ~ N(0, I) · temperature (A1.5 noise temperature, default 1)."""
    return torch.randn(shape, generator=generator, device=device) * temperature


def interpolate(x1: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = t · x1 + (1 − t) · noise; `t` broadcasts (e.g. (B, 1, 1) against (B, T, D))."""
    return t * x1 + (1.0 - t) * noise


def target_velocity(x1: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """d x_t / d t = x1 − noise."""
    return x1 - noise


def euler_integrate(
    velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor, num_steps: int
) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t = 0 (noise `x0`) to t = 1 with `num_steps` Euler steps.

    `velocity_fn(x, t)` gets x of x0's shape and a scalar tensor t = k / num_steps.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    dt = 1.0 / num_steps
    x = x0
    for k in range(num_steps):
        t = torch.tensor(k * dt, dtype=x0.dtype, device=x0.device)
        x = x + dt * velocity_fn(x, t)
    return x


def guided_velocity(v_uncond: torch.Tensor, v_cond: torch.Tensor, w: float) -> torch.Tensor:
    """(1 − w) · v_uncond + w · v_cond  (Guided Flows eq. 6; w = 1 is the conditional field)."""
    return (1.0 - w) * v_uncond + w * v_cond
