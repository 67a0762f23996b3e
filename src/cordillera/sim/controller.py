"""Plan tracking: pure pursuit + speed PID on AlpaSim's bicycle, or perfect tracking.

AlpaSim tracks the driver's plan with an MPC over its 8-state bicycle (spec/alpasim.md §2.4). We
use the classic pair instead, because it is short, has no solver dependency and tracks the 10 Hz
replanned trajectories just as well at urban speeds:

- lateral: **pure pursuit** on the plan path (local frame), lookahead
  ``Ld = max(lookahead_min_m, lookahead_time_s · v)``; target point = plan point at arc length
  ``s_ego + Ld`` (the path is extended along its last heading); curvature ``κ = 2 y / Ld²`` with
  (x, y) the target in the rig frame; steering command ``atan(κ L)``.
- longitudinal: the plan is a *time-parametrised* path, so it carries a speed profile. Command =
  feed-forward plan acceleration + PI on speed error + P on along-track position error
  (``s_plan(t) − s_ego``), which removes the drift a pure speed loop accumulates.

Both commands are recomputed every physics sub-step (``SimConfig.physics_substep_us``) and fed to
:func:`cordillera.sim.dynamics.step_bicycle`, whose actuator lags (τ = 0.1 s) the gains are tuned
for. ``perfect`` mode is AlpaSim's controller skip: the next pose is the plan interpolated at
``t + dt`` (we also fill speed, acceleration and yaw rate from the plan instead of AlpaSim's zeros).

Measured tracking error (tests/sim/test_sim_controller.py, one plan tracked open-loop for 6 s, 10 ms
sub-steps, AlpaSim vehicle; lateral error = distance to the planned path):

| plan (start speed 10 m/s)              | mean lateral error | max lateral error | final along-track error |
|----------------------------------------|--------------------|-------------------|-------------------------|
| arc, radius 50 m                       | 0.07 m             | 0.16 m            | 0.04 m                  |
| lane change 3.6 m in 3 s (cosine)      | 0.04 m             | 0.16 m            | 0.01 m                  |
| straight, 10 → 0 m/s stop at 2 m/s²    | 0.00 m             | 0.00 m            | 0.00 m (stop point)     |

The maxima are the start transient (steering and yaw rate start at 0 and lag by τ = 0.1 s).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from cordillera.sim.dynamics import ALPASIM_VEHICLE, VehicleParams, step_bicycle
from cordillera.world.scenario import AgentState

__all__ = [
    "ControllerParams",
    "ControllerState",
    "PlanTrack",
    "plan_to_local",
    "control",
    "track",
    "perfect_step",
]


@dataclass(frozen=True)
class ControllerParams:
    lookahead_min_m: float = 4.0  # [m]
    lookahead_time_s: float = 0.6  # [s] Ld grows with speed
    speed_kp_per_s: float = 1.5  # [1/s] accel per m/s speed error
    speed_ki_per_s2: float = 0.3  # [1/s²]
    position_kp_per_s2: float = 0.6  # [1/s²] accel per m along-track error
    integral_limit_mps: float = 2.0  # anti wind-up on the speed-error integral [m·s/s]
    # standing still, the brake holds while the plan moves less than hold_move_m within
    # hold_lookahead_s: a plan that starts from rest (jerk-limited, ~0.07 m in its first 0.5 s)
    # must still release it, or a planner replanning every step never gets going again
    hold_lookahead_s: float = 1.0  # [s]
    hold_move_m: float = 0.3  # [m]


DEFAULT_CONTROLLER = ControllerParams()


@dataclass(frozen=True)
class ControllerState:
    """The only memory of the controller: the speed-error integral."""

    speed_error_integral_m: float = 0.0


@dataclass(frozen=True, eq=False)
class PlanTrack:
    """A plan expressed in the local frame with its arc length and speed profile precomputed."""

    t_us: np.ndarray  # (T,) int64
    xy: np.ndarray  # (T, 2) local [m]
    yaw: np.ndarray  # (T,) local, unwrapped [rad]
    s_m: np.ndarray  # (T,) cumulative arc length along xy
    speed_mps: np.ndarray  # (T,) speed profile at the samples
    accel_mps2: np.ndarray  # (T,) d speed / dt at the samples

    # Scalar queries run every physics sub-step, so they use Python lists and bisect rather than
    # numpy calls on tiny arrays (several times faster for 65-point plans).
    @cached_property
    def _lists(self):
        a = self.xy[:-1]
        d = np.diff(self.xy, axis=0)
        l2 = np.einsum("ij,ij->i", d, d)
        ok = l2 > 1e-12
        segs = list(zip(*(v.tolist() for v in (a[ok, 0], a[ok, 1], d[ok, 0], d[ok, 1], l2[ok], self.s_m[:-1][ok]))))
        return (self.t_us.astype(np.float64).tolist(), self.s_m.tolist(), self.xy[:, 0].tolist(),
                self.xy[:, 1].tolist(), self.speed_mps.tolist(), self.accel_mps2.tolist(), segs)

    def _interp(self, xq: float, xs: list, ys: list) -> float:
        if xq <= xs[0]:
            return ys[0]
        if xq >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, xq) - 1
        x0, x1 = xs[i], xs[i + 1]
        if x1 <= x0:
            return ys[i + 1]
        return ys[i] + (xq - x0) / (x1 - x0) * (ys[i + 1] - ys[i])

    def profile_at(self, t_us: float) -> tuple[float, float, float]:
        """(arc length, speed, acceleration) of the plan at ``t_us`` (clamped to its range)."""
        t, s, _, _, v, a, _ = self._lists
        tq = float(t_us)
        if tq <= t[0]:
            return s[0], v[0], a[0]
        if tq >= t[-1]:
            return s[-1], v[-1], a[-1]
        i = bisect.bisect_right(t, tq) - 1
        w = (tq - t[i]) / (t[i + 1] - t[i])
        return s[i] + w * (s[i + 1] - s[i]), v[i] + w * (v[i + 1] - v[i]), a[i] + w * (a[i + 1] - a[i])

    def s_at(self, t_us: float) -> float:
        t, s = self._lists[0], self._lists[1]
        return self._interp(float(t_us), t, s)

    def speed_at(self, t_us: float) -> float:
        return self._interp(float(t_us), self._lists[0], self._lists[4])

    def accel_at(self, t_us: float) -> float:
        return self._interp(float(t_us), self._lists[0], self._lists[5])

    def point_at_s(self, s: float) -> tuple[float, float]:
        """Point at arc length s, extended along the last segment's heading beyond the end."""
        _, ss, xs, ys, _, _, segs = self._lists
        if s >= ss[-1]:
            if segs:
                _, _, dx, dy, l2, _ = segs[-1]
                n = math.sqrt(l2)
                hx, hy = dx / n, dy / n
            else:
                hx, hy = math.cos(float(self.yaw[-1])), math.sin(float(self.yaw[-1]))
            ex = s - ss[-1]
            return xs[-1] + ex * hx, ys[-1] + ex * hy
        return self._interp(s, ss, xs), self._interp(s, ss, ys)

    def project(self, x: float, y: float) -> tuple[float, float]:
        """(arc length, signed lateral offset left +) of point (x, y) on the path.

        Walks from the previous answer's segment (the ego moves little between sub-steps) to the
        segment whose foot point lies inside it; beyond the last point the last segment is extended."""
        segs = self._lists[6]
        if not segs:  # stationary plan
            return 0.0, 0.0
        i = self.__dict__.get("_hint", 0)

        def u_of(k):
            ax, ay, dx, dy, l2, _ = segs[k]
            return ((x - ax) * dx + (y - ay) * dy) / l2

        u = u_of(i)
        while u > 1.0 and i < len(segs) - 1:
            i += 1
            u = u_of(i)
        while u < 0.0 and i > 0:
            i -= 1
            u = u_of(i)
        self.__dict__["_hint"] = i
        ax, ay, dx, dy, l2, s0 = segs[i]
        u = max(u, 0.0) if i == len(segs) - 1 else min(max(u, 0.0), 1.0)
        seg = math.sqrt(l2)
        lat = (dx * (y - ay) - dy * (x - ax)) / seg
        return s0 + u * seg, lat


