"""Expert decisions name what the plan does (hand-made scenarios, perfect-tracking loop).

The CoC label of a plan must name the decision that shapes it (spec/alpamayo_training_data.md
§6.2) AND describe its motion: Stop ⇒ the plan comes to rest, Yield ⇒ it gives way, Adapt Speed ⇒
it slows (never speeds up, never stops), Resume Speed ⇒ no net slowing, Pass/Overtake ⇒ it speeds
up past a slow moving vehicle, a lane change is named by the leg it drives.
"""

import math

import numpy as np
from sim_expert_builders import (
    LANE_W,
    initial_state,
    intersection_map,
    light_on_A,
    make_scenario,
    min_distance,
    run_perfect_loop,
    straight_map,
)

from cordillera.metrics.closedloop import comfort_signals
from cordillera.sim.expert import ExpertParams, ExpertPolicy, plan_from_state
from cordillera.world.scenario import (
    ActorSpec,
    AgentState,
    IdmBehavior,
    IdmParams,
    SignalProgram,
    WalkerBehavior,
    WorldState,
)

LON_JERK_BOUND = 4.13  # [m/s³] spec/alpamayo_training_data.md §3.5 comfort/lon_jerk


def _plan_speeds(plan) -> np.ndarray:
    """Interval speeds of a plan (10 Hz finite differences of its positions)."""
    return np.linalg.norm(np.diff(plan.xyz_rig[:, :2], axis=0), axis=1) / 0.1


def _check_motion(plans, states):
    """Every decision agrees with its own plan's motion."""
    for p, ws in zip(plans, states):
        d = p.decisions
        v0 = ws.ego.speed_mps
        v = np.concatenate([[v0], _plan_speeds(p)])
        lon = d["longitudinal"]
        if lon == "Stop":  # at rest, or creeping to a known stop line
            assert v.min() < (1.0 if d["stop_line_distance_m"] is not None else 0.5 + 0.05), (ws.t_us, d, v.min())
        elif lon == "Yield":
            assert v.min() <= v0 - 1.0 + 0.05 or v.min() < 3.0, (ws.t_us, d, v0, v.min())
        elif lon == "Adapt Speed":
            assert v[:31].max() <= v0 + 0.5 + 0.05 and v.min() >= 1.0 - 0.05, (ws.t_us, d, v0, v[:31].max())
        elif lon == "Resume Speed" and d["lateral"] != "Turn":
            assert v.min() >= min(v0 - 0.3, 0.0) - 0.05 or v.min() >= v0 - 0.35, (ws.t_us, d, v0, v.min())
        elif lon == "Pass/Overtake":
            assert v[:31].max() > v0 + 0.5, (ws.t_us, d, v0)


# ----------------------------------------------------------------------------------------------
# Jerk: the limiter starts from the measured acceleration, stops release the brake smoothly
# ----------------------------------------------------------------------------------------------
def test_jerk_limiter_starts_from_the_measured_acceleration():
    sc = make_scenario(straight_map(), ["L0"], (10.0, 0.0), ego_speed=8.0)
    ws = initial_state(sc)
    # e.g. the force-GT reference was braking at 2 m/s² when the policy took over
    ego = AgentState(ws.ego.x_m, ws.ego.y_m, ws.ego.yaw_rad, 8.0, -2.0)
    ws = WorldState(0, ego, ws.actors, ws.signals)
    pol = ExpertPolicy()
    pol.plan_from_state(initial_state(sc), sc, 0)  # memory of an earlier (accelerating) plan must not matter
    p = pol.plan_from_state(ws, sc, 0)
    v = np.concatenate([[8.0], _plan_speeds(p)])
    # first interval mean speed = v0 + a0·dt/2 with a0 within one jerk step of -2 m/s²
    jd = ExpertParams().jerk_max_mps3 * 0.1
    a0 = (v[1] - 8.0) / 0.05
    assert -2.0 - 0.05 <= a0 <= -2.0 + jd + 0.05
    # and from there back up to cruising without exceeding the lon-jerk bound (intervals incl. t0)
    acc = np.concatenate([[-2.0], np.diff(v[1:]) / 0.1])
    assert np.max(np.abs(np.diff(acc) / 0.1)) < LON_JERK_BOUND


