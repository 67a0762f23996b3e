"""Ego dynamics: exact kinematic circle, bicycle steady states, lags, no reverse, purity."""

import math

import pytest

from cordillera.sim.dynamics import ALPASIM_VEHICLE, step, step_bicycle, steering_to_curvature_1pm
from cordillera.world.scenario import AgentState


def test_kinematic_constant_curvature_reproduces_circle():
    # R = 20 m, v = 10 m/s: after 100 steps of 0.1 s the rig origin is on the circle centred at
    # (0, 20) with heading = travelled arc / R.
    s = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=10.0)
    for _ in range(100):
        s = step(s, 0.0, 1 / 20, 100_000)
    arc = 100.0  # m
    th = arc / 20
    assert s.yaw_rad == pytest.approx(th, abs=1e-9)
    assert s.x_m == pytest.approx(20 * math.sin(th), abs=1e-9)
    assert s.y_m == pytest.approx(20 * (1 - math.cos(th)), abs=1e-9)
    assert math.hypot(s.x_m, s.y_m - 20) == pytest.approx(20.0, abs=1e-9)
    assert s.yaw_rate_radps == pytest.approx(0.5)


def test_kinematic_accelerating_on_circle_stays_on_circle():
    s = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=2.0)
    for _ in range(30):
        s = step(s, 1.0, -1 / 15, 100_000)
    # 3 s at 1 m/s² from 2 m/s: 10.5 m of arc on the right-hand circle centred at (0, -15)
    assert s.speed_mps == pytest.approx(5.0)
    assert s.yaw_rad == pytest.approx(-10.5 / 15, abs=1e-9)
    assert math.hypot(s.x_m, s.y_m + 15) == pytest.approx(15.0, abs=1e-9)


def test_kinematic_braking_stops_without_reversing():
    s = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=4.0)
    s = step(s, -2.0, 0.0, 5_000_000)  # stops after 2 s, 4 m
    assert s.speed_mps == 0.0 and s.accel_mps2 == 0.0
    assert s.x_m == pytest.approx(4.0)


def test_step_is_pure_and_validates():
    s0 = AgentState(x_m=1.0, y_m=2.0, yaw_rad=0.1, speed_mps=3.0)
    a = step(s0, 0.5, 0.01, 100_000)
    b = step(s0, 0.5, 0.01, 100_000)
    assert a == b and s0.x_m == 1.0
    with pytest.raises(ValueError, match="dt_us"):
        step(s0, 0.0, 0.0, 0.1)
    with pytest.raises(ValueError, match="finite"):
        step(s0, float("nan"), 0.0, 100)


def test_bicycle_low_speed_is_kinematic():
    # below 5 m/s with the steering already at its command: the rear axle follows a circle of
    # radius L / tan(delta)
    delta = 0.2
    s = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=3.0, steering_rad=delta)
    for _ in range(50):
        s = step_bicycle(s, 0.0, delta, 100_000)
    radius = 1 / steering_to_curvature_1pm(delta)
    assert math.hypot(s.x_m, s.y_m - radius) == pytest.approx(radius, abs=1e-3)
    assert s.lat_speed_mps == pytest.approx(0.0, abs=1e-12)
    assert s.yaw_rate_radps == pytest.approx(3.0 / radius, rel=1e-9)


def test_bicycle_high_speed_steady_state_understeers():
    # linear bicycle steady state: yaw rate = v δ / (L + K_us v²), K_us = W_f/C_f − W_r/C_r
    p = ALPASIM_VEHICLE
    v, delta = 15.0, 0.02
    s = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=v, steering_rad=delta)
    for _ in range(100):
        s = step_bicycle(s, 0.0, delta, 100_000)
    k_us = (p.mass_kg * p.rear_axle_to_cg_m / p.wheelbase_m) / p.cornering_stiffness_front_npr - (
        p.mass_kg * p.cg_to_front_axle_m / p.wheelbase_m
    ) / p.cornering_stiffness_rear_npr
    expected = v * delta / (p.wheelbase_m + k_us * v * v)
    assert s.speed_mps == pytest.approx(v)
    assert s.yaw_rate_radps == pytest.approx(expected, rel=2e-3)
    assert expected < v * math.tan(delta) / p.wheelbase_m  # understeer


def test_bicycle_first_order_lags():
    # after one time constant (0.1 s) a step command reaches 1 − e^-1 of its value
    s = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=10.0)
    s = step_bicycle(s, 2.0, 0.1, 100_000)
    assert s.accel_mps2 == pytest.approx(2.0 * (1 - math.exp(-1)), rel=2e-3)
    assert s.steering_rad == pytest.approx(0.1 * (1 - math.exp(-1)), rel=2e-3)


def test_bicycle_never_reverses_and_clips_inputs():
    s = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=1.0)
    for _ in range(30):
        s = step_bicycle(s, -50.0, 3.0, 100_000)
        assert s.speed_mps >= 0.0
    assert s.speed_mps == 0.0
    assert s.steering_rad <= ALPASIM_VEHICLE.max_steering_rad + 1e-12
    x_stop = s.x_m
    s = step_bicycle(s, -5.0, 0.0, 1_000_000)
    assert s.x_m == x_stop and s.speed_mps == 0.0