def _understeer_gradient(p: VehicleParams) -> float:
    """K_us [rad/(m/s²)] = W_f/C_f − W_r/C_r (axle loads in kg): steady-state steering needed
    beyond the kinematic atan(κL) per m/s² of lateral acceleration (0.0070 for AlpaSim's car)."""
    load_f = p.mass_kg * p.rear_axle_to_cg_m / p.wheelbase_m
    load_r = p.mass_kg * p.cg_to_front_axle_m / p.wheelbase_m
    return load_f / p.cornering_stiffness_front_npr - load_r / p.cornering_stiffness_rear_npr


def plan_to_local(plan_t_us, xyz_rig, yaw_rig, ego: AgentState) -> PlanTrack:
    """Express a rig-frame plan (at the ego pose ``ego``) in the local frame."""
    t = np.asarray(plan_t_us, dtype=np.int64)
    p = np.asarray(xyz_rig, dtype=np.float64)[:, :2]
    c, s = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    xy = np.stack([ego.x_m + c * p[:, 0] - s * p[:, 1], ego.y_m + s * p[:, 0] + c * p[:, 1]], axis=-1)
    yaw = np.unwrap(ego.yaw_rad + np.asarray(yaw_rig, dtype=np.float64))
    seg = np.hypot(*np.diff(xy, axis=0).T)
    s_m = np.concatenate([[0.0], np.cumsum(seg)])
    dt = np.diff(t) * 1e-6
    seg_v = seg / dt  # mean speed of each segment = speed at the segment's mid time
    t_mid = 0.5 * (t[:-1] + t[1:]).astype(np.float64)
    if len(seg_v) >= 3:
        # Pose 0 is by convention the current pose; when the ego lags a replayed trajectory the
        # first segment carries a catch-up jump. The speed profile is therefore built from
        # segments 1.. and extrapolated linearly back to t0 (the along-track position term closes
        # any gap); a feed-forward taken from the jump would brake the car into a stall.
        tm, vm = t_mid[1:], seg_v[1:]
        seg_acc = np.diff(vm) / (np.diff(tm) * 1e-6)
        acc = np.interp(t.astype(np.float64), 0.5 * (tm[:-1] + tm[1:]), seg_acc)
        v = np.interp(t.astype(np.float64), tm, vm)
        early = t < tm[0]
        v[early] = np.maximum(vm[0] + seg_acc[0] * (t[early] - tm[0]) * 1e-6, 0.0)
    else:
        v = np.interp(t.astype(np.float64), t_mid, seg_v)
        acc = np.zeros_like(v)
    return PlanTrack(t, xy, yaw, s_m, v, acc)


