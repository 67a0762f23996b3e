"""Expert planner: hand-made scenarios driven closed loop with a perfect-tracking integrator."""

import math

import numpy as np
import pytest
from sim_expert_builders import (
    actor_box,
    ego_box,
    front_x,
    initial_state,
    intersection_map,
    light_on_A,
    make_scenario,
    min_distance,
    run_perfect_loop,
    straight_map,
)

from cordillera.sim.expert import (
    LATERAL_DECISIONS,
    LONGITUDINAL_DECISIONS,
    ExpertPolicy,
    build_route_path,
    plan_from_state,
)
from cordillera.sim.types import EgoHistory, Observation, PrivilegedPolicy
from cordillera.world.scenario import ActorSpec, BrakeEvent, IdmBehavior, SignalProgram, WalkerBehavior

STOP_LINE_X = -11.0  # intersection_map(): stop line of approach A


def _check_vocabulary(plans):
    for p in plans:
        d = p.decisions
        assert d["longitudinal"] in LONGITUDINAL_DECISIONS
        assert d["lateral"] in LATERAL_DECISIONS
        if d["lateral"] in ("Lane Change", "Nudge", "Turn"):
            assert d["lateral_direction"] in ("left", "right")
        else:
            assert d["lateral_direction"] in (None, "left", "right")
        co = d["causal_object"]
        if co is not None:
            assert set(co) == {"id", "kind", "relation", "distance_m"}
            assert co["distance_m"] >= 0.0
        assert p.coc is None


# ----------------------------------------------------------------------------------------------
# Plan structure
# ----------------------------------------------------------------------------------------------
def test_plan_shape_starts_at_current_pose_and_is_deterministic():
    sc = make_scenario(straight_map(), ["L0"], (10.0, 0.3), ego_yaw=0.05, ego_speed=8.0)
    ws = initial_state(sc)
    p1 = plan_from_state(ws, sc, 0)
    p2 = plan_from_state(ws, sc, 0)
    p1.validate(0)
    assert p1.t_us.shape == (65,) and p1.t_us[0] == 0 and p1.t_us[-1] == 6_400_000
    assert np.all(np.diff(p1.t_us) == 100_000)
    assert np.allclose(p1.xyz_rig[0], 0.0) and p1.yaw_rig[0] == 0.0
    np.testing.assert_array_equal(p1.xyz_rig, p2.xyz_rig)
    np.testing.assert_array_equal(p1.yaw_rig, p2.yaw_rig)
    assert p1.decisions == p2.decisions
    # free road: accelerates gently from 8 m/s towards the 13.9 m/s limit, returns to the centre
    step = np.linalg.norm(np.diff(p1.xyz_rig[:, :2], axis=0), axis=1) / 0.1
    assert 8.0 < step[-1] <= 13.9 + 0.05
    assert np.all(np.diff(step) / 0.1 <= 2.4 + 1e-6)
    c, s = math.cos(0.05), math.sin(0.05)
    y_local_end = 0.3 + s * p1.xyz_rig[-1, 0] + c * p1.xyz_rig[-1, 1]
    assert abs(y_local_end) < 0.05
    assert p1.decisions["longitudinal"] == "Resume Speed" and p1.decisions["lateral"] == "Keep Lane"


def test_policy_protocol_and_privilege_errors():
    pol = ExpertPolicy()
    assert isinstance(pol, PrivilegedPolicy) and pol.name == "expert"
    with pytest.raises(RuntimeError, match="observe_world"):
        pol.plan(None, 0, 100_000)
    sc = make_scenario(straight_map(), ["L0"], (10.0, 0.0))
    pol.observe_world(initial_state(sc), sc)
    with pytest.raises(ValueError, match="t_now_us"):
        pol.plan(None, 100_000, 200_000)


def test_unprivileged_mode_follows_the_route_waypoints():
    pol = ExpertPolicy(privileged=False)
    route = np.full((20, 3), np.nan)
    route[:10, 0] = np.arange(10) * 80 / 19
    route[:10, 1] = 0.0
    route[:10, 2] = 0.0
    hist = EgoHistory(np.array([0]), np.zeros((1, 3)), np.array([[0, 0, 0, 1.0]]), np.array([[5.0, 0, 0]]),
                      np.zeros((1, 3)), np.zeros(1))
    obs = Observation(0, {}, hist, route)
    pol.observe_world(None, None)  # ignored without privileges
    p = pol.plan(obs, 0, 100_000)
    p.validate(0)
    np.testing.assert_allclose(p.xyz_rig[10], [5.0, 0.0, 0.0], atol=1e-9)  # 5 m/s for 1 s along x


