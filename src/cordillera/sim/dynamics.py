"""Ego vehicle models: a kinematic unicycle and AlpaSim's planar bicycle (spec/alpasim.md §2.4).

Frames and state
----------------
Both models advance an :class:`~cordillera.world.scenario.AgentState` whose pose is the **rig
origin** (rear-axle centre on the ground) in the ``local`` frame (x east, y north, z up):

- ``x_m, y_m``: rig origin in local [m]; ``yaw_rad``: heading of the rig x axis about +z.
- ``speed_mps``: longitudinal velocity, rig x component. It is the same at every point of the
  rigid body, so it is also AlpaSim's ``vx_cg``. Never negative (no reverse, as AlpaSim).
- ``lat_speed_mps``: lateral velocity of the rig origin, rig y component (left +). The CG lateral
  velocity is ``lat_speed_mps + REAR_AXLE_TO_CG_M * yaw_rate_radps``.
- ``yaw_rate_radps``: about +z (left turn +).
- ``accel_mps2``, ``steering_rad``: the *actual* longitudinal acceleration and front-wheel angle,
  i.e. the states of the first-order actuator lags (commanded values are inputs).

``step`` (kinematic) is what traffic, the force-GT rule and hand-derived tests use:
``dx = v cos(yaw)``, ``dy = v sin(yaw)``, ``dyaw = v κ``, ``dv = a``, integrated exactly for
constant (a, κ) — with constant curvature the path is a circle of radius 1/κ whatever the speed
profile, so the step lands exactly on it.

``step_bicycle`` is AlpaSim's 8-state planar bicycle: states (x, y, yaw, vx, vy, yaw rate,
steering, accel), first-order steering and acceleration lags (τ = 0.1 s), kinematic below 5 m/s,
linear-tyre dynamic model above, RK2 (midpoint) with sub-steps ≤ 10 ms, vx clamped ≥ 0.
Longitudinal dynamics are ``dvx/dt = accel`` (the accel state already is the net longitudinal
acceleration; no drag or load transfer — AlpaSim's model has none of those either).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from cordillera.world.scenario import AgentState

__all__ = [
    "VehicleParams",
    "ALPASIM_VEHICLE",
    "step",
    "step_bicycle",
    "curvature_to_steering_rad",
    "steering_to_curvature_1pm",
]


@dataclass(frozen=True)
class VehicleParams:
    """Planar bicycle parameters; defaults are AlpaSim's controller vehicle (spec/alpasim.md §2.4)."""

    mass_kg: float = 2014.4  # spec/alpasim.md §2.4
    yaw_inertia_kgm2: float = 3414.2  # Iz, spec/alpasim.md §2.4
    rear_axle_to_cg_m: float = 1.59  # spec/alpasim.md §2.4
    wheelbase_m: float = 2.85  # spec/alpasim.md §2.4
    cornering_stiffness_front_npr: float = 93534.5  # Cf [N/rad], spec/alpasim.md §2.4
    cornering_stiffness_rear_npr: float = 176162.1  # Cr [N/rad], spec/alpasim.md §2.4
    steering_time_constant_s: float = 0.1  # τ, spec/alpasim.md §2.4
    accel_time_constant_s: float = 0.1  # τ, spec/alpasim.md §2.4
    kinematic_below_mps: float = 5.0  # spec/alpasim.md §2.4
    max_substep_us: int = 10_000  # RK2 sub-step bound, spec/alpasim.md §2.4
    max_steering_rad: float = math.pi / 4  # MPC steering bound, spec/alpasim.md §2.4
    min_accel_mps2: float = -9.0  # MPC input bounds, spec/alpasim.md §2.4
    max_accel_mps2: float = 6.0

    @property
    def cg_to_front_axle_m(self) -> float:
        return self.wheelbase_m - self.rear_axle_to_cg_m


ALPASIM_VEHICLE = VehicleParams()


def curvature_to_steering_rad(curvature_1pm: float, wheelbase_m: float = ALPASIM_VEHICLE.wheelbase_m) -> float:
    """Front-wheel angle of a kinematic rear-axle bicycle following curvature κ: atan(κ L)."""
    return math.atan(curvature_1pm * wheelbase_m)


def steering_to_curvature_1pm(steering_rad: float, wheelbase_m: float = ALPASIM_VEHICLE.wheelbase_m) -> float:
    return math.tan(steering_rad) / wheelbase_m


def _check_dt(dt_us) -> float:
    if not isinstance(dt_us, int) or isinstance(dt_us, bool):
        raise ValueError(f"dt_us must be an int number of microseconds, got {dt_us!r}")
    if dt_us < 0:
        raise ValueError(f"dt_us must be >= 0, got {dt_us}")
    return dt_us * 1e-6


