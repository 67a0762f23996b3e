"""Traffic: IDM/MOBIL as pure functions, and step_traffic on hand-built one/two-lane roads."""

import math

import numpy as np
import pytest
from sim_core_scenarios import car, red_light, scenario

from cordillera.sim.traffic import (
    LonState,
    STOP_LINE_MARGIN_M,
    desired_gap_m,
    gap_m,
    idm_accel_mps2,
    init_traffic,
    mobil_should_change,
    step_traffic,
)
from cordillera.world.scenario import (
    ActorSpec,
    AgentState,
    BrakeEvent,
    IdmParams,
    LaneChangeEvent,
    LogBehavior,
    WalkerBehavior,
)

DT = 100_000
P = IdmParams()


def _run(scn, seconds, ego=None, ego_fn=None):
    ts = init_traffic(scn)
    ego = ego or AgentState(x_m=-200.0, y_m=0.0, yaw_rad=0.0, speed_mps=0.0)
    hist = [ts.states]
    for k in range(int(seconds * 10)):
        e = ego_fn(k) if ego_fn else ego
        ts, states = step_traffic(ts, scn, e, k * DT, DT)
        hist.append(states)
    return ts, hist


# -- pure models -------------------------------------------------------------------------------
def test_idm_hand_values():
    me = LonState(0.0, 10.0, 4.0)
    lead = LonState(30.0, 5.0, 4.0)
    assert gap_m(me, lead) == pytest.approx(26.0)
    # s* = 2.5 + 10*1.5 + 10*5 / (2*sqrt(1.5*2)) = 17.5 + 14.4338
    assert desired_gap_m(me, lead, P) == pytest.approx(17.5 + 50 / (2 * math.sqrt(3.0)))
    free = 1.5 * (1 - (10 / 13.9) ** 4)
    expected = free - 1.5 * ((17.5 + 50 / (2 * math.sqrt(3.0))) / 26.0) ** 2
    assert idm_accel_mps2(me, lead, P) == pytest.approx(expected)
    assert idm_accel_mps2(LonState(0, 13.9), None, P) == pytest.approx(0.0, abs=1e-12)
    # standing at exactly the minimum gap behind a stopped car is an equilibrium
    assert idm_accel_mps2(LonState(0, 0, 4), LonState(6.5, 0, 4), P) == pytest.approx(0.0, abs=1e-12)


def test_mobil_accepts_beneficial_and_refuses_unsafe():
    me = LonState(0.0, 10.0)
    slow_lead = LonState(15.0, 0.0)  # stopped car 10.4 m ahead in my lane
    assert mobil_should_change(me, slow_lead, None, None, None, P)  # empty target lane: go
    # same, but a fast car right behind me in the target lane: the new follower would have to brake
    fast_follower = LonState(-8.0, 15.0)
    assert not mobil_should_change(me, slow_lead, None, None, fast_follower, P)
    # target occupied right beside me: overlapping boxes are never safe
    assert not mobil_should_change(me, slow_lead, None, LonState(2.0, 10.0), None, P)
    # no incentive when my lane is free and the target lane is as good
    assert not mobil_should_change(me, None, None, None, None, P)


# -- IDM in the loop -----------------------------------------------------------------------------
def test_idm_stops_min_gap_behind_stopped_car():
    parked = ActorSpec(id="P", kind="parked_car", x_m=150.0, y_m=0.0, yaw_rad=0.0)
    scn = scenario([car("A", 20.0, speed=10.0), parked])
    ts, hist = _run(scn, 20.0)
    a = hist[-1]["A"]
    assert a.speed_mps < 0.05
    gap = (150.0 - 0.5 * parked.length_m) - (a.x_m + 0.5 * 4.6)
    assert gap == pytest.approx(P.min_gap_m, abs=0.5)
    assert a.y_m == pytest.approx(0.0, abs=1e-9) and a.yaw_rad == pytest.approx(0.0, abs=1e-9)
    # never overlapped the parked car on the way
    assert max(h["A"].x_m for h in hist) + 2.3 < 150.0 - 2.3


def test_idm_stops_behind_the_ego_box():
    # the ego stands with its rig origin at x = 100: its box spans [100 + 1.3965 - 2.6965, ...]
    scn = scenario([car("A", 20.0, speed=10.0)])
    ego = AgentState(x_m=100.0, y_m=0.0, yaw_rad=0.0, speed_mps=0.0)
    _, hist = _run(scn, 20.0, ego=ego)
    rear_of_ego = 100.0 + scn.ego.rear_axle_to_center_m - 0.5 * scn.ego.length_m
    assert rear_of_ego - (hist[-1]["A"].x_m + 2.3) == pytest.approx(P.min_gap_m, abs=0.5)