def test_route_path_joins_lanes_and_measures_curvature():
    m = intersection_map()
    r = build_route_path(m, ["A", "AN", "N_out"])
    i_turn = r.index(150.0 - 10.0 + 0.5 * math.pi * 11.8 * 0.5)  # middle of the left-turn arc
    assert r.curvature[i_turn] == pytest.approx(1 / 11.8, rel=0.05)
    assert abs(r.curvature[r.index(50.0)]) < 1e-6
    s, d, _ = r.project(np.array([[-50.0, -1.8 + 0.7]]))
    assert s[0] == pytest.approx(100.0, abs=1e-6) and d[0] == pytest.approx(0.7, abs=1e-6)
    assert r.lane_start_s[1] == pytest.approx(140.0, abs=0.01)


# ----------------------------------------------------------------------------------------------
# Signals
# ----------------------------------------------------------------------------------------------
def test_stops_before_the_stop_line_on_red():
    sc = make_scenario(intersection_map(), ["A", "AB", "B"], (-80.0, -1.8), ego_speed=10.0,
                       lights=[light_on_A(SignalProgram(mode="stuck_red"))], duration_s=15)
    res = run_perfect_loop(sc, ExpertPolicy())
    final = res.states[-1].ego
    assert final.speed_mps < 0.3
    assert front_x(sc, final) < STOP_LINE_X
    assert max(front_x(sc, ws.ego) for ws in res.states) < STOP_LINE_X
    d = res.plans[40].decisions
    assert d["longitudinal"] == "Stop" and d["signal"] == {"id": "tl_A", "state": "red"}
    assert 0.0 < d["stop_line_distance_m"] < 40.0
    _check_vocabulary(res.plans)


def test_waits_on_red_then_goes_on_green_without_running_the_red():
    prog = SignalProgram(phases=(("red", 8_000_000), ("green", 30_000_000), ("yellow", 3_000_000)))
    sc = make_scenario(intersection_map(), ["A", "AB", "B"], (-70.0, -1.8), ego_speed=10.0,
                       lights=[light_on_A(prog)], duration_s=16)
    res = run_perfect_loop(sc, ExpertPolicy())
    for ws in res.states:
        if ws.signals["tl_A"] == "red":
            assert front_x(sc, ws.ego) < STOP_LINE_X
    assert min(ws.ego.speed_mps for ws in res.states) < 0.3
    assert res.states[-1].ego.x_m > 15.0  # crossed the junction after the green
    _check_vocabulary(res.plans)


def test_yellow_stop_when_comfortable_go_when_too_close():
    prog = SignalProgram(phases=(("yellow", 3_000_000), ("red", 30_000_000)), offset_us=0)
    far = make_scenario(intersection_map(), ["A", "AB", "B"], (-60.0, -1.8), ego_speed=10.0,
                        lights=[light_on_A(prog)], duration_s=10)
    res = run_perfect_loop(far, ExpertPolicy())
    assert max(front_x(far, ws.ego) for ws in res.states) < STOP_LINE_X
    assert res.plans[0].decisions["longitudinal"] == "Stop"
    # 2 m before the line at 12 m/s: stopping would need ~36 m/s², the ego clears within the yellow
    near = make_scenario(intersection_map(), ["A", "AB", "B"], (-17.1, -1.8), ego_speed=12.0,
                         lights=[light_on_A(prog)], duration_s=3)
    res = run_perfect_loop(near, ExpertPolicy())
    assert res.states[-1].ego.x_m > 10.0
    t_cross = next(ws.t_us for ws in res.states if front_x(near, ws.ego) > STOP_LINE_X)
    assert t_cross < 3_000_000


