"""Baseline policies: constant velocity, route follower, log replay."""

import math

import numpy as np
import pytest
from sim_core_scenarios import scenario

from cordillera.sim.policies.baselines import ConstantVelocityPolicy, LogReplayPolicy, RouteFollowerPolicy
from cordillera.sim.runtime import SimConfig, run_rollout
from cordillera.sim.types import EgoHistory, Observation, Policy


def _obs(speed, yaw_rate, route=None, x=0.0, y=0.0, yaw=0.0):
    h = EgoHistory(t_us=np.array([0]), xyz_local=np.array([[x, y, 0.0]]),
                   quat_local=np.array([[0, 0, math.sin(yaw / 2), math.cos(yaw / 2)]]),
                   velocity_rig_mps=np.array([[speed, 0.0, 0.0]]), accel_rig_mps2=np.zeros((1, 3)),
                   yaw_rate_radps=np.array([yaw_rate]))
    return Observation(t_us=0, cameras={}, ego_history=h,
                       route_rig=route if route is not None else np.full((20, 3), np.nan))


@pytest.mark.parametrize("policy", [ConstantVelocityPolicy(), RouteFollowerPolicy()])
def test_policies_implement_protocol(policy):
    assert isinstance(policy, Policy)


def test_constant_velocity_plan_is_an_arc():
    p = ConstantVelocityPolicy().plan(_obs(10.0, 0.2), 0, 100_000)
    p.validate(0)
    assert len(p.t_us) == 65 and p.t_us[-1] == 6_400_000
    # 50 m radius: every point is 50 m from the centre (0, 50); yaw = 0.2 t
    np.testing.assert_allclose(np.hypot(p.xyz_rig[:, 0], p.xyz_rig[:, 1] - 50.0), 50.0, atol=1e-9)
    np.testing.assert_allclose(p.yaw_rig, 0.2 * np.arange(65) * 0.1, atol=1e-12)
    np.testing.assert_allclose(np.hypot(*np.diff(p.xyz_rig[:, :2], axis=0).T), 2 * 50 * math.sin(0.01), atol=1e-9)


def test_route_follower_speed_profile_and_path():
    route = np.stack([np.arange(20) * 80 / 19, np.full(20, 1.0), np.zeros(20)], -1)
    route[10:] = np.nan  # the route ends 37.9 m ahead
    p = RouteFollowerPolicy(speed_limit_mps=10.0).plan(_obs(6.0, 0.0, route), 0, 100_000)
    p.validate(0)
    v = np.hypot(*np.diff(p.xyz_rig[:, :2], axis=0).T) / 0.1
    assert v[0] == pytest.approx(6.075, abs=1e-9)  # +1.5 m/s² from 6 m/s: mean speed over the first 0.1 s
    assert v.max() <= 10.0 + 1e-9
    assert p.xyz_rig[-1, 1] == pytest.approx(1.0, abs=1e-9)  # on the route line
    # it plans to stop exactly at the end of the visible route, braking at most 2 m/s²
    assert p.xyz_rig[-1, 0] == pytest.approx(9 * 80 / 19, abs=1e-6) and v[-1] == 0.0
    assert np.diff(v)[:-5].min() >= -2.0 * 0.1 - 1e-9  # (the last 10 Hz step snaps onto the end)


def test_route_follower_closed_loop_keeps_lane_and_stops_at_route_end():
    scn = scenario([], ego_x=10.0, ego_speed=5.0, length_m=160.0, duration_us=25_000_000, force_gt_us=0)
    ro = run_rollout(scn, RouteFollowerPolicy(speed_limit_mps=10.0))
    assert ro.status == "ok", ro.error
    xy = ro.ego_xy_yaw()
    assert np.abs(xy[:, 1]).max() < 0.05
    assert ro.ego_speed_mps().max() == pytest.approx(10.0, abs=0.3)
    assert ro.ego_speed_mps()[-1] < 0.1
    assert 150.0 < xy[-1, 0] < 160.5


@pytest.mark.parametrize("controller,tol", [("perfect", 1e-9), ("tracking", 0.3)])
def test_log_replay_reproduces_reference(controller, tol):
    scn = scenario([], ego_x=10.0, ego_speed=5.0, duration_us=8_000_000, force_gt_us=0)
    ref = run_rollout(scn, RouteFollowerPolicy(speed_limit_mps=12.0))
    ro = run_rollout(scn, LogReplayPolicy(ref), SimConfig(controller=controller))
    assert ro.status == "ok", ro.error
    d = np.hypot(*(ro.ego_xy_yaw()[:, :2] - ref.ego_xy_yaw()[:, :2]).T)
    assert d.max() < tol


def test_log_replay_plan_is_in_current_rig_frame():
    scn = scenario([], ego_x=10.0, ego_speed=5.0, duration_us=3_000_000, force_gt_us=0)
    ref = run_rollout(scn, ConstantVelocityPolicy(), SimConfig(controller="perfect"))
    # ego 1 m to the left of the reference and turned by 90°: the reference ahead is on its right
    p = LogReplayPolicy(ref).plan(_obs(5.0, 0.0, x=10.0, y=1.0, yaw=math.pi / 2), 0, 100_000)
    p.validate(0)
    np.testing.assert_allclose(p.xyz_rig[1], [-1.0, -0.5, 0.0], atol=1e-9)
    assert p.yaw_rig[1] == pytest.approx(-math.pi / 2)
    assert p.t_us[-1] == 6_400_000  # held at constant velocity past the 3 s reference
    np.testing.assert_allclose(p.xyz_rig[-1], [-1.0, -32.0, 0.0], atol=1e-9)
