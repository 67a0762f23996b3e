"""Runtime: AlpaSim event order and timestamps, force-GT, failures, determinism, snapshot/restore."""

import math
import threading
import time

import numpy as np
import pytest
from sim_core_scenarios import car, scenario

import cordillera.sim.runtime as rt
from cordillera.sim.policies.baselines import ConstantVelocityPolicy, RouteFollowerPolicy
from cordillera.sim.runtime import SHUTTER_US, SimConfig, Simulator, route_waypoints_rig, run_rollout
from cordillera.sim.types import ROUTE_SPACING_M, Plan
from cordillera.world.map import Lane
from cordillera.world.scenario import AgentState


class FakeRenderer:
    def __init__(self, log):
        self.log = log

    def cameras(self):
        return ["cam_a", "cam_b"]

    def render(self, world_state, camera, t_start_us, t_end_us):
        self.log.append(("render", camera, t_start_us, t_end_us, world_state.t_us))
        return np.full((4, 6, 3), t_end_us // 100_000 % 256, dtype=np.uint8)


class FakePolicy(ConstantVelocityPolicy):
    name = "fake"

    def __init__(self, log):
        self.log = log

    def start(self, session):
        self.log.append(("start", session.camera_names))

    def observe_world(self, world_state, scn):
        self.log.append(("observe", world_state.t_us))

    def plan(self, obs, t_now_us, t_query_us):
        self.log.append(("plan", t_now_us, t_query_us, obs.t_us, {k: (f.t_start_us, f.t_end_us) for k, f in obs.cameras.items()}))
        return super().plan(obs, t_now_us, t_query_us)

    def close(self):
        self.log.append(("close",))


def test_event_order_and_timestamps(monkeypatch):
    log = []
    real_track, real_traffic = rt.track, rt.step_traffic

    def track(state, tr, cs, t, t_next, sub):
        log.append(("controller", t, t_next))
        return real_track(state, tr, cs, t, t_next, sub)

    def step_traffic(ts, scn, ego, t, dt):
        log.append(("traffic", t, dt))
        return real_traffic(ts, scn, ego, t, dt)

    monkeypatch.setattr(rt, "track", track)
    monkeypatch.setattr(rt, "step_traffic", step_traffic)
    scn = scenario([car("A", 60.0)], duration_us=500_000, force_gt_us=200_000)
    cfg = SimConfig(cameras=("cam_b",), keep_images=True)
    ro = run_rollout(scn, FakePolicy(log), cfg, FakeRenderer(log))
    assert ro.status == "ok", ro.error
    assert log[0] == ("start", ("cam_b",)) and log[-1] == ("close",)
    steps = log[1:-1]
    # per step t: render(t) -> observe(t) -> plan(t, t+dt) -> [controller after force-GT] -> traffic(t)
    expected = []
    for t in range(0, 500_001, 100_000):
        expected += [("render", "cam_b", t - SHUTTER_US, t, t), ("observe", t),
                     ("plan", t, t + 100_000, t, {"cam_b": (t - SHUTTER_US, t)})]
        if t == 500_000:
            break  # simulation end: the last policy call happens, nothing after
        if t + 100_000 > 200_000:
            expected.append(("controller", t, t + 100_000))
        expected.append(("traffic", t, 100_000))
    assert steps == expected
    assert [s.t_us for s in ro.steps] == list(range(0, 500_001, 100_000))
    assert [s.force_gt for s in ro.steps] == [True, True, False, False, False, False]
    assert ro.steps[3].frames["cam_b"].t_end_us == 300_000 and ro.steps[3].frames["cam_b"].image[0, 0, 0] == 3
    assert ro.force_gt_end_us == 200_000


def test_force_gt_lane_keeping_without_reference():
    # during warm-up the ego drives along its route at its start speed, whatever the policy says
    class Brake(ConstantVelocityPolicy):
        def plan(self, obs, t, tq):
            return Plan(t_us=t + 100_000 * np.arange(21), xyz_rig=np.zeros((21, 3)), yaw_rig=np.zeros(21))

    scn = scenario([], ego_x=10.0, ego_speed=8.0, duration_us=3_000_000, force_gt_us=1_700_000)
    ro = run_rollout(scn, Brake())
    xy = ro.ego_xy_yaw()
    assert ro.status == "ok"
    np.testing.assert_allclose(xy[:18, 0], 10.0 + 8.0 * 0.1 * np.arange(18), atol=1e-9)
    assert ro.steps[16].force_gt and not ro.steps[17].force_gt
    assert ro.ego_speed_mps()[-1] < 8.0  # after warm-up the stop plan is tracked


def test_force_gt_follows_reference():
    scn = scenario([], ego_speed=8.0, duration_us=3_000_000, force_gt_us=1_000_000)
    ref = run_rollout(scn, RouteFollowerPolicy(speed_limit_mps=12.0))
    ro = run_rollout(scn, ConstantVelocityPolicy(), reference=ref)
    for k in range(11):
        assert ro.steps[k].ego == ref.steps[k].ego
    assert ro.steps[11].ego != ref.steps[11].ego


def test_observation_history_and_route():
    seen = []

    class Spy(ConstantVelocityPolicy):
        def plan(self, obs, t, tq):
            seen.append(obs)
            return super().plan(obs, t, tq)

    scn = scenario([], ego_x=10.0, ego_speed=5.0, duration_us=1_000_000)
    run_rollout(scn, Spy(), SimConfig(history_poses=16))
    h = seen[0].ego_history
    assert len(h) == 16 and h.t_us[-1] == 0
    np.testing.assert_array_equal(np.diff(h.t_us), 100_000)
    np.testing.assert_allclose(h.xyz_local[:, 0], 10.0 - 5.0 * 0.1 * np.arange(15, -1, -1))  # seeded history
    np.testing.assert_allclose(h.velocity_rig_mps[:, 0], 5.0)
    assert seen[5].ego_history.t_us[-1] == 500_000
    r = seen[0].route_rig
    assert r.shape == (20, 3) and np.all(r[:, 2] == 0)
    np.testing.assert_allclose(np.diff(r[:, 0]), ROUTE_SPACING_M)


def test_route_waypoints_spacing_and_nan_padding():
    route = Lane("r", np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 50.0]]))
    ego = AgentState(x_m=60.0, y_m=1.0, yaw_rad=0.0)
    wp = route_waypoints_rig(route, ego)
    assert wp.shape == (20, 3)
    valid = np.all(np.isfinite(wp), axis=1)
    # route left: 40 m + 50 m = 90 m -> points at 0, 4.21, ..., 88.4 m = 22 would fit; all 20 valid
    assert valid.all()
    np.testing.assert_allclose(wp[0], [0.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(wp[1], [ROUTE_SPACING_M, -1.0, 0.0], atol=1e-12)
    ego2 = AgentState(x_m=100.0, y_m=10.0, yaw_rad=math.pi / 2)
    wp2 = route_waypoints_rig(route, ego2)  # 40 m left -> 10 points (0 .. 37.9 m), then NaN
    assert np.isfinite(wp2[:10]).all() and np.isnan(wp2[10:]).all()
    np.testing.assert_allclose(wp2[:10, 0], ROUTE_SPACING_M * np.arange(10), atol=1e-9)
    np.testing.assert_allclose(wp2[:10, 1], 0.0, atol=1e-9)


class BadPolicy(ConstantVelocityPolicy):
    def __init__(self, kind, after_us=0):
        self.kind, self.after_us = kind, after_us

    def plan(self, obs, t, tq):
        p = super().plan(obs, t, tq)
        if t < self.after_us:
            return p
        if self.kind == "nan":
            xyz = p.xyz_rig.copy()
            xyz[5, 0] = np.nan
            return Plan(p.t_us, xyz, p.yaw_rig)
        if self.kind == "empty":
            return Plan(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0))
        if self.kind == "backwards":
            return Plan(p.t_us[::-1].copy(), p.xyz_rig, p.yaw_rig)
        if self.kind == "raise":
            raise ValueError("boom")
        if self.kind == "sleep":
            time.sleep(1.0)
        if self.kind == "none":
            return None
        if self.kind == "warming":
            return Plan(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0), warming_up=True)
        return p


