"""DART-style disturbances for data generation: an expert that is briefly pushed off its line.

A model trained only on an expert's own rollouts never sees the ego off its lane, so in closed
loop a small heading error is never corrected (the nano VLA on `merge_on_ramp` holds whatever
heading it has; benchmarks/RESULTS.md ## closed_loop_eval, Session 5). DART (Laskey et al., 2017)
records the expert recovering from injected disturbances. Here a disturbance turns the inner
policy's plan by ``yaw_offset_rad`` about the rig origin for ``[t_start_us, t_end_us)``: the
controller tracks the turned plan and the car heads off its lane; from ``t_end_us`` the inner
policy drives again from wherever the car is. Training samples must not *learn* the disturbance,
only the recovery: `label_window_ok` keeps a t0 only when its 6.4 s future starts at or after the
disturbance's end (the history may contain it — that is the point).

Disturbances are drawn from a seed (`sample_perturbation`), so re-driving a clip with the same
scenario, seed and disturbance gives the same rollout (`data.generate.redrive`).

A :class:`Handover` is the on-policy disturbance (DAgger in the data layout's terms; Ross et al., 2011):
a *learner* (a VLA checkpoint) drives from the end of the force-GT warm-up until ``t_end_us`` and the
expert takes over from wherever the learner left the car. Random pushes rarely reach the states a
trained model drives into (8–10° heading errors held for seconds at the end of a ramp bend,
RESULTS ## closed_loop_eval Session 6); the learner's own drive does. The same `label_window_ok` rule
keeps only t0s whose future is the expert's. A handover clip cannot be re-driven without its learner,
so its labels are written when it is generated.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from cordillera.sim.policies.baselines import HORIZON_STEPS
from cordillera.sim.types import PLAN_PERIOD_US, Observation, Plan, SessionInfo

__all__ = ["DisturbanceWindow", "Perturbation", "PerturbedPolicy", "sample_perturbation", "label_window_ok", "FUTURE_US", "Handover",
           "HandoverPolicy", "sample_handover", "HANDOVER_REPLAN_EVERY_S", "PERTURB_PROFILES"]

FUTURE_US = HORIZON_STEPS * PLAN_PERIOD_US  # [µs] 6.4 s: the future a training sample's trajectory covers


@dataclass(frozen=True)
class DisturbanceWindow:
    """``[t_start_us, t_end_us)``: when a clip's drive is not the expert's own; stored in the clip
    metadata as JSON."""

    t_start_us: int
    t_end_us: int

    def __post_init__(self):
        if not 0 <= self.t_start_us < self.t_end_us:
            raise ValueError(f"need 0 <= t_start_us < t_end_us, got {self.t_start_us}, {self.t_end_us}")

    def active(self, t_us: int) -> bool:
        return self.t_start_us <= int(t_us) < self.t_end_us

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | None):
        """The window stored as ``text``, or None for "" / None (a clip without one)."""
        return None if not text else cls(**json.loads(text))


@dataclass(frozen=True)
class Perturbation(DisturbanceWindow):
    """Turn the inner plan by ``yaw_offset_rad`` (left +) while ``t_start_us <= t_now < t_end_us``."""

    yaw_offset_rad: float

    def __post_init__(self):
        super().__post_init__()
        if not abs(self.yaw_offset_rad) < np.pi / 4:
            raise ValueError(f"|yaw_offset_rad| must be < pi/4 (a nudge, not a turn), got {self.yaw_offset_rad}")


# Named ranges for `sample_perturbation` (start [s], duration [s], |yaw| [deg]). Both start after the
# 1.7 s force-GT warm-up. "push" (DART's brief nudge, the default): up to ~1.5 m off the line (6° for
# 0.8 s peaks at 1.5 m on `road_following` and is back within 0.2 m 3 s later). "drift": a turned plan
# held for seconds — the state the nano VLA drives into in closed loop (a slow drift off its lane,
# RESULTS ## closed_loop_eval Session 17): 2° for 3 s leaves the car 1.3–1.5 m off its lane centre,
# 4° for 3 s 2.6–3.1 m, then the expert recovers (measured on road_following / traffic_light /
# car_following).
PERTURB_PROFILES = {
    "push": {"start_s": (2.5, 7.0), "duration_s": (0.3, 0.8), "yaw_deg": (2.0, 6.0)},
    "drift": {"start_s": (2.5, 6.0), "duration_s": (2.0, 4.0), "yaw_deg": (1.5, 4.0)},
}


def sample_perturbation(seed, start_s=(2.5, 7.0), duration_s=(0.3, 0.8), yaw_deg=(2.0, 6.0)) -> Perturbation:
    """One disturbance drawn from ``np.random.default_rng(seed)``: start, duration and |yaw| uniform
    in the given ranges, side random (the defaults are `PERTURB_PROFILES["push"]`)."""
    rng = np.random.default_rng(seed)
    t0 = int(round(rng.uniform(*start_s) * 1e6 / 1e5)) * 100_000  # on the 10 Hz control grid
    dur = int(round(rng.uniform(*duration_s) * 1e6 / 1e5)) * 100_000
    yaw = np.deg2rad(rng.uniform(*yaw_deg)) * rng.choice([-1.0, 1.0])
    return Perturbation(t0, t0 + max(dur, 100_000), float(yaw))


def label_window_ok(t0_us: int, perturbation: DisturbanceWindow | None) -> bool:
    """A training sample at t0 may use this clip: its future (t0, t0 + 6.4 s] holds no disturbance
    (a push, or the learner's drive before a handover)."""
    if perturbation is None:
        return True
    return not (t0_us + FUTURE_US >= perturbation.t_start_us and t0_us < perturbation.t_end_us)


def _turned(plan: Plan, yaw: float) -> Plan:
    c, s = np.cos(yaw), np.sin(yaw)
    xyz = np.array(plan.xyz_rig, dtype=np.float64, copy=True)
    x, y = xyz[:, 0].copy(), xyz[:, 1].copy()
    xyz[:, 0], xyz[:, 1] = c * x - s * y, s * x + c * y
    return dataclasses.replace(plan, xyz_rig=xyz, yaw_rig=np.asarray(plan.yaw_rig, dtype=np.float64) + yaw,
                               alternatives=())


class PerturbedPolicy:
    """``inner`` with its plans turned during the disturbance windows (see the module docstring)."""

    def __init__(self, inner, perturbations: tuple[Perturbation, ...] | Perturbation):
        self.inner = inner
        self.perturbations = (perturbations,) if isinstance(perturbations, Perturbation) else tuple(perturbations)
        self.name = f"{inner.name}+perturbed"
        self.runs_inline = bool(getattr(inner, "runs_inline", False))

    def start(self, session: SessionInfo) -> None:
        self.inner.start(session)

    def close(self) -> None:
        self.inner.close()

    def observe_world(self, world_state, scenario) -> None:
        if hasattr(self.inner, "observe_world"):
            self.inner.observe_world(world_state, scenario)

    def plan(self, observation: Observation, t_now_us: int, t_query_us: int) -> Plan:
        plan = self.inner.plan(observation, t_now_us, t_query_us)
        if plan.warming_up:
            return plan
        yaw = sum(p.yaw_offset_rad for p in self.perturbations if p.active(t_now_us))
        return _turned(plan, yaw) if yaw else plan


# ---------------------------------------------------------------------------------------------
# On-policy disturbance: the learner drives, then the expert takes over
# ---------------------------------------------------------------------------------------------
HANDOVER_REPLAN_EVERY_S = 0.5  # [s] the learner replans as in the closed-loop evaluation protocol (RESULTS)


@dataclass(frozen=True)
class Handover(DisturbanceWindow):
    """``learner`` (a checkpoint directory) drives while ``t_start_us <= t_now < t_end_us``, the
    expert outside. ``sample_handover`` starts the window at 0: the runtime forces the ground truth
    during its warm-up whoever plans, so the learner drives from the warm-up's end."""

    learner: str

    def __post_init__(self):
        super().__post_init__()
        if not self.learner:
            raise ValueError("a handover needs the learner's checkpoint")


def sample_handover(seed, learner: str, end_s=(3.0, 9.0)) -> Handover:
    """The learner drives from the start (in effect from the end of the 1.7 s force-GT warm-up) to a
    handover time uniform in ``end_s`` on the 10 Hz grid: long enough for its heading errors to
    build up (they take seconds, RESULTS ## closed_loop_eval Session 5), early enough that a 20 s
    clip keeps t0s with a 6.4 s expert future after it (up to 13.6 s)."""
    rng = np.random.default_rng(seed)
    t_end_us = int(round(rng.uniform(*end_s) * 10)) * 100_000
    return Handover(0, max(t_end_us, 100_000), str(learner))


class HandoverPolicy:
    """``learner`` plans inside the handover window, ``expert`` outside it. The expert sees every
    observation and world state throughout (its internal state stays that of a continuous drive;
    its plans inside the window are discarded). The learner is asked at every step before the
    handover, the warm-up included, exactly as in a closed-loop evaluation (it buffers its camera
    frames and history from those calls); its plans count only inside the window."""

    def __init__(self, learner, expert, handover: Handover):
        self.learner, self.expert, self.handover = learner, expert, handover
        self.name = f"{expert.name}+handover"
        self.runs_inline = False  # the learner is a model: keep the runtime's policy timeout

    def start(self, session: SessionInfo) -> None:
        self.expert.start(session)
        self.learner.start(session)

    def close(self) -> None:
        self.learner.close()
        self.expert.close()

    def observe_world(self, world_state, scenario) -> None:
        for pol in (self.expert, self.learner):
            if hasattr(pol, "observe_world"):
                pol.observe_world(world_state, scenario)

    def plan(self, observation: Observation, t_now_us: int, t_query_us: int) -> Plan:
        learner_plan = None
        if int(t_now_us) < self.handover.t_end_us:
            learner_plan = self.learner.plan(observation, t_now_us, t_query_us)
        plan = self.expert.plan(observation, t_now_us, t_query_us)
        return learner_plan if self.handover.active(t_now_us) else plan