def control(
    state: AgentState,
    track: PlanTrack,
    t_us: int,
    cstate: ControllerState,
    dt_us: int,
    params: ControllerParams = DEFAULT_CONTROLLER,
    vehicle: VehicleParams = ALPASIM_VEHICLE,
) -> tuple[float, float, ControllerState]:
    """Commands (accel [m/s²], steering [rad]) for the next ``dt_us`` and the updated memory."""
    v = state.speed_mps
    s_ego, _ = track.project(state.x_m, state.y_m)
    # -- lateral: pure pursuit ------------------------------------------------------------------
    ld = max(params.lookahead_min_m, params.lookahead_time_s * v)
    tx, ty = track.point_at_s(s_ego + ld)
    dx, dy = tx - state.x_m, ty - state.y_m
    c, s = math.cos(state.yaw_rad), math.sin(state.yaw_rad)
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    d2 = lx * lx + ly * ly
    kappa = 2.0 * ly / d2 if d2 > 1e-6 else 0.0
    steer = math.atan(kappa * vehicle.wheelbase_m)
    if v >= vehicle.kinematic_below_mps:  # the dynamic model understeers: add K_us · a_lat
        steer += _understeer_gradient(vehicle) * v * v * kappa
    # -- longitudinal: feed-forward + PI on speed + P on along-track position ----------------------
    s_ref, v_ref, a_ref = track.profile_at(t_us)
    err_v = v_ref - v
    integ = cstate.speed_error_integral_m + err_v * dt_us * 1e-6
    integ = min(max(integ, -params.integral_limit_mps), params.integral_limit_mps)
    accel = a_ref + params.speed_kp_per_s * err_v + params.speed_ki_per_s2 * integ
    accel += params.position_kp_per_s2 * (s_ref - s_ego)
    if v_ref < 0.05 and v < 0.5:  # plan stopped here now: hold the brake unless it moves off soon
        s_soon = track.profile_at(t_us + params.hold_lookahead_s * 1e6)[0]
        if s_soon - s_ego < params.hold_move_m:
            accel = min(accel, -1.0)
            integ = 0.0
    return accel, steer, ControllerState(integ)


def track(
    state: AgentState,
    track_: PlanTrack,
    cstate: ControllerState,
    t_us: int,
    t_next_us: int,
    substep_us: int,
    params: ControllerParams = DEFAULT_CONTROLLER,
    vehicle: VehicleParams = ALPASIM_VEHICLE,
) -> tuple[AgentState, ControllerState]:
    """Run controller + bicycle from ``t_us`` to ``t_next_us`` in sub-steps of ``substep_us``."""
    if substep_us <= 0:
        raise ValueError(f"substep_us must be > 0, got {substep_us}")
    t = t_us
    while t < t_next_us:
        h = min(substep_us, t_next_us - t)
        accel, steer, cstate = control(state, track_, t, cstate, h, params, vehicle)
        state = step_bicycle(state, accel, steer, h, vehicle)
        t += h
    return state, cstate


def perfect_step(state: AgentState, track_: PlanTrack, t_next_us: int) -> AgentState:
    """AlpaSim controller skip: the pose of the plan at ``t_next_us`` (clamped to its range)."""
    t = track_.t_us
    tq = float(min(max(t_next_us, t[0]), t[-1]))
    x = float(np.interp(tq, t, track_.xy[:, 0]))
    y = float(np.interp(tq, t, track_.xy[:, 1]))
    yaw = float(np.interp(tq, t, track_.yaw))
    i = int(np.clip(np.searchsorted(t, tq, side="right") - 1, 0, len(t) - 2))
    dt = (t[i + 1] - t[i]) * 1e-6
    yaw_rate = float(track_.yaw[i + 1] - track_.yaw[i]) / dt
    v = float(np.interp(tq, t, track_.speed_mps))
    a = float(np.interp(tq, t, track_.accel_mps2))
    yaw = math.atan2(math.sin(yaw), math.cos(yaw))
    return replace(state, x_m=x, y_m=y, yaw_rad=yaw, speed_mps=v, accel_mps2=a, yaw_rate_radps=yaw_rate,
                   lat_speed_mps=0.0, steering_rad=math.atan(yaw_rate / v * ALPASIM_VEHICLE.wheelbase_m) if v > 0.1 else 0.0)