def test_idm_stops_at_red_light_stop_line():
    scn = scenario([car("A", 20.0, speed=12.0)], stop_line_s=100.0, lights=(red_light(100.0),))
    _, hist = _run(scn, 20.0)
    front = hist[-1]["A"].x_m + 2.3
    assert hist[-1]["A"].speed_mps < 0.05
    assert 100.0 - front == pytest.approx(STOP_LINE_MARGIN_M, abs=0.5)
    assert all(h["A"].x_m + 2.3 < 100.0 for h in hist)


def test_ignores_red_light_when_not_obeying():
    scn = scenario([car("A", 20.0, speed=12.0, obey_signals=False)], stop_line_s=100.0, lights=(red_light(100.0),))
    _, hist = _run(scn, 10.0)
    assert hist[-1]["A"].x_m > 110.0


def test_brake_event_then_hold():
    ev = BrakeEvent(t_us=2_000_000, decel_mps2=4.0, target_speed_mps=2.0, hold_us=3_000_000)
    scn = scenario([car("A", 20.0, speed=10.0, params=IdmParams(desired_speed_mps=10.0), brake_events=(ev,))])
    _, hist = _run(scn, 10.0)
    v = np.array([h["A"].speed_mps for h in hist])
    assert v[20] == pytest.approx(10.0, abs=0.05)
    assert v[21] == pytest.approx(9.6, abs=0.05)  # −4 m/s² for 0.1 s
    assert v[22 + 18] == pytest.approx(2.0, abs=0.05)  # reached after 2 s, then held
    assert np.all(np.abs(v[41:70] - 2.0) < 0.05)
    assert v[-1] > 3.0  # IDM resumed after the hold


def test_cut_in_lane_change_is_smooth():
    ev = LaneChangeEvent(t_us=1_000_000, target_lane_id="L0", duration_us=3_000_000)
    scn = scenario([car("A", 60.0, lane="L1", y=3.6, speed=10.0, lane_change_events=(ev,),
                        params=IdmParams(desired_speed_mps=10.0))], n_lanes=2)
    _, hist = _run(scn, 6.0)
    y = np.array([h["A"].y_m for h in hist])
    assert np.all(y[:11] == pytest.approx(3.6))
    assert y[40] == pytest.approx(0.0, abs=1e-9) and y[-1] == pytest.approx(0.0, abs=1e-9)
    assert y[25] == pytest.approx(1.8, abs=1e-6)  # half-way after 1.5 s
    assert np.all(np.diff(y[10:41]) <= 1e-12)  # monotone
    assert max(abs(h["A"].yaw_rad) for h in hist) < 0.3
    assert hist[25]["A"].yaw_rad < 0  # heading right while moving right


def test_mobil_overtakes_a_stopped_obstacle():
    parked = ActorSpec(id="P", kind="parked_car", x_m=120.0, y_m=0.0, yaw_rad=0.0)
    scn = scenario([car("A", 40.0, speed=10.0, allow_lane_change=True), parked], n_lanes=2)
    _, hist = _run(scn, 20.0)
    a = hist[-1]["A"]
    assert a.y_m == pytest.approx(3.6, abs=1e-6) and a.x_m > 150.0


def test_mobil_does_not_cut_off_a_fast_car():
    parked = ActorSpec(id="P", kind="parked_car", x_m=200.0, y_m=0.0, yaw_rad=0.0)
    fast = car("F", 35.0, lane="L1", y=3.6, speed=13.0)
    scn = scenario([car("A", 40.0, speed=10.0, allow_lane_change=True), fast, parked], n_lanes=2)
    _, hist = _run(scn, 1.0)  # first MOBIL check at t = 1 s: F is right behind A in L1
    assert hist[-1]["A"].y_m == pytest.approx(0.0)


