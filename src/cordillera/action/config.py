"""Settings of the unicycle action space, torch-free so configs can import it without torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

__all__ = ["ActionSpaceConfig"]


@dataclass(frozen=True)
class ActionSpaceConfig:
    """Settings of ``UnicycleAccelCurvatureActionSpace`` (class defaults, spec/alpamayo_model.md §3.1)."""

    # -- shape and clock ------------------------------------------------------------------------
    n_waypoints: int = 64  # [-] spec/alpamayo_model.md §3.1 (64 × 0.1 s = 6.4 s)
    dt_s: float = 0.1  # [s] spec/alpamayo_model.md §3.1
    # -- normalisation: released values unknown (config.json); fit ours with compute_action_stats --
    accel_mean_mps2: float = 0.0  # [m/s²] spec/alpamayo_model.md §3.1 (class default)
    accel_std_mps2: float = 1.0  # [m/s²] spec/alpamayo_model.md §3.1 (class default)
    curvature_mean_1pm: float = 0.0  # [1/m] spec/alpamayo_model.md §3.1 (class default)
    curvature_std_1pm: float = 1.0  # [1/m] spec/alpamayo_model.md §3.1 (class default)
    # -- validity bounds (only checked by is_within_bounds; nothing is clamped) ---------------
    accel_bounds_mps2: tuple[float, float] = (-9.8, 9.8)  # [m/s²] spec/alpamayo_model.md §3.1
    curvature_bounds_1pm: tuple[float, float] = (-0.2, 0.2)  # [1/m] spec/alpamayo_model.md §3.1
    # -- smoothing λ (penalty λ·‖Δᵏx/dtᵏ‖²) and ridge of the four GT fits ---------------------
    theta_lambda: float = 1e-6  # heading, 3rd order; spec/alpamayo_model.md §3.1
    theta_ridge: float = 1e-8  # spec/alpamayo_model.md §3.1
    v_lambda: float = 1e-6  # speed, 3rd order; spec/alpamayo_model.md §3.1
    v_ridge: float = 1e-4  # spec/alpamayo_model.md §3.1
    a_lambda: float = 1e-4  # acceleration, 2nd order; spec/alpamayo_model.md §3.1
    a_ridge: float = 1e-4  # spec/alpamayo_model.md §3.1
    kappa_lambda: float = 1e-4  # curvature, 2nd order; spec/alpamayo_model.md §3.1
    kappa_ridge: float = 1e-4  # spec/alpamayo_model.md §3.1

    def __post_init__(self):
        if int(self.n_waypoints) != self.n_waypoints or self.n_waypoints < 4:
            raise ValueError(f"n_waypoints must be an integer >= 4, got {self.n_waypoints}")
        if not (self.dt_s > 0 and math.isfinite(self.dt_s)):
            raise ValueError(f"dt_s must be positive, got {self.dt_s}")
        for name in ("accel_std_mps2", "curvature_std_1pm"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be positive and finite, got {v}")
        for name in ("accel_bounds_mps2", "curvature_bounds_1pm"):
            b = tuple(float(x) for x in getattr(self, name))
            if len(b) != 2 or not b[0] < b[1]:
                raise ValueError(f"{name} must be (low, high) with low < high, got {getattr(self, name)}")
            object.__setattr__(self, name, b)
        for f in fields(self):
            if f.name.endswith(("_lambda", "_ridge")) and not getattr(self, f.name) >= 0:
                raise ValueError(f"{f.name} must be >= 0, got {getattr(self, f.name)}")

    @property
    def horizon_s(self) -> float:
        return self.n_waypoints * self.dt_s

    def to_dict(self) -> dict:
        d = asdict(self)
        d["accel_bounds_mps2"] = list(self.accel_bounds_mps2)
        d["curvature_bounds_1pm"] = list(self.curvature_bounds_1pm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ActionSpaceConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ActionSpaceConfig keys: {sorted(unknown)}")
        kw = dict(d)
        for name in ("accel_bounds_mps2", "curvature_bounds_1pm"):
            if name in kw:
                kw[name] = tuple(kw[name])
        return cls(**kw)