def test_red_light_stop_keeps_the_lon_jerk_bound_through_the_runtime():
    # through the real runtime (tracking controller + bicycle): from the end of the force-GT warm-up
    # (the measured acceleration seeds the jerk limiter) to the standstill at the line (the brake
    # releases as the speed runs out), the driven 10 Hz lon jerk stays inside the comfort bound
    from cordillera.sim.runtime import run_rollout
    from cordillera.world.generator import make

    sc = make("traffic_light", 1000)
    ro = run_rollout(sc, ExpertPolicy(), seed=1000)
    assert not ro.failed, ro.error
    t = ro.t_us()
    xyy = ro.ego_xy_yaw()
    sig = comfort_signals(t, xyy[:, :2], xyy[:, 2])
    closed = t >= ro.force_gt_end_us
    assert np.nanmax(np.abs(sig["lon_jerk"][closed])) < LON_JERK_BOUND
    assert np.nanmax(np.abs(sig["jerk"][closed])) < 8.37
    assert min(s.ego.speed_mps for s in ro.steps) < 0.3  # it did stop for the red light
    plans = [s.plan for s in ro.steps if s.t_us >= ro.force_gt_end_us]
    decs = [p.decisions["longitudinal"] for p in plans]
    assert "Stop" in decs
    # Stop is named only where the plan comes to rest inside the horizon (or creeps below 1 m/s
    # up to the known stop line at its end)
    for p, s in zip(plans, [s for s in ro.steps if s.t_us >= ro.force_gt_end_us]):
        if p.decisions["longitudinal"] == "Stop":
            assert min(s.ego.speed_mps, _plan_speeds(p).min()) < 1.0
            assert p.decisions["stop_line_distance_m"] is not None or _plan_speeds(p).min() < 0.5


def test_far_red_light_is_a_slowing_not_a_stop():
    # 125 m before the line at 13 m/s: the plan slows but cannot be at rest within 6.4 s
    sc = make_scenario(intersection_map(approach_m=160.0), ["A", "AB", "B"], (-140.0, -1.8), ego_speed=13.0,
                       lights=[light_on_A(SignalProgram(mode="stuck_red"))])
    p = plan_from_state(initial_state(sc), sc, 0)
    v = _plan_speeds(p)
    assert v.min() > 0.5
    assert p.decisions["longitudinal"] in ("Adapt Speed", "Resume Speed")
    assert p.decisions["longitudinal"] != "Stop"


# ----------------------------------------------------------------------------------------------
# Yield only when giving way; Resume Speed when accelerating back after a turn
# ----------------------------------------------------------------------------------------------
def test_crossing_pedestrian_that_barely_slows_the_plan_is_not_a_yield():
    # the walker starts crossing 86 m ahead and is clear before the ego arrives: the plan eases off
    # by < 1 m/s and speeds up again — it does not give way, so it must not say Yield
    ped = ActorSpec("ped", "pedestrian", 100.0, -4.0, math.pi / 2, 0.0,
                    behavior=WalkerBehavior(((100.0, -4.0), (100.0, 9.0)), 1.4, start_us=0))
    sc = make_scenario(straight_map(crosswalk_x=100.0), ["L0"], (10.0, 0.0), ego_speed=12.0, actors=[ped])
    p = plan_from_state(initial_state(sc), sc, 0)
    v = _plan_speeds(p)
    assert 12.0 - 1.0 < v.min() < 12.0 and v.max() > 12.5  # eases off a little, then speeds up
    assert p.decisions["longitudinal"] == "Resume Speed"
    assert p.decisions["causal_object"] is None


def test_left_turn_accelerating_out_is_resume_speed_not_adapt_speed():
    prog = SignalProgram(phases=(("green", 60_000_000),))
    sc = make_scenario(intersection_map(), ["A", "AN", "N_out"], (-60.0, -1.8), ego_speed=10.0,
                       lights=[light_on_A(prog)], duration_s=14)
    res = run_perfect_loop(sc, ExpertPolicy())
    _check_motion(res.plans, res.states)
    decs = [p.decisions for p in res.plans]
    assert any(d["longitudinal"] == "Adapt Speed" and d["lateral"] == "Turn" for d in decs)  # slowing into it
    # after the apex the plan speeds up: never "Adapt Speed" there
    for p, ws in zip(res.plans, res.states):
        v = np.concatenate([[ws.ego.speed_mps], _plan_speeds(p)])
        if v[:31].max() > ws.ego.speed_mps + 0.6:
            assert p.decisions["longitudinal"] != "Adapt Speed", (ws.t_us, p.decisions)
    assert res.states[-1].ego.y_m > 12.0


