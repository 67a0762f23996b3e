"""The closed-loop runtime: one readable loop in AlpaSim's event order (spec/alpasim.md §1.3–§1.4).

One control step at time ``t`` (``dt = SimConfig.control_period_us``):

1. **cameras** — every configured camera renders the committed world state at ``t``; the frame
   is ``[t − 30 ms shutter, t)`` and ends at ``t`` ("zero decision delay").
2. **policy** — ``Observation`` (frames, ego history, route), privileged policies first get
   ``observe_world(world_state, scenario)``; ``plan(obs, t_now_us=t, t_query_us=t + dt)``; the
   answer is validated. The step is recorded now (``StepRecord`` = committed state at ``t`` + plan).
   At ``t == duration_us`` the loop ends here (AlpaSim's SimulationEndEvent sorts after the policy).
3. **controller** — ``"tracking"``: pure pursuit + speed PID on the AlpaSim bicycle, re-evaluated
   every ``physics_substep_us`` (the second clock); ``"perfect"``: the plan pose at ``t + dt``.
   During **force-GT** warm-up (a step whose *target* time ``t + dt ≤ force_gt_end_us``) the ego
   is put on the ground truth instead: the ``reference`` rollout's ego at ``t + dt`` or, without a
   reference, a lane-keeping rule (advance along the route polyline at the current speed, keeping
   the lateral offset). The policy is still called and its plan recorded, as AlpaSim does with
   ``skip_driver_during_force_gt: false``; ``Plan.warming_up`` and invalid plans are tolerated
   only then (recorded as given / as ``None``).
4. **physics** — flat ground: a no-op (AlpaSim's ``physics_update_mode: NONE``).
5. **traffic** — :func:`cordillera.sim.traffic.step_traffic` with the ego at ``t + dt``.
6. **step** — commit ego and actors at ``t + dt``.

Ego history and dynamic states: the history holds committed rig poses every 10 Hz; before t = 0
it is seeded with poses extrapolated backwards at the start speed along the start heading (AlpaSim
seeds it with the recorded poses before the first policy call). Velocities are rig-frame
``(speed, lateral speed, 0)``, accelerations ``(accel, speed · yaw rate, 0)``. Unlike AlpaSim
(spec §10.12) force-GT steps report the GT's dynamic states, not zeros.

Failures never escape :meth:`Simulator.run`: a policy exception, a timeout (the policy runs on a
worker thread when ``policy_timeout_s > 0``; a policy with ``runs_inline = True``, such as the
expert and the baselines, runs on the caller's thread and exceeds the timeout when its answer comes
later than that) or an invalid plan after warm-up ends the rollout with
``status="failed"`` and an ``error`` such as ``"policy raised ValueError: ..."`` or
``"invalid plan at t=2000000: plan contains NaN or inf"``.

Remote services: ``Simulator(..., endpoints=SimEndpoints(...))`` swaps the in-process controller,
physics and traffic for other implementations of the same roles (the gRPC clients of
:mod:`cordillera.serve.client`), and ``hooks`` see the session start and every commit (logging). The
loop stays this one loop; :func:`build_observation` is the one place an ``Observation`` is built, for
this runtime and for the gRPC driver service alike.

Determinism: nothing random is drawn by the runtime (the seed goes to the policy session and to an
RNG kept in the snapshot for future noise models), so scenario + seed + policy + config → the
same rollout, bit for bit.
"""

from __future__ import annotations

import concurrent.futures
import copy
import math
import time
import uuid
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from cordillera.sim.controller import ControllerState, perfect_step, plan_to_local, track
from cordillera.sim.traffic import TrafficState, init_traffic, lane_frenet, signal_states, step_traffic
from cordillera.sim.types import (
    ROUTE_SPACING_M,
    ROUTE_WAYPOINTS,
    CameraFrame,
    EgoHistory,
    Observation,
    Plan,
    Policy,
    Rollout,
    SessionInfo,
    StepRecord,
)
from cordillera.world.map import Lane
from cordillera.world.scenario import AgentState, Scenario, WorldState

__all__ = [
    "SHUTTER_US",
    "Renderer",
    "SimConfig",
    "Simulator",
    "SimSnapshot",
    "run_rollout",
    "route_waypoints_rig",
    "ego_history_from_states",
    "build_observation",
    "SimEndpoints",
]

SHUTTER_US = 30_000  # [µs] camera shutter duration, spec/alpasim.md §0