# -- walkers, replay, appearance ------------------------------------------------------------------
def test_walker_follows_path_at_speed():
    w = ActorSpec(id="W", kind="pedestrian", x_m=50.0, y_m=-6.0, yaw_rad=math.pi / 2,
                  behavior=WalkerBehavior(path_xy=((50.0, -6.0), (50.0, 0.0), (56.0, 0.0)), speed_mps=1.5,
                                          start_us=1_000_000))
    _, hist = _run(scenario([w]), 10.0)
    assert hist[10]["W"].y_m == pytest.approx(-6.0) and hist[10]["W"].speed_mps == 0.0
    assert hist[30]["W"].y_m == pytest.approx(-3.0)  # 2 s at 1.5 m/s
    assert hist[30]["W"].speed_mps == pytest.approx(1.5)
    assert hist[30]["W"].yaw_rad == pytest.approx(math.pi / 2)
    assert hist[60]["W"].x_m == pytest.approx(51.5) and hist[60]["W"].yaw_rad == pytest.approx(0.0)
    assert hist[-1]["W"].x_m == pytest.approx(56.0) and hist[-1]["W"].speed_mps == 0.0  # path end


def test_yielding_walker_waits_for_approaching_ego():
    def walker(yield_):
        return ActorSpec(id="W", kind="pedestrian", x_m=60.0, y_m=-6.0, yaw_rad=math.pi / 2,
                         behavior=WalkerBehavior(path_xy=((60.0, -6.0), (60.0, 6.0)), speed_mps=1.5, yield_to_ego=yield_))

    ego_fn = lambda k: AgentState(x_m=20.0 + 1.0 * k, y_m=0.0, yaw_rad=0.0, speed_mps=10.0)  # noqa: E731
    _, polite = _run(scenario([walker(True)]), 3.0, ego_fn=ego_fn)
    _, rude = _run(scenario([walker(False)]), 3.0, ego_fn=ego_fn)
    edge = -(1.8 + 0.3)
    assert polite[-1]["W"].y_m < edge and polite[-1]["W"].speed_mps == 0.0
    assert rude[-1]["W"].y_m == pytest.approx(-1.5)


def test_log_replay_reproduces_track_and_hides_outside_range():
    beh = LogBehavior(t_us=(1_000_000, 2_000_000, 4_000_000), xy=((0.0, 0.0), (10.0, 0.0), (10.0, 10.0)),
                      yaw_rad=(0.0, 0.0, math.pi / 2))
    a = ActorSpec(id="L", kind="car", x_m=0.0, y_m=0.0, yaw_rad=0.0, behavior=beh)
    _, hist = _run(scenario([a]), 5.0)
    assert not hist[5]["L"].visible
    assert hist[15]["L"].visible and hist[15]["L"].x_m == pytest.approx(5.0)
    assert hist[15]["L"].speed_mps == pytest.approx(10.0)
    assert hist[30]["L"].x_m == pytest.approx(10.0) and hist[30]["L"].y_m == pytest.approx(5.0)
    assert hist[30]["L"].yaw_rad == pytest.approx(math.pi / 4)
    assert hist[40]["L"].visible and not hist[41]["L"].visible


def test_appear_us_hides_and_freezes_actor():
    a = ActorSpec(id="A", kind="car", x_m=50.0, y_m=0.0, yaw_rad=0.0, speed_mps=5.0, appear_us=1_000_000,
                  behavior=car("x", 0).behavior)
    _, hist = _run(scenario([a]), 2.0)
    assert not hist[0]["A"].visible and not hist[9]["A"].visible
    assert hist[9]["A"].x_m == 50.0
    assert hist[10]["A"].visible and hist[10]["A"].x_m == 50.0
    assert hist[11]["A"].x_m > 50.0


def test_step_traffic_is_pure():
    scn = scenario([car("A", 20.0), car("B", 60.0, speed=5.0)])
    ts0 = init_traffic(scn)
    ego = AgentState(x_m=-50.0, y_m=0.0, yaw_rad=0.0)
    ts1, s1 = step_traffic(ts0, scn, ego, 0, DT)
    ts1b, s1b = step_traffic(ts0, scn, ego, 0, DT)
    assert s1 == s1b and ts1.actors == ts1b.actors
    assert ts0.t_us == 0 and ts0.states["A"].x_m == 20.0
    with pytest.raises(ValueError, match="traffic state is at"):
        step_traffic(ts1, scn, ego, 0, DT)


def test_lane_frenet_matches_lane_to_frenet():
    from cordillera.sim.traffic import lane_frenet
    from cordillera.world.map import Lane

    th = np.linspace(0, np.pi, 30)
    lane = Lane("c", np.stack([20 * np.cos(th), 20 * np.sin(th)], -1))
    pts = np.random.default_rng(0).uniform(-30, 30, size=(50, 2))
    s, r = lane_frenet(lane, pts)
    s2, r2 = lane.to_frenet(pts)
    np.testing.assert_allclose(s, s2, atol=1e-9)
    np.testing.assert_allclose(r, r2, atol=1e-9)
