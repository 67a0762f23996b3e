"""Plan tracking: pure pursuit + speed PID on the AlpaSim bicycle, and perfect tracking."""

import math

import numpy as np
import pytest

from cordillera.sim.controller import ControllerState, perfect_step, plan_to_local, track
from cordillera.world.scenario import AgentState

DT_US = 100_000


def _arc_plan(v, radius, horizon_s=8.0):
    t = np.arange(0, int(horizon_s * 10) + 1) * DT_US
    s = v * t * 1e-6
    th = s / radius
    xyz = np.stack([radius * np.sin(th), radius * (1 - np.cos(th)), np.zeros_like(th)], axis=-1)
    return t, xyz, th


def _lane_change_plan(v, width, dur_s, horizon_s=8.0):
    t = np.arange(0, int(horizon_s * 10) + 1) * DT_US
    ts = t * 1e-6
    x = v * ts
    u = np.clip(ts / dur_s, 0, 1)
    y = width * 0.5 * (1 - np.cos(np.pi * u))
    dy = np.gradient(y, x)
    return t, np.stack([x, y, np.zeros_like(x)], -1), np.arctan(dy)


def _stop_plan(v0, decel, horizon_s=8.0):
    t = np.arange(0, int(horizon_s * 10) + 1) * DT_US
    ts = t * 1e-6
    t_stop = v0 / decel
    tc = np.minimum(ts, t_stop)
    x = v0 * tc - 0.5 * decel * tc**2
    return t, np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1), np.zeros_like(x)


def _run(plan, v0, seconds=6.0):
    t, xyz, yaw = plan
    ego = AgentState(x_m=10.0, y_m=-5.0, yaw_rad=0.3, speed_mps=v0)
    tr = plan_to_local(t, xyz, yaw, ego)
    state, cs = ego, ControllerState()
    lat, along = [], []
    for k in range(int(seconds * 10)):
        state, cs = track(state, tr, cs, k * DT_US, (k + 1) * DT_US, 10_000)
        s, r = tr.project(state.x_m, state.y_m)
        lat.append(abs(r))
        along.append(tr.s_at((k + 1) * DT_US) - s)
    return np.array(lat), np.array(along), state


def test_tracks_10mps_arc():
    lat, along, state = _run(_arc_plan(10.0, 50.0), 10.0)
    print(f"arc: mean {lat.mean():.3f} max {lat.max():.3f} along {along[-1]:.3f}")
    assert lat.mean() < 0.2 and lat.max() < 0.3
    assert abs(along[-1]) < 0.5
    assert state.speed_mps == pytest.approx(10.0, abs=0.2)
    # yaw rate of a 50 m circle at 10 m/s
    assert state.yaw_rate_radps == pytest.approx(0.2, abs=0.02)


def test_tracks_lane_change():
    lat, along, state = _run(_lane_change_plan(10.0, 3.6, 3.0), 10.0)
    print(f"lane change: mean {lat.mean():.3f} max {lat.max():.3f} along {along[-1]:.3f}")
    assert lat.mean() < 0.2 and lat.max() < 0.4
    assert abs(along[-1]) < 0.5


def test_tracks_stop_and_holds():
    lat, along, state = _run(_stop_plan(10.0, 2.0), 10.0, seconds=8.0)
    print(f"stop: mean {lat.mean():.3f} max {lat.max():.3f} along {along[-1]:.3f}")
    # plan stops after 25 m; the car must stop within 0.5 m of that point, not roll past it
    assert state.speed_mps < 0.05
    assert abs(along[-1]) < 0.5
    assert lat.max() < 0.05


def _start_plan(v0, a0, jerk=3.0, a_max=2.0, horizon_s=6.4):
    """A planner's plan from the current state: acceleration ramps up from a0 at `jerk` (m/s³)."""
    t = np.arange(0, int(horizon_s * 10) + 1) * DT_US
    a = np.minimum(a0 + jerk * t * 1e-6, a_max)
    v = v0 + np.concatenate([[0.0], np.cumsum(0.5 * (a[1:] + a[:-1]) * 0.1)])
    x = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * 0.1)])
    return t, np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1), np.zeros_like(x)


def test_moves_off_from_rest_when_replanned_every_step():
    """A planner that replans every 0.1 s from the measured state starts each plan at rest with a
    jerk-limited acceleration (~0.5 mm in its first 0.1 s, 0.5 m within 1 s). The standing brake
    must not hold it: the car gets going (it once stayed at 0 m/s for good after every stop)."""
    state, cs = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=0.0), ControllerState()
    for k in range(50):
        tr = plan_to_local(*_start_plan(state.speed_mps, max(state.accel_mps2, 0.0)), state)
        state, cs = track(state, tr, cs, 0, DT_US, 10_000)
    assert state.speed_mps > 3.0 and state.x_m > 5.0, state
    # a plan that stays at rest holds the brake: no creep
    state = AgentState(x_m=0.0, y_m=0.0, yaw_rad=0.0, speed_mps=0.0)
    t = np.arange(65) * DT_US
    tr = plan_to_local(t, np.zeros((65, 3)), np.zeros(65), state)
    for k in range(30):
        state, cs = track(state, tr, cs, k * DT_US, (k + 1) * DT_US, 10_000)
    assert state.speed_mps == 0.0 and abs(state.x_m) < 1e-6


def test_perfect_step_is_plan_interpolation():
    t, xyz, yaw = _arc_plan(10.0, 50.0)
    ego = AgentState(x_m=1.0, y_m=2.0, yaw_rad=math.pi / 2, speed_mps=10.0)
    tr = plan_to_local(t, xyz, yaw, ego)
    nxt = perfect_step(ego, tr, 100_000)
    # the plan's pose at 0.1 s: 1 m along a 50 m circle turning left from heading north
    th = 1.0 / 50.0
    assert nxt.x_m == pytest.approx(1.0 - 50 * (1 - math.cos(th)), abs=1e-9)
    assert nxt.y_m == pytest.approx(2.0 + 50 * math.sin(th), abs=1e-9)
    assert nxt.yaw_rad == pytest.approx(math.pi / 2 + th, abs=1e-9)
    assert nxt.speed_mps == pytest.approx(10.0, rel=1e-3)
    assert nxt.yaw_rate_radps == pytest.approx(0.2, rel=1e-3)