@runtime_checkable
class Renderer(Protocol):
    """Bound to one scenario at construction."""

    def cameras(self) -> list[str]: ...

    def render(self, world_state: WorldState, camera: str, t_start_us: int, t_end_us: int) -> np.ndarray: ...


@dataclass(frozen=True)
class SimConfig:
    # -- clocks ----------------------------------------------------------------------------------
    control_period_us: int = 100_000  # spec/alpasim.md §1.3 control_timestep_us
    physics_substep_us: int = 10_000  # controller + bicycle sub-step, spec/alpasim.md §2.4
    # -- ego -----------------------------------------------------------------------------------------
    controller: str = "tracking"  # "tracking" (our controller + bicycle model) | "perfect" (AlpaSim controller-skip)
    # -- sensors ---------------------------------------------------------------------------------------
    cameras: tuple[str, ...] = ()  # which renderer cameras to render each step (empty = none)
    keep_images: bool = False  # store frames in StepRecord.frames (videos, data generation)
    # -- policy --------------------------------------------------------------------------------------
    history_poses: int = 31  # ego poses (10 Hz) passed in Observation.ego_history
    policy_timeout_s: float = 30.0  # <= 0 disables the worker thread (no timeout)
    force_gt_duration_us: int | None = None  # None = scenario.force_gt_duration_us
    # -- precision -------------------------------------------------------------------------------------
    # True: in-process roles see poses/plans/ego states at AlpaSim's float32 wire precision, at the
    # same boundaries as over gRPC (cordillera.serve.mirror) -> bit-identical to a gRPC rollout, but
    # ~3x the CPU of a cheap policy's step. False (default): float64 throughout, the reference the
    # golden rollouts pin; differs from gRPC by float32 rounding (≤ 1 cm over 20 s, booleans equal).
    wire_precision: bool = False

    def __post_init__(self):
        if self.control_period_us <= 0 or self.physics_substep_us <= 0:
            raise ValueError(f"clocks must be > 0, got control {self.control_period_us}, substep {self.physics_substep_us}")
        if self.control_period_us % self.physics_substep_us:
            raise ValueError(f"control_period_us={self.control_period_us} must be a multiple of "
                             f"physics_substep_us={self.physics_substep_us}")
        if self.controller not in ("tracking", "perfect"):
            raise ValueError(f"controller must be 'tracking' or 'perfect', got {self.controller!r}")
        if self.history_poses < 1:
            raise ValueError(f"history_poses must be >= 1, got {self.history_poses}")
        if self.force_gt_duration_us is not None and (
            self.force_gt_duration_us < 0 or self.force_gt_duration_us % self.control_period_us
        ):
            raise ValueError(f"force_gt_duration_us={self.force_gt_duration_us} must be a non-negative multiple of "
                             f"control_period_us={self.control_period_us}")
        object.__setattr__(self, "cameras", tuple(self.cameras))


class _PolicyFailure(Exception):
    """Ends a rollout with status "failed"; the message is the rollout's ``error``."""


def route_waypoints_rig(route: Lane, ego: AgentState, n: int = ROUTE_WAYPOINTS,
                        spacing_m: float = ROUTE_SPACING_M) -> np.ndarray:
    """AlpaSim's route observation (spec/alpasim.md §1.4): ``n`` points every ``spacing_m`` along
    the route polyline starting at the ego's projection, in the rig frame, z = 0, NaN past the
    route end. (n, 3)."""
    s_e = float(lane_frenet(route, (ego.x_m, ego.y_m))[0][0])
    s = s_e + spacing_m * np.arange(n)
    xy = route.position(s)
    c, sn = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    dx, dy = xy[:, 0] - ego.x_m, xy[:, 1] - ego.y_m
    out = np.stack([c * dx + sn * dy, -sn * dx + c * dy, np.zeros(n)], axis=-1)
    out[s > route.length_m + 1e-6] = np.nan
    return out


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def ego_history_from_states(history) -> EgoHistory:
    """Committed ego states ``[(t_us, AgentState), ...]`` (oldest first) -> :class:`EgoHistory`.

    Rig-frame velocity ``(speed, lateral speed, 0)``, acceleration ``(accel, speed · yaw rate, 0)``,
    yaw-only orientation."""
    t = np.array([k for k, _ in history], dtype=np.int64)
    a = np.array([(s.x_m, s.y_m, s.yaw_rad, s.speed_mps, s.lat_speed_mps, s.accel_mps2, s.yaw_rate_radps)
                  for _, s in history], dtype=np.float64).reshape(-1, 7)
    n = len(history)
    z = np.zeros(n)
    quat = np.stack([z, z, np.sin(0.5 * a[:, 2]), np.cos(0.5 * a[:, 2])], axis=-1)
    return EgoHistory(t_us=t, xyz_local=np.stack([a[:, 0], a[:, 1], z], axis=-1), quat_local=quat,
                      velocity_rig_mps=np.stack([a[:, 3], a[:, 4], z], axis=-1),
                      accel_rig_mps2=np.stack([a[:, 5], a[:, 3] * a[:, 6], z], axis=-1),
                      yaw_rate_radps=a[:, 6].copy())