@pytest.mark.parametrize(
    "kind,message",
    [
        ("nan", "invalid plan at t=2000000: plan contains NaN"),
        ("empty", "invalid plan at t=1700000: plan is empty"),
        ("backwards", "invalid plan at t=2000000: plan timestamps are not strictly increasing"),
        ("raise", "policy raised ValueError: boom"),
        ("none", "invalid plan at t=2000000: policy returned NoneType"),
        ("warming", "invalid plan at t=1700000: warming_up plan after the force-GT warm-up"),
    ],
)
def test_bad_policy_fails_rollout_cleanly(kind, message):
    scn = scenario([], duration_us=3_000_000, force_gt_us=1_700_000)
    ro = run_rollout(scn, BadPolicy(kind, after_us=2_000_000 if kind not in ("empty", "warming") else 0))
    assert ro.status == "failed" and ro.failed
    assert ro.error.startswith(message), ro.error
    if kind in ("empty", "warming"):  # tolerated during force-GT (steps 0..16), fatal after
        assert [s.t_us for s in ro.steps][-1] == 1_700_000
        assert all(s.force_gt for s in ro.steps[:-1])


@pytest.mark.parametrize("inline", [False, True])
def test_policy_timeout_fails_rollout(inline):
    """On the worker thread (any policy) and on the caller's thread (``runs_inline``: checked on return)."""
    scn = scenario([], duration_us=1_000_000)
    policy = BadPolicy("sleep", after_us=300_000)
    policy.runs_inline = inline
    ro = run_rollout(scn, policy, SimConfig(policy_timeout_s=0.05))
    assert ro.status == "failed" and ro.error == "policy timed out after 0.05 s at t=300000"