def test_stop_sign_full_stop_then_go():
    from cordillera.world.map import RoadMap, Sign

    m0 = intersection_map()
    m = RoadMap(lanes=m0.lanes, stop_lines=m0.stop_lines,
                signs=(Sign("stop_A", "stop", -12.0, -4.0, math.pi, lane_ids=("A",)),))
    sc = make_scenario(m, ["A", "AB", "B"], (-60.0, -1.8), ego_speed=10.0, duration_s=16)
    res = run_perfect_loop(sc, ExpertPolicy())
    # consecutive stopped steps with the front at the line: at least 1 s
    stopped = [ws.ego.speed_mps < 0.2 and STOP_LINE_X - 4.0 < front_x(sc, ws.ego) < STOP_LINE_X for ws in res.states]
    run, best = 0, 0
    for s in stopped:
        run = run + 1 if s else 0
        best = max(best, run)
    assert best >= 10
    assert res.states[-1].ego.x_m > 10.0


# ----------------------------------------------------------------------------------------------
# Vehicles and vulnerable road users
# ----------------------------------------------------------------------------------------------
def test_keeps_headway_to_a_braking_lead():
    lead = ActorSpec("lead", "car", 45.0, 0.0, 0.0, 12.0,
                     behavior=IdmBehavior(("L0",), brake_events=(BrakeEvent(4_000_000, 6.0),)))
    sc = make_scenario(straight_map(), ["L0"], (10.0, 0.0), ego_speed=12.0, actors=[lead], duration_s=12)
    res = run_perfect_loop(sc, ExpertPolicy())
    gaps = [ego_box(sc, ws.ego).distance(actor_box(sc, "lead", ws.actors["lead"])) for ws in res.states]
    headway = [g / ws.ego.speed_mps for g, ws in zip(gaps, res.states) if ws.ego.speed_mps > 1.0]
    assert min(headway) >= 1.0
    assert min(gaps) > 2.0
    assert res.states[-1].ego.speed_mps < 0.3
    d = res.plans[10].decisions
    assert d["longitudinal"] == "Keep Distance"
    assert d["causal_object"]["id"] == "lead" and d["causal_object"]["relation"] == "lead"
    assert res.plans[-1].decisions["longitudinal"] == "Stop"
    acc = np.diff([ws.ego.speed_mps for ws in res.states]) / 0.1
    assert acc.min() > -8.0 - 1e-6
    _check_vocabulary(res.plans)


def test_yields_to_a_crossing_pedestrian_before_the_crosswalk():
    ped = ActorSpec("ped", "pedestrian", 100.0, -4.0, math.pi / 2, 0.0,
                    behavior=WalkerBehavior(((100.0, -4.0), (100.0, 9.0)), 1.4, start_us=4_000_000))
    sc = make_scenario(straight_map(crosswalk_x=100.0), ["L0"], (20.0, 0.0), ego_speed=12.0, actors=[ped],
                       duration_s=20)
    res = run_perfect_loop(sc, ExpertPolicy())
    assert min_distance(sc, res, "ped") > 2.0
    # stopped (or nearly) with the front bumper before the crosswalk edge (x = 98) at some point
    assert any(ws.ego.speed_mps < 0.3 and front_x(sc, ws.ego) < 98.0 for ws in res.states)
    yields = [p.decisions for p in res.plans if p.decisions["longitudinal"] == "Yield"]
    assert yields and all(d["causal_object"]["id"] == "ped" for d in yields)
    assert yields[0]["causal_object"]["relation"] == "crossing"
    assert res.states[-1].ego.x_m > 130.0  # went on after the crossing
    _check_vocabulary(res.plans)


def test_unprotected_left_turn_yields_to_oncoming_traffic():
    prog = SignalProgram(phases=(("green", 60_000_000),))
    onc = [ActorSpec(f"onc{i}", "car", 40.0 + 25 * i, 1.8, math.pi, 10.0,
                     behavior=IdmBehavior(("W_in", "WW", "W_out"))) for i in range(3)]
    sc = make_scenario(intersection_map(), ["A", "AN", "N_out"], (-40.0, -1.8), ego_speed=8.0,
                       lights=[light_on_A(prog)], actors=onc, duration_s=18)
    res = run_perfect_loop(sc, ExpertPolicy())
    for a in onc:
        assert min_distance(sc, res, a.id) > 1.0
    decs = [p.decisions for p in res.plans]
    assert any(d["longitudinal"] == "Yield" and d["causal_object"]["relation"] == "oncoming" for d in decs)
    assert any(d["lateral"] == "Turn" and d["lateral_direction"] == "left" for d in decs)
    assert res.states[-1].ego.y_m > 12.0  # completed the turn onto N_out
    _check_vocabulary(res.plans)