def build_observation(t_us: int, frames: dict[str, CameraFrame], ego_history: EgoHistory, route_rig,
                      nav_text: str | None = None, history_poses: int | None = None) -> Observation:
    """What a policy sees at ``t_us`` — built here for the in-process loop and the gRPC driver alike.

    Keeps the last ``history_poses`` ego poses at or before ``t_us`` (all when None) and pads
    (NaN) or truncates the route to :data:`ROUTE_WAYPOINTS` rows (an empty route is all NaN)."""
    t = np.asarray(ego_history.t_us)
    keep = int(np.searchsorted(t, int(t_us), side="right"))
    lo = 0 if history_poses is None else max(keep - int(history_poses), 0)
    if lo != 0 or keep != len(t):
        h = ego_history
        ego_history = EgoHistory(h.t_us[lo:keep], h.xyz_local[lo:keep], h.quat_local[lo:keep],
                                 h.velocity_rig_mps[lo:keep], h.accel_rig_mps2[lo:keep], h.yaw_rate_radps[lo:keep])
    route = np.asarray(route_rig, dtype=np.float64)
    if route.size == 0:
        route = route.reshape(0, 3)
    if route.ndim != 2 or route.shape[1] != 3:
        raise ValueError(f"route waypoints must be (N, 3) in the rig frame, got shape {route.shape}")
    if len(route) != ROUTE_WAYPOINTS:
        padded = np.full((ROUTE_WAYPOINTS, 3), np.nan)
        padded[: min(len(route), ROUTE_WAYPOINTS)] = route[:ROUTE_WAYPOINTS]
        route = padded
    return Observation(t_us=int(t_us), cameras=dict(frames), ego_history=ego_history, route_rig=route,
                       nav_text=nav_text)


@dataclass(frozen=True, eq=False)
class SimEndpoints:
    """Other implementations of AlpaSim's service roles (None = the in-process function).

    - ``controller.track(ego, plan, t_us, t_next_us) -> AgentState`` (``controller="tracking"``)
      and ``controller.force_gt(ego, ego_gt_next, t_us, t_next_us)`` (AlpaSim still calls the
      controller during force-GT and discards its answer; keeps timestamps chained).
    - ``physics.ground(ego_next, t_us, t_next_us) -> AgentState`` (not during force-GT).
    - ``traffic.step(ego_next, t_us, dt_us) -> dict[str, AgentState]`` actor box states at t + dt.
    - ``hooks``: objects with any of ``before_start(sim)`` (before ``policy.start``),
      ``after_start(sim)``, ``after_commit(sim)`` (after every commit), ``on_close(sim, rollout)``.

    Snapshots do not include the state held by remote services."""

    controller: object | None = None
    physics: object | None = None
    traffic: object | None = None
    hooks: tuple = ()

    def call_hooks(self, name: str, *args) -> None:
        for h in self.hooks:
            fn = getattr(h, name, None)
            if fn is not None:
                fn(*args)


_NO_ENDPOINTS = SimEndpoints()


@dataclass(frozen=True, eq=False)
class SimSnapshot:
    t_us: int
    ego: AgentState
    controller: ControllerState
    traffic: TrafficState
    history: tuple[tuple[int, AgentState], ...]
    records: tuple[StepRecord, ...]
    rng_state: dict
    finished: bool
    started: bool