class ThreadRecorder(ConstantVelocityPolicy):
    def __init__(self, inline):
        self.runs_inline, self.threads = inline, set()

    def plan(self, obs, t, tq):
        self.threads.add(threading.current_thread().name)
        return super().plan(obs, t, tq)


@pytest.mark.parametrize("inline,timeout_s,on_caller", [(True, 30.0, True), (False, 30.0, False),
                                                        (False, 0.0, True)])
def test_policy_thread_hand_off_only_when_needed(inline, timeout_s, on_caller):
    """Inline policies and a disabled timeout run on the caller's thread; others on the worker."""
    policy = ThreadRecorder(inline)
    ro = run_rollout(scenario([], duration_us=500_000), policy, SimConfig(policy_timeout_s=timeout_s))
    assert ro.status == "ok"
    assert policy.threads == ({threading.current_thread().name} if on_caller else {"policy_0"})


def test_builtin_policies_run_inline():
    from cordillera.sim.expert import ExpertPolicy
    from cordillera.sim.policies.baselines import LogReplayPolicy

    assert all(p.runs_inline for p in (ExpertPolicy, ConstantVelocityPolicy, RouteFollowerPolicy, LogReplayPolicy))


def test_deterministic():
    def go():
        scn = scenario([car("A", 40.0, speed=9.0), car("B", 80.0, speed=6.0)], duration_us=6_000_000)
        return run_rollout(scn, RouteFollowerPolicy(), seed=3)

    a, b = go(), go()
    assert a.rollout_id == b.rollout_id
    np.testing.assert_array_equal(a.ego_xy_yaw(), b.ego_xy_yaw())
    np.testing.assert_array_equal(a.ego_speed_mps(), b.ego_speed_mps())
    assert [s.actors for s in a.steps] == [s.actors for s in b.steps]


def test_snapshot_restore_continues_identically():
    scn = scenario([car("A", 40.0, speed=9.0), car("B", 80.0, speed=6.0)], duration_us=10_000_000)
    sim = Simulator(scn, RouteFollowerPolicy(), SimConfig(policy_timeout_s=0))
    sim.reset()
    for _ in range(30):
        sim.step()
    snap = sim.snapshot()
    first = [sim.step() for _ in range(20)]
    sim.restore(snap)
    assert sim.t_us == 3_000_000 and len(sim.records) == 30
    second = [sim.step() for _ in range(20)]
    assert [(r.t_us, r.ego, r.actors) for r in first] == [(r.t_us, r.ego, r.actors) for r in second]
    sim.restore(snap)  # a snapshot can be restored more than once
    third = [sim.step() for _ in range(20)]
    assert [r.ego for r in third] == [r.ego for r in first]


def test_perfect_controller_follows_plan_exactly():
    scn = scenario([], ego_speed=7.0, duration_us=4_000_000, force_gt_us=0)
    ro = run_rollout(scn, ConstantVelocityPolicy(), SimConfig(controller="perfect"))
    np.testing.assert_allclose(ro.ego_xy_yaw()[:, 0], 10.0 + 0.7 * np.arange(41), atol=1e-9)
    np.testing.assert_allclose(ro.ego_speed_mps(), 7.0, atol=1e-9)


def test_config_validation():
    with pytest.raises(ValueError, match="multiple"):
        SimConfig(physics_substep_us=30_000)
    with pytest.raises(ValueError, match="controller"):
        SimConfig(controller="mpc")
    with pytest.raises(ValueError, match="renderer"):
        Simulator(scenario([]), ConstantVelocityPolicy(), SimConfig(cameras=("cam_a",)))