# ----------------------------------------------------------------------------------------------
# Lateral: a finished lane change keeps the lane, the return leg is its own lane change
# ----------------------------------------------------------------------------------------------
def test_lane_change_return_leg_is_named_by_its_direction():
    pk = ActorSpec("parked", "parked_car", 80.0, 0.0, 0.0)
    sc = make_scenario(straight_map(), ["L0"], (10.0, 0.0), ego_speed=10.0, actors=[pk], duration_s=16)
    res = run_perfect_loop(sc, ExpertPolicy())
    y = np.array([ws.ego.y_m for ws in res.states[:-1]])
    decs = [p.decisions for p in res.plans]
    k_peak = int(np.argmax(y))
    assert y[k_peak] > 3.0
    # outbound leg (moving left, below half the shift): Lane Change left
    k_out = int(np.argmax(y > 0.5 * LANE_W))
    assert (decs[k_out]["lateral"], decs[k_out]["lateral_direction"]) == ("Lane Change", "left")
    # return leg (moving right, half way back): Lane Change right, never "left"
    k_back = k_peak + int(np.argmax(y[k_peak:] < 0.5 * LANE_W))
    assert (decs[k_back]["lateral"], decs[k_back]["lateral_direction"]) == ("Lane Change", "right")
    # once back and holding the lane: Keep Lane
    assert decs[-1]["lateral"] == "Keep Lane"
    _check_motion(res.plans, res.states)


# ----------------------------------------------------------------------------------------------
# Pass/Overtake a slow moving vehicle; construction zone speed
# ----------------------------------------------------------------------------------------------
def test_overtakes_a_slow_moving_truck_in_a_free_neighbour_lane():
    truck = ActorSpec("truck", "truck", 60.0, 0.0, 0.0, 4.0, length_m=10.0, width_m=2.5,
                      behavior=IdmBehavior(("L0",), params=IdmParams(desired_speed_mps=4.0)))
    sc = make_scenario(straight_map(length_m=600.0), ["L0"], (10.0, 0.0), ego_speed=12.0, actors=[truck],
                       duration_s=22)
    res = run_perfect_loop(sc, ExpertPolicy())
    assert min_distance(sc, res, "truck") > 0.5
    end = res.states[-1]
    assert end.ego.x_m > end.actors["truck"].x_m + 15.0  # passed it, not stuck following at 4 m/s
    assert abs(end.ego.y_m) < 0.3  # back in the original lane
    decs = [p.decisions for p in res.plans]
    passes = [d for d in decs if d["longitudinal"] == "Pass/Overtake"]
    assert passes and all(d["lateral"] == "Lane Change" for d in passes)
    assert passes[0]["lateral_direction"] == "left" and passes[0]["causal_object"]["id"] == "truck"
    _check_motion(res.plans, res.states)


def test_does_not_overtake_a_slow_truck_without_a_same_direction_lane():
    truck = ActorSpec("truck", "truck", 60.0, 0.0, 0.0, 4.0, length_m=10.0, width_m=2.5,
                      behavior=IdmBehavior(("L0",), params=IdmParams(desired_speed_mps=4.0)))
    sc = make_scenario(straight_map(n_lanes=1, opposite=True), ["L0"], (10.0, 0.0), ego_speed=12.0, actors=[truck],
                       duration_s=12)
    res = run_perfect_loop(sc, ExpertPolicy())
    assert max(abs(ws.ego.y_m) for ws in res.states) < 0.3  # never into the oncoming lane
    assert min_distance(sc, res, "truck") > 2.0
    assert res.plans[-1].decisions["longitudinal"] == "Keep Distance"


def test_construction_zone_slows_to_the_zone_speed_and_says_adapt_speed():
    cones = [ActorSpec(f"cone{i}", "cone", 80.0 + 4 * i, -1.3, 0.0) for i in range(8)]
    sc = make_scenario(straight_map(n_lanes=1, opposite=True), ["L0"], (10.0, 0.0), ego_speed=12.0, actors=cones,
                       duration_s=14)
    res = run_perfect_loop(sc, ExpertPolicy())
    zone_v = ExpertParams().work_zone_speed_mps
    # slowing starts ahead of the first cone; at the zone speed from the third cone on
    beside = [ws.ego.speed_mps for ws in res.states if 80.0 <= ws.ego.x_m <= 108.0]
    inside = [ws.ego.speed_mps for ws in res.states if 88.0 <= ws.ego.x_m <= 108.0]
    assert beside and max(beside) <= zone_v + 0.5 and max(inside) <= zone_v + 0.1
    decs = [p.decisions for p in res.plans]
    assert any((d["longitudinal"], d["lateral"], d["lateral_direction"]) == ("Adapt Speed", "Nudge", "left")
               for d in decs)
    assert min(min_distance(sc, res, c.id) for c in cones) >= 0.5
    _check_motion(res.plans, res.states)