class Simulator:
    """Runs one policy on one scenario; see the module docstring for the loop."""

    def __init__(self, scenario: Scenario, policy: Policy, config: SimConfig = SimConfig(), renderer: Renderer | None = None,
                 rollout_id: str | None = None, seed: int = 0, reference: Rollout | None = None,
                 endpoints: SimEndpoints | None = None):
        self.scenario = scenario
        self.endpoints = endpoints or _NO_ENDPOINTS
        if config.wire_precision:
            from cordillera.serve.mirror import wire_precision_roles

            policy, self.endpoints = wire_precision_roles(policy, self.endpoints, config)
        self.policy = policy
        self.config = config
        self.renderer = renderer
        self.seed = int(seed)
        self.reference = reference
        self.rollout_id = rollout_id or str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"cordillera/{scenario.id}/{getattr(policy, 'name', '?')}/{seed}"))
        dt = config.control_period_us
        if scenario.duration_us % dt:
            raise ValueError(f"scenario duration {scenario.duration_us} µs is not a multiple of the control period {dt} µs")
        fgt = scenario.force_gt_duration_us if config.force_gt_duration_us is None else config.force_gt_duration_us
        if fgt % dt:
            raise ValueError(f"force_gt_duration_us={fgt} must be a multiple of the control period {dt} µs")
        self.force_gt_end_us = int(fgt)
        self.end_us = int(scenario.duration_us)
        if config.cameras:
            if renderer is None:
                raise ValueError(f"config.cameras={config.cameras} needs a renderer")
            missing = set(config.cameras) - set(renderer.cameras())
            if missing:
                raise ValueError(f"renderer has no cameras {sorted(missing)}; it offers {renderer.cameras()}")
        self._route = Lane("__ego_route__", scenario.route_polyline_xy(),
                           width_m=scenario.map.lane(scenario.ego.route_lane_ids[0]).width_m)
        self._ref_ego = ({s.t_us: s.ego for s in reference.steps} if reference is not None else {})
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._init_state()

    # -- state -----------------------------------------------------------------------------------
    def _init_state(self) -> None:
        e = self.scenario.ego
        dt = self.config.control_period_us
        self._t_us = 0
        self._ego = AgentState(x_m=e.x_m, y_m=e.y_m, yaw_rad=e.yaw_rad, speed_mps=e.speed_mps)
        if 0 in self._ref_ego:
            self._ego = self._ref_ego[0]
        self._ctrl = ControllerState()
        self._traffic = init_traffic(self.scenario, self.reference)
        c, s = math.cos(e.yaw_rad), math.sin(e.yaw_rad)
        hist = []
        for k in range(self.config.history_poses - 1, 0, -1):  # seeded history before t = 0
            d = e.speed_mps * k * dt * 1e-6
            hist.append((-k * dt, replace(self._ego, x_m=self._ego.x_m - d * c, y_m=self._ego.y_m - d * s)))
        hist.append((0, self._ego))
        self._history = hist
        self._records: list[StepRecord] = []
        self._rng = np.random.default_rng(self.seed)
        self._finished = False
        self._started = False

    @property
    def t_us(self) -> int:
        return self._t_us

    @property
    def world_state(self) -> WorldState:
        return WorldState(self._t_us, self._ego, dict(self._traffic.states), signal_states(self.scenario, self._t_us))

    @property
    def records(self) -> list[StepRecord]:
        return list(self._records)

    def session_info(self) -> SessionInfo:
        return SessionInfo(session_uuid=self.rollout_id, scenario_id=self.scenario.id, seed=self.seed,
                           camera_names=self.config.cameras, control_period_us=self.config.control_period_us,
                           nav_text=self.scenario.ego.nav_text)

    def reset(self) -> None:
        """Back to t = 0 and (re)start the policy session."""
        self._init_state()
        self.endpoints.call_hooks("before_start", self)
        try:
            self.policy.start(self.session_info())
        except Exception as e:  # noqa: BLE001 - any policy error fails the rollout
            raise _PolicyFailure(f"policy raised {type(e).__name__} in start(): {e}") from e
        self._started = True
        self.endpoints.call_hooks("after_start", self)

    def done(self) -> bool:
        return self._finished

    def snapshot(self) -> SimSnapshot:
        """Everything needed to continue identically (the policy's own memory is not included).
        Step records are immutable once written, so they are shared, not copied."""
        return SimSnapshot(self._t_us, self._ego, self._ctrl, copy.deepcopy(self._traffic), tuple(self._history),
                           tuple(self._records), copy.deepcopy(self._rng.bit_generator.state), self._finished,
                           self._started)

    def restore(self, snap: SimSnapshot) -> None:
        self._t_us = snap.t_us
        self._ego = snap.ego
        self._ctrl = snap.controller
        self._traffic = copy.deepcopy(snap.traffic)
        self._history = list(snap.history)
        self._records = list(snap.records)
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = copy.deepcopy(snap.rng_state)
        self._finished = snap.finished
        self._started = snap.started

    # -- the loop --------------------------------------------------------------------------------
    def step(self) -> StepRecord:
        """One control period in AlpaSim's order. Raises on policy failure (``run`` catches it)."""
        if self._finished:
            raise RuntimeError(f"rollout already finished at t={self._t_us}")
        if not self._started:
            self.reset()
        cfg = self.config
        t, dt = self._t_us, cfg.control_period_us
        ws = self.world_state
        timing: dict[str, float] = {}

        # 1. cameras: frames ending at t, rendered from the committed state --------------------------
        c0 = time.perf_counter()
        frames = {}
        for cam in cfg.cameras:
            img = self.renderer.render(ws, cam, t - SHUTTER_US, t)
            frames[cam] = CameraFrame(img, t - SHUTTER_US, t)
        timing["render"] = (time.perf_counter() - c0) * 1e3

        # 2. policy ---------------------------------------------------------------------------------
        c0 = time.perf_counter()
        force_gt = t + dt <= self.force_gt_end_us
        obs = build_observation(t, frames, self._ego_history(), route_waypoints_rig(self._route, self._ego),
                                self.scenario.ego.nav_text)
        plan = self._call_policy(ws, obs, t, t + dt)
        plan, error = self._check_plan(plan, t, force_gt)
        timing["policy"] = (time.perf_counter() - c0) * 1e3
        record = StepRecord(t_us=t, ego=self._ego, actors=ws.actors, signals=ws.signals, plan=plan, force_gt=force_gt,
                            frames=frames if cfg.keep_images else None, timing_ms=timing)
        self._records.append(record)
        if error is not None:
            self._finished = True
            raise _PolicyFailure(error)
        if t >= self.end_us:
            self._finished = True
            return record

        # 3. controller (+ 4. physics: flat ground, nothing to do) --------------------------------------
        c0 = time.perf_counter()
        ep = self.endpoints
        if force_gt:
            ego_next = self._ground_truth(t + dt)
            self._ctrl = ControllerState()
            if ep.controller is not None:
                ep.controller.force_gt(self._ego, ego_next, t, t + dt)
        elif cfg.controller == "perfect":
            ego_next = perfect_step(self._ego, plan_to_local(plan.t_us, plan.xyz_rig, plan.yaw_rig, self._ego), t + dt)
        elif ep.controller is not None:
            ego_next = ep.controller.track(self._ego, plan, t, t + dt)
        else:
            tr = plan_to_local(plan.t_us, plan.xyz_rig, plan.yaw_rig, self._ego)
            ego_next, self._ctrl = track(self._ego, tr, self._ctrl, t, t + dt, cfg.physics_substep_us)
        ego_next = replace(ego_next, yaw_rad=_wrap(ego_next.yaw_rad))
        if ep.physics is not None and not force_gt:
            ego_next = ep.physics.ground(ego_next, t, t + dt)
        timing["controller"] = (time.perf_counter() - c0) * 1e3

        # 5. traffic --------------------------------------------------------------------------------
        c0 = time.perf_counter()
        if ep.traffic is not None:
            self._traffic = replace(self._traffic, t_us=t + dt, states=dict(ep.traffic.step(ego_next, t, dt)))
        else:
            self._traffic, _ = step_traffic(self._traffic, self.scenario, ego_next, t, dt)
        timing["traffic"] = (time.perf_counter() - c0) * 1e3

        # 6. step: commit -------------------------------------------------------------------------------
        self._ego = ego_next
        self._t_us = t + dt
        self._history.append((self._t_us, ego_next))
        if len(self._history) > cfg.history_poses:
            del self._history[: len(self._history) - cfg.history_poses]
        ep.call_hooks("after_commit", self)
        return record

    def run(self) -> Rollout:
        """reset + steps until done. Policy errors/timeouts → ``Rollout(status="failed", error=...)``."""
        c0 = time.perf_counter()
        rollout = Rollout(scenario_id=self.scenario.id, rollout_id=self.rollout_id,
                          policy_name=getattr(self.policy, "name", type(self.policy).__name__), seed=self.seed,
                          force_gt_end_us=self.force_gt_end_us)
        try:
            self.reset()
            while not self.done():
                self.step()
        except _PolicyFailure as e:
            rollout.status, rollout.error = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - a broken renderer or a simulator bug must not kill a batch
            rollout.status, rollout.error = "failed", f"simulator error: {type(e).__name__}: {e}"
        finally:
            try:
                self.policy.close()
            except Exception as e:  # noqa: BLE001
                if rollout.error is None:
                    rollout.status, rollout.error = "failed", f"policy raised {type(e).__name__} in close(): {e}"
            self._shutdown_executor(wait=rollout.error is None or "timed out" not in rollout.error)
        rollout.steps = list(self._records)
        try:
            self.endpoints.call_hooks("on_close", self, rollout)
        except Exception as e:  # noqa: BLE001 - closing remote sessions must not lose the rollout
            if rollout.error is None:
                rollout.status, rollout.error = "failed", f"closing services failed: {type(e).__name__}: {e}"
        rollout.wall_time_s = time.perf_counter() - c0
        return rollout

    # -- helpers -----------------------------------------------------------------------------------
    def _call_policy(self, ws: WorldState, obs: Observation, t: int, t_query: int):
        def call():
            if hasattr(self.policy, "observe_world"):
                self.policy.observe_world(ws, self.scenario)
            return self.policy.plan(obs, t, t_query)

        timeout = self.config.policy_timeout_s
        try:
            if timeout is None or timeout <= 0:
                return call()
            if getattr(self.policy, "runs_inline", False):
                # bounded in-process policy: no worker-thread hand-off (≈ 10 % of a step), the
                # timeout is checked when it returns
                c0 = time.perf_counter()
                plan = call()
                if time.perf_counter() - c0 > timeout:
                    raise _PolicyFailure(f"policy timed out after {timeout} s at t={t}")
                return plan
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
            fut = self._executor.submit(call)
            try:
                return fut.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                raise _PolicyFailure(f"policy timed out after {timeout} s at t={t}") from None
        except _PolicyFailure:
            raise
        except Exception as e:  # noqa: BLE001
            raise _PolicyFailure(f"policy raised {type(e).__name__}: {e}") from e

    def _check_plan(self, plan, t: int, force_gt: bool) -> tuple[Plan | None, str | None]:
        """(plan to record, error message or None). Bad answers are tolerated during force-GT."""
        if not isinstance(plan, Plan):
            msg = f"invalid plan at t={t}: policy returned {type(plan).__name__}, expected Plan"
            return None, (None if force_gt else msg)
        if plan.warming_up:
            return plan, (None if force_gt else f"invalid plan at t={t}: warming_up plan after the force-GT warm-up ended")
        try:
            plan.validate(t)
        except ValueError as e:
            return None, (None if force_gt else f"invalid plan at t={t}: {e}")
        return plan, None

    def _ego_history(self) -> EgoHistory:
        return ego_history_from_states(self._history[-self.config.history_poses:])

    def _ground_truth(self, t_us: int) -> AgentState:
        """Ego at ``t_us`` on the ground truth: the reference rollout, else the lane-keeping rule."""
        ref = self._ref_ego.get(t_us)
        if ref is not None:
            return ref
        if self.reference is not None and self.reference.steps:
            tr = self.reference.t_us()
            if tr[0] <= t_us <= tr[-1]:
                i = int(np.searchsorted(tr, t_us)) - 1
                a, b = self.reference.steps[i].ego, self.reference.steps[i + 1].ego
                u = (t_us - tr[i]) / (tr[i + 1] - tr[i])
                return replace(a, x_m=a.x_m + u * (b.x_m - a.x_m), y_m=a.y_m + u * (b.y_m - a.y_m),
                               yaw_rad=a.yaw_rad + u * _wrap(b.yaw_rad - a.yaw_rad),
                               speed_mps=a.speed_mps + u * (b.speed_mps - a.speed_mps))
        # lane keeping: advance along the route at the current speed, keep the lateral offset
        dt = (t_us - self._t_us) * 1e-6
        s, r = (float(v[0]) for v in lane_frenet(self._route, (self._ego.x_m, self._ego.y_m)))
        v = self._ego.speed_mps
        s1 = s + v * dt
        x, y = self._route.position(s1, r)
        yaw1 = float(self._route.heading_at(s1))
        yaw0 = float(self._route.heading_at(s))
        return AgentState(x_m=float(x), y_m=float(y), yaw_rad=yaw1, speed_mps=v,
                          yaw_rate_radps=_wrap(yaw1 - yaw0) / dt if dt > 0 else 0.0)

    def _shutdown_executor(self, wait: bool) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None


def run_rollout(scenario: Scenario, policy: Policy, config: SimConfig = SimConfig(), renderer: Renderer | None = None,
                rollout_id: str | None = None, seed: int = 0, reference: Rollout | None = None,
                endpoints: SimEndpoints | None = None) -> Rollout:
    return Simulator(scenario, policy, config, renderer, rollout_id, seed, reference, endpoints).run()