# ----------------------------------------------------------------------------------------------
# Lateral manoeuvres
# ----------------------------------------------------------------------------------------------
def test_nudges_around_cones_and_returns_to_the_centre():
    cones = [ActorSpec(f"cone{i}", "cone", 80.0 + 4 * i, -1.3, 0.0) for i in range(4)]
    sc = make_scenario(straight_map(n_lanes=1, opposite=True), ["L0"], (10.0, 0.0), ego_speed=10.0, actors=cones,
                       duration_s=14)
    res = run_perfect_loop(sc, ExpertPolicy())
    assert min(min_distance(sc, res, c.id) for c in cones) >= 0.5
    assert max(abs(ws.ego.y_m) for ws in res.states) < 1.0  # a small departure, not a lane change
    assert abs(res.states[-1].ego.y_m) < 0.2
    d = res.plans[20].decisions
    assert d["lateral"] == "Nudge" and d["lateral_direction"] == "left"
    assert d["causal_object"]["id"] == "cone0" and d["causal_object"]["relation"] == "blocking"
    assert res.plans[-1].decisions["lateral"] == "Keep Lane"
    _check_vocabulary(res.plans)


def test_lane_change_around_a_parked_car():
    pk = ActorSpec("parked", "parked_car", 80.0, 0.0, 0.0)
    sc = make_scenario(straight_map(), ["L0"], (10.0, 0.0), ego_speed=10.0, actors=[pk], duration_s=16)
    res = run_perfect_loop(sc, ExpertPolicy())
    assert min_distance(sc, res, "parked") > 0.5
    assert max(ws.ego.y_m for ws in res.states) > 3.0  # centred in the left lane while passing
    d = res.plans[10].decisions
    assert d["lateral"] == "Lane Change" and d["lateral_direction"] == "left"
    assert d["causal_object"]["id"] == "parked"
    assert abs(res.states[-1].ego.y_m) < 0.2
    _check_vocabulary(res.plans)


def test_waits_for_a_gap_before_changing_lane():
    pk = ActorSpec("parked", "parked_car", 60.0, 0.0, 0.0)
    # a car in the target lane alongside the ego: the lane change must wait until it has passed
    fast = ActorSpec("fast", "car", 12.0, 3.6, 0.0, 12.0, behavior=IdmBehavior(("L1",)))
    sc = make_scenario(straight_map(), ["L0"], (10.0, 0.0), ego_speed=8.0, actors=[pk, fast], duration_s=16)
    res = run_perfect_loop(sc, ExpertPolicy())
    assert min_distance(sc, res, "parked") > 0.5
    assert min_distance(sc, res, "fast") > 0.5
    assert res.plans[0].decisions["longitudinal"] == "Gap-search"
    assert res.states[-1].ego.x_m > 100.0
    _check_vocabulary(res.plans)


def test_cut_in_vehicle_becomes_the_leader():
    from cordillera.world.scenario import LaneChangeEvent

    cut = ActorSpec("cut", "car", 30.0, 3.6, 0.0, 9.0,
                    behavior=IdmBehavior(("L1",), lane_change_events=(LaneChangeEvent(1_000_000, "L0", 3_000_000),)))
    sc = make_scenario(straight_map(), ["L0"], (10.0, 0.0), ego_speed=12.0, actors=[cut], duration_s=6)

    # the test loop moves vehicles straight; script the lateral motion of the cut-in here
    res = run_perfect_loop(sc, ExpertPolicy(), duration_s=0.1)
    ws = res.states[0]
    d = ExpertPolicy().plan_from_state(ws, sc, 0).decisions
    assert d["causal_object"] is not None and d["causal_object"]["id"] == "cut"
    assert d["causal_object"]["relation"] == "cut_in"
    assert d["longitudinal"] in ("Keep Distance", "Stop")