def step(state: AgentState, accel_mps2: float, curvature_1pm: float, dt_us: int) -> AgentState:
    """Kinematic unicycle step at the rig origin, exact for constant (accel, curvature).

    Speed stays ≥ 0: a deceleration that would reverse the vehicle stops it where v reaches 0.
    Returns a new state with ``accel_mps2`` = the applied acceleration (0 once stopped),
    ``yaw_rate_radps = v κ`` at the end of the step, zero lateral speed and the steering angle
    of a kinematic bicycle on that curvature."""
    dt = _check_dt(dt_us)
    if not (math.isfinite(accel_mps2) and math.isfinite(curvature_1pm)):
        raise ValueError(f"accel/curvature must be finite, got {accel_mps2}, {curvature_1pm}")
    v0 = state.speed_mps
    a = accel_mps2
    v1 = v0 + a * dt
    if v1 < 0.0:  # stops within the step
        ds = 0.5 * v0 * v0 / -a if a < 0 else 0.0
        v1 = 0.0
        a_out = 0.0
    else:
        ds = 0.5 * (v0 + v1) * dt
        a_out = a
    k = curvature_1pm
    dyaw = k * ds
    yaw0 = state.yaw_rad
    if abs(dyaw) < 1e-9:
        # chord of a (near) straight arc: second-order accurate, exact in the limit
        mid = yaw0 + 0.5 * dyaw
        dx, dy = ds * math.cos(mid), ds * math.sin(mid)
    else:
        yaw1 = yaw0 + dyaw
        dx = (math.sin(yaw1) - math.sin(yaw0)) / k
        dy = (math.cos(yaw0) - math.cos(yaw1)) / k
    return replace(
        state,
        x_m=state.x_m + dx,
        y_m=state.y_m + dy,
        yaw_rad=yaw0 + dyaw,
        speed_mps=v1,
        accel_mps2=a_out,
        yaw_rate_radps=v1 * k,
        lat_speed_mps=0.0,
        steering_rad=curvature_to_steering_rad(k),
    )


def _derivatives(x, y, yaw, vx, vy_cg, r, delta, acc, delta_cmd, acc_cmd, p: VehicleParams):
    """Time derivatives of the 8 states; (vx, vy_cg, r) are CG velocities in the rig frame."""
    lr = p.rear_axle_to_cg_m
    lf = p.cg_to_front_axle_m
    c, s = math.cos(yaw), math.sin(yaw)
    if vx < p.kinematic_below_mps:
        # kinematic bicycle: rear wheel does not slip, yaw rate and vy are algebraic
        r = vx * math.tan(delta) / p.wheelbase_m
        vy_cg = lr * r
        dr = 0.0
        dvy = 0.0
    else:
        alpha_f = delta - math.atan2(vy_cg + lf * r, vx)
        alpha_r = -math.atan2(vy_cg - lr * r, vx)
        fyf = p.cornering_stiffness_front_npr * alpha_f
        fyr = p.cornering_stiffness_rear_npr * alpha_r
        dvy = (fyf * math.cos(delta) + fyr) / p.mass_kg - vx * r
        dr = (lf * fyf * math.cos(delta) - lr * fyr) / p.yaw_inertia_kgm2
    vy_rig = vy_cg - lr * r  # lateral velocity of the rear-axle centre
    dx = vx * c - vy_rig * s
    dy = vx * s + vy_rig * c
    ddelta = (delta_cmd - delta) / p.steering_time_constant_s
    dacc = (acc_cmd - acc) / p.accel_time_constant_s
    return dx, dy, r, acc, dvy, dr, ddelta, dacc


def step_bicycle(
    state: AgentState,
    accel_cmd_mps2: float,
    steering_cmd_rad: float,
    dt_us: int,
    params: VehicleParams = ALPASIM_VEHICLE,
) -> AgentState:
    """Advance the planar bicycle by ``dt_us`` under constant commands (pure).

    Commands are clipped to AlpaSim's input bounds (steering ±π/4, accel [−9, 6] m/s²) and pass
    through first-order lags. Integration: explicit midpoint (RK2) with ``ceil(dt / 10 ms)``
    equal sub-steps; vx is clamped ≥ 0 after every sub-step (a stopped car stays stopped and
    its yaw rate and lateral speed are zeroed)."""
    dt_total = _check_dt(dt_us)
    if not (math.isfinite(accel_cmd_mps2) and math.isfinite(steering_cmd_rad)):
        raise ValueError(f"commands must be finite, got accel {accel_cmd_mps2}, steering {steering_cmd_rad}")
    p = params
    acc_cmd = min(max(accel_cmd_mps2, p.min_accel_mps2), p.max_accel_mps2)
    delta_cmd = min(max(steering_cmd_rad, -p.max_steering_rad), p.max_steering_rad)
    n = max(1, -(-dt_us // p.max_substep_us))
    h = dt_total / n
    lr = p.rear_axle_to_cg_m
    x, y, yaw = state.x_m, state.y_m, state.yaw_rad
    vx = max(state.speed_mps, 0.0)
    r = state.yaw_rate_radps
    vy_cg = state.lat_speed_mps + lr * r
    delta, acc = state.steering_rad, state.accel_mps2
    for _ in range(n):
        k1 = _derivatives(x, y, yaw, vx, vy_cg, r, delta, acc, delta_cmd, acc_cmd, p)
        hm = 0.5 * h
        xm = (x + hm * k1[0], y + hm * k1[1], yaw + hm * k1[2], vx + hm * k1[3], vy_cg + hm * k1[4],
              r + hm * k1[5], delta + hm * k1[6], acc + hm * k1[7])
        k2 = _derivatives(*xm, delta_cmd, acc_cmd, p)
        x += h * k2[0]
        y += h * k2[1]
        yaw += h * k2[2]
        vx += h * k2[3]
        vy_cg += h * k2[4]
        r += h * k2[5]
        delta += h * k2[6]
        acc += h * k2[7]
        if vx < p.kinematic_below_mps:
            r = vx * math.tan(delta) / p.wheelbase_m
            vy_cg = lr * r
        if vx <= 0.0:
            vx, r, vy_cg = 0.0, 0.0, 0.0
            if acc < 0.0:
                acc = 0.0  # the brakes hold the car; no reverse
    return AgentState(x_m=x, y_m=y, yaw_rad=yaw, speed_mps=vx, accel_mps2=acc, yaw_rate_radps=r, z_m=state.z_m,
                      lat_speed_mps=vy_cg - lr * r, steering_rad=delta, visible=state.visible)
