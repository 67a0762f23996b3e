"""Contracts between the simulator runtime and whoever drives (DESIGN.md §3).

- ``Observation``: what a driver may see at time t — camera frames, ego pose history with dynamic
  states, route waypoints in the rig frame (NaN-padded to 20 as AlpaSim does), optional nav text.
  Never privileged state.
- ``Plan``: a trajectory in the rig frame at ``t_now_us`` (first pose = origin at t_now), 10 Hz,
  covering ≥ 2 s, plus optional alternatives, CoC text, decisions and a timing breakdown.
- ``Policy``: ``start(session)``, ``plan(observation, t_now_us, t_query_us) -> Plan``, ``close()``.
  A privileged policy (the expert) additionally implements ``observe_world(world_state, scenario)``,
  which the runtime calls right before ``plan`` — the one explicit door to ground truth.
- ``Rollout``: everything a run produced; metrics are pure functions of (Rollout, Scenario).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from cordillera.world.scenario import AgentState, Scenario, WorldState

ROUTE_WAYPOINTS = 20  # spec/alpasim.md §1.4: route padded to exactly 20 waypoints with NaN
ROUTE_SPACING_M = 80.0 / 19.0  # [m] spec/alpasim.md §1.4
MIN_PLAN_HORIZON_US = 2_000_000  # [µs] controller MPC horizon, spec/alpasim.md §2.2
PLAN_PERIOD_US = 100_000  # [µs] 10 Hz plan sampling


@dataclass(frozen=True, eq=False)
class CameraFrame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    t_start_us: int
    t_end_us: int  # the frame time (AlpaSim fires camera events at the frame end)


@dataclass(frozen=True, eq=False)
class EgoHistory:
    """Ego poses (rig in local) with dynamic states, oldest first."""

    t_us: np.ndarray  # (N,) int64
    xyz_local: np.ndarray  # (N, 3)
    quat_local: np.ndarray  # (N, 4) x, y, z, w
    velocity_rig_mps: np.ndarray  # (N, 3) rig-frame linear velocity
    accel_rig_mps2: np.ndarray  # (N, 3) rig-frame linear acceleration
    yaw_rate_radps: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.t_us)


@dataclass(frozen=True, eq=False)
class Observation:
    t_us: int
    cameras: dict[str, CameraFrame]
    ego_history: EgoHistory
    route_rig: np.ndarray  # (20, 3) waypoints in the rig frame at t_us, NaN-padded
    nav_text: str | None = None


@dataclass(frozen=True, eq=False)
class Plan:
    """A planned trajectory in the rig frame at ``t_now_us``.

    ``t_us[0] == t_now_us`` and ``xyz_rig[0] == 0``, ``yaw_rig[0] == 0``; samples every 100 ms.
    ``warming_up=True`` marks an explicit "not enough history yet" answer: the runtime then keeps
    the ego on its current course (only legal during force-GT warm-up)."""

    t_us: np.ndarray  # (T,) int64, absolute µs
    xyz_rig: np.ndarray  # (T, 3) [m]
    yaw_rig: np.ndarray  # (T,) [rad]
    alternatives: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # ((T,3) xyz, (T,) yaw) samples
    coc: str | None = None
    decisions: dict | None = None  # {"longitudinal": ..., "lateral": ..., "causal_object": ...}
    timing_ms: dict = field(default_factory=dict)
    warming_up: bool = False
    # None: computed at t_us[0]. Else the time the policy computed it: a policy replanning at a lower
    # rate than the control clock re-anchors its last plan at the steps in between (coc/decisions are
    # the original's, so per-inference statistics skip these repeats).
    planned_at_us: int | None = None

    def validate(self, t_now_us: int) -> None:
        """Raise ValueError describing what is wrong with this plan (NaN, empty, backwards...)."""
        if self.warming_up:
            return
        t = np.asarray(self.t_us)
        xyz = np.asarray(self.xyz_rig)
        yaw = np.asarray(self.yaw_rig)
        if t.ndim != 1 or len(t) < 2:
            raise ValueError(f"plan is empty or has a single pose (got {t.shape[0] if t.ndim else 0} poses)")
        if xyz.shape != (len(t), 3) or yaw.shape != (len(t),):
            raise ValueError(f"plan shapes disagree: t {t.shape}, xyz {xyz.shape}, yaw {yaw.shape}")
        if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(yaw))):
            raise ValueError("plan contains NaN or inf")
        if np.any(np.diff(t) <= 0):
            raise ValueError("plan timestamps are not strictly increasing (backwards plan)")
        if int(t[0]) != int(t_now_us):
            raise ValueError(f"plan must start at t_now_us={t_now_us}, starts at {int(t[0])}")
        if int(t[-1]) - int(t_now_us) < MIN_PLAN_HORIZON_US:
            raise ValueError(f"plan covers {(int(t[-1]) - t_now_us) / 1e6:.2f} s, needs >= 2 s")
        if np.linalg.norm(xyz[0, :2]) > 0.5:
            raise ValueError(f"plan must start at the current pose (rig origin), starts at {xyz[0, :2]}")


@dataclass(frozen=True)
class SessionInfo:
    session_uuid: str
    scenario_id: str
    seed: int
    camera_names: tuple[str, ...] = ()
    control_period_us: int = 100_000
    nav_text: str | None = None


@runtime_checkable
class Policy(Protocol):
    """``runs_inline = True`` (optional attribute) marks a bounded in-process policy: the runtime
    calls it on its own thread instead of a timeout worker thread (see sim/runtime.py)."""

    name: str

    def start(self, session: SessionInfo) -> None: ...

    def plan(self, observation: Observation, t_now_us: int, t_query_us: int) -> Plan: ...

    def close(self) -> None: ...


@runtime_checkable
class PrivilegedPolicy(Policy, Protocol):
    def observe_world(self, world_state: WorldState, scenario: Scenario) -> None: ...


@dataclass(eq=False)
class StepRecord:
    """One control step: the committed world state at ``t_us`` and what the policy answered."""

    t_us: int
    ego: AgentState
    actors: dict[str, AgentState]
    signals: dict[str, str]
    plan: Plan | None = None
    force_gt: bool = False
    frames: dict[str, CameraFrame] | None = None  # kept only when the run asks for images
    timing_ms: dict = field(default_factory=dict)


@dataclass(eq=False)
class Rollout:
    scenario_id: str
    rollout_id: str
    policy_name: str
    seed: int
    steps: list[StepRecord] = field(default_factory=list)
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    force_gt_end_us: int = 0  # closed-loop start (eval_relevant from here)
    wall_time_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    def t_us(self) -> np.ndarray:
        return np.array([s.t_us for s in self.steps], dtype=np.int64)

    def ego_xy_yaw(self) -> np.ndarray:
        """(T, 3) ego rig-origin x, y, yaw in local."""
        return np.array([[s.ego.x_m, s.ego.y_m, s.ego.yaw_rad] for s in self.steps], dtype=np.float64).reshape(-1, 3)

    def ego_speed_mps(self) -> np.ndarray:
        return np.array([s.ego.speed_mps for s in self.steps], dtype=np.float64)


__all__ = [
    "ROUTE_WAYPOINTS", "ROUTE_SPACING_M", "MIN_PLAN_HORIZON_US", "PLAN_PERIOD_US", "CameraFrame", "EgoHistory",
    "Observation", "Plan", "SessionInfo", "Policy", "PrivilegedPolicy", "StepRecord", "Rollout",
]
