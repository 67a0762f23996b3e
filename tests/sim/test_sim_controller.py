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
