"""Closed-loop scorers on hand-built geometry (numbers derived in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cordillera.metrics.closedloop import (
    COMFORT_SIGNALS,
    METRICS_COLUMNS,
    box_polygon,
    comfort_signals,
    compute_metrics,
    metrics_to_frame,
    time_to_collision_s,
)
from cordillera.world.scenario import AgentState

# Ego (EgoSpec defaults): length 5.393, width 2.109, rig→centre 1.3965. With the 0.02 shrink the
# half-length is 2.64257 and the half-width 1.03341; a car (4.6 × 1.9) shrinks to 2.254 × 0.931 half sides.
EGO_X = 10.0
EGO_CX = EGO_X + 1.3965
EGO_FRONT = EGO_CX + 5.393 * 0.98 / 2  # 14.03907
EGO_REAR = EGO_CX - 5.393 * 0.98 / 2  # 8.75393
EGO_HW = 2.109 * 0.98 / 2
CAR_HL = 4.6 * 0.98 / 2
CAR_HW = 1.9 * 0.98 / 2


def _last(rows, name):
    r = {x.name: x for x in rows}[name]
    return r


def _one_step(mk, actors_xy, ego=(EGO_X, 0.0, 0.0)):
    specs = [mk.car(f"a{i}", x, y) for i, (x, y) in enumerate(actors_xy)]
    sc = mk.scenario(actors=specs)
    states = {f"a{i}": AgentState(x, y, 0.0) for i, (x, y) in enumerate(actors_xy)}
    ro = mk.rollout([ego, ego, ego], actors=states)
    return sc, compute_metrics(ro, sc)


def _v(rows, name, i=-1):
    return float(_last(rows, name).values[i])


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
def test_box_polygon_is_shrunk_and_rounded():
    p = box_polygon(0.0, 0.0, 0.0, 4.0, 2.0)
    l, w = 4.0 * 0.98, 2.0 * 0.98
    r = 0.5 * w / 2
    # A rounded rectangle loses (4 − π) r² of area against the sharp one.
    assert p.area == pytest.approx(l * w - (4 - math.pi) * r * r, rel=2e-3)
    minx, miny, maxx, maxy = p.bounds
    assert (maxx, maxy) == pytest.approx((l / 2, w / 2), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# collisions
# ---------------------------------------------------------------------------------------------
def test_boxes_one_centimetre_apart_do_not_collide(mk):
    _, rows = _one_step(mk, [(EGO_FRONT + 0.01 + CAR_HL, 0.0)])
    for k in ("collision_front", "collision_rear", "collision_lateral", "collision_any"):
        assert _v(rows, k) == 0.0
    assert _v(rows, "min_distance_to_obstacle_m") == pytest.approx(0.01, abs=1e-6)


def test_front_overlap_is_front_collision(mk):
    _, rows = _one_step(mk, [(EGO_FRONT + CAR_HL - 0.3, 0.0)])
    assert [_v(rows, k) for k in ("collision_front", "collision_rear", "collision_lateral", "collision_any")] == [1, 0, 0, 1]


def test_rear_overlap_is_rear_collision(mk):
    _, rows = _one_step(mk, [(EGO_REAR - CAR_HL + 0.3, 0.0)])
    assert [_v(rows, k) for k in ("collision_front", "collision_rear", "collision_lateral", "collision_any")] == [0, 1, 0, 1]


def test_side_overlap_is_lateral_collision(mk):
    _, rows = _one_step(mk, [(EGO_CX, EGO_HW + CAR_HW - 0.2)])
    assert [_v(rows, k) for k in ("collision_front", "collision_rear", "collision_lateral", "collision_any")] == [0, 0, 1, 1]


def test_classes_follow_the_last_intersecting_actor(mk):
    # a0 hits the front, a1 (later in the loop) the side: AlpaSim reports lateral only.
    _, rows = _one_step(mk, [(EGO_FRONT + CAR_HL - 0.3, 0.0), (EGO_CX, -(EGO_HW + CAR_HW - 0.2))])
    assert [_v(rows, k) for k in ("collision_front", "collision_rear", "collision_lateral", "collision_any")] == [0, 0, 1, 1]


def test_invisible_actor_is_ignored(mk):
    sc = mk.scenario(actors=[mk.car("a0", EGO_CX, 0.0)])
    ro = mk.rollout([(EGO_X, 0.0, 0.0)] * 3, actors={"a0": AgentState(EGO_CX, 0.0, 0.0, visible=False)})
    rows = compute_metrics(ro, sc)
    assert _v(rows, "collision_any") == 0.0
    assert not _last(rows, "min_distance_to_obstacle_m").valid.any()


# ---------------------------------------------------------------------------------------------
# map
# ---------------------------------------------------------------------------------------------
def _map_rows(mk, ego):
    sc = mk.scenario()
    return compute_metrics(mk.rollout([ego] * 3), sc)


def test_ego_on_its_lane_is_not_offroad(mk):
    rows = _map_rows(mk, (EGO_X, 0.0, 0.0))
    assert _v(rows, "offroad") == 0.0 and _v(rows, "wrong_lane") == 0.0
    # union of L0 and L1 spans y in [−1.8, 5.4]; the ego polygon reaches y = −1.03341
    assert _v(rows, "min_distance_to_lane_boundary_m") == pytest.approx(1.8 - EGO_HW, abs=1e-3)


def test_ego_straddling_two_lanes_is_not_offroad(mk):
    rows = _map_rows(mk, (EGO_X, 1.8, 0.0))
    assert _v(rows, "offroad") == 0.0


def test_ego_across_the_road_edge_is_offroad(mk):
    rows = _map_rows(mk, (EGO_X, -1.8, 0.0))
    assert _v(rows, "offroad") == 1.0
    assert _v(rows, "min_distance_to_lane_boundary_m") == 0.0


def test_ego_fully_beyond_the_kerb_is_not_offroad_alpasim_quirk(mk):
    # Not contained in any lane, but 3 m away from the closest road edge: AlpaSim says "on road".
    rows = _map_rows(mk, (EGO_X, -6.0, 0.0))
    assert _v(rows, "offroad") == 0.0


def test_wrong_way_is_wrong_lane(mk):
    rows = _map_rows(mk, (EGO_X, 3.6, 0.0))  # on westbound L1, heading east
    assert _v(rows, "wrong_lane") == 1.0
    rows = _map_rows(mk, (EGO_X + 5, 3.6, math.pi))  # on L1 heading west: fine
    assert _v(rows, "wrong_lane") == 0.0


def test_wrong_lane_wraps_angles(mk):
    # L1 heads π; an ego at yaw −π + 0.01 drives the same way. Unwrapped (AlpaSim) it would be flagged.
    from cordillera.metrics.closedloop import MetricsConfig

    sc = mk.scenario()
    ro = mk.rollout([(EGO_X + 5, 3.6, -math.pi + 0.01)] * 3)
    assert _v(compute_metrics(ro, sc), "wrong_lane") == 0.0
    assert _v(compute_metrics(ro, sc, config=MetricsConfig(wrong_lane_wrap_angle=False)), "wrong_lane") == 1.0


# ---------------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------------
def test_progress_on_straight_reference_is_travelled_over_total(mk):
    sc = mk.scenario()
    n = 51  # 5 s
    ref = mk.rollout([(EGO_X + 10.0 * 0.1 * i, 0.0, 0.0, 10.0) for i in range(n)])
    ro = mk.rollout([(EGO_X + 4.0 * 0.1 * i, 0.0, 0.0, 4.0) for i in range(n)])
    rows = compute_metrics(ro, sc, reference=ref)
    assert _v(rows, "gt_dist_traveled_m") == pytest.approx(50.0)
    assert _v(rows, "dist_traveled_m") == pytest.approx(20.0)
    assert _v(rows, "progress") == pytest.approx(20.0 / 50.0)
    assert _v(rows, "progress_rel_to_total") == pytest.approx(0.4)
    # at 2.0 s the GT is at +20 m and the ego at +8 m: progress along the current GT = 0.4
    assert _last(rows, "progress_rel").values[20] == pytest.approx(0.4)
    assert _last(rows, "dist_to_gt_location").values[-1] == pytest.approx(30.0)
    assert _v(rows, "dist_to_gt_trajectory") == pytest.approx(0.0, abs=1e-9)
    # first two timestamps: heuristic values
    p = _last(rows, "progress").values
    assert p[0] == 0.0 and p[1] == pytest.approx(p[2] / 2)
    assert list(_last(rows, "progress_rel").values[:2]) == [1.0, 1.0]


def test_progress_without_reference_uses_route_at_start_speed(mk):
    sc = mk.scenario(ego_speed=10.0)
    n = 31
    ro = mk.rollout([(EGO_X + 1.0 * i, 0.0, 0.0, 10.0) for i in range(n)])
    rows = compute_metrics(ro, sc, reference=None)
    assert _v(rows, "gt_dist_traveled_m") == pytest.approx(30.0)
    assert _v(rows, "progress") == pytest.approx(1.0)
    assert _v(rows, "dist_to_gt_location") == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------------------------
def test_plan_deviation_identical_plans_is_zero_and_shifted_is_one(mk):
    sc = mk.scenario()
    # the ego moves 1 m per step along its 10 m/s plan, so consecutive plans agree in local
    ego = [(EGO_X + 1.0 * i, 0.0, 0.0, 10.0) for i in range(3)]
    same = [mk.plan(i * 100_000, 10.0) for i in range(3)]
    rows = compute_metrics(mk.rollout(ego, plans=same), sc)
    pd = _last(rows, "plan_deviation")
    assert list(pd.timestamps_us) == [100_000, 200_000]
    assert pd.values == pytest.approx([0.0, 0.0], abs=1e-9)
    shifted = [mk.plan(0, 10.0), mk.plan(100_000, 10.0, y_rig=1.0), mk.plan(200_000, 10.0, y_rig=1.0)]
    pd = _last(compute_metrics(mk.rollout(ego, plans=shifted), sc), "plan_deviation")
    assert pd.values == pytest.approx([1.0, 0.0], abs=1e-9)


def test_min_ade_only_with_alternatives(mk):
    sc = mk.scenario()
    n = 61
    ref = mk.rollout([(EGO_X + 1.0 * i, 0.0, 0.0, 10.0) for i in range(n)])
    ego = [(EGO_X + 1.0 * i, 0.0, 0.0, 10.0) for i in range(n)]
    rows = compute_metrics(mk.rollout(ego, plans=[mk.plan(i * 100_000, 10.0) for i in range(n)]), sc, reference=ref)
    assert not any(r.name.startswith("min_ade") for r in rows)
    alt_ok = mk.plan(0, 10.0)
    alt_off = mk.plan(0, 10.0, y_rig=2.0)
    plans = [mk.plan(i * 100_000, 10.0, alternatives=[(alt_off.xyz_rig, alt_off.yaw_rig), (alt_ok.xyz_rig, alt_ok.yaw_rig)])
             for i in range(n)]
    rows = compute_metrics(mk.rollout(ego, plans=plans), sc, reference=ref)
    r = _last(rows, "min_ade@1.0s(gt)")
    assert r.valid[0] and r.values[0] == pytest.approx(0.0, abs=1e-9)
    assert not r.valid[-1]  # GT ends before t + 1 s
    plans = [mk.plan(i * 100_000, 10.0, alternatives=[(alt_off.xyz_rig, alt_off.yaw_rig)]) for i in range(n)]
    r = _last(compute_metrics(mk.rollout(ego, plans=plans), sc, reference=ref), "min_ade@2.5s(gt)")
    assert r.values[0] == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------
# traffic rules
# ---------------------------------------------------------------------------------------------
# front bumper midpoint = rig + 1.3965 + 2.6965 = rig + 4.093; the stop line is at x = 100
FRONT_OFF = 1.3965 + 5.393 / 2


@pytest.mark.parametrize("state,expected", [("red", 1.0), ("green", 0.0), ("yellow", 0.0)])
def test_red_light_crossing(mk, state, expected):
    sc = mk.scenario()
    xs = [100 - FRONT_OFF - 2.0 + 1.0 * i for i in range(5)]  # front at 98, 99, 100, 101, 102: reaches the line at step 2
    ro = mk.rollout([(x, 0.0, 0.0, 10.0) for x in xs], signals={"TL": state})
    r = _last(compute_metrics(ro, sc), "red_light_violation")
    assert r.values.sum() == expected  # counted once, even though the front touches the line at step 2
    if expected:
        assert int(np.argmax(r.values)) == 2


def test_red_light_not_counted_for_other_direction(mk):
    sc = mk.scenario()
    # heading west on L0 (wrong way): the front point (rig − 4.093 in x) passes x = 100 going west
    xs = [100 + FRONT_OFF + 2.0 - 1.0 * i for i in range(5)]
    ro = mk.rollout([(x, 0.0, math.pi, 10.0) for x in xs], signals={"TL": "red"})
    assert _v(compute_metrics(ro, sc), "red_light_violation") == 0.0
    # eastbound in the other lane's position (y = 3.6): beside the stop line, not through it
    xs = [100 - FRONT_OFF - 2.0 + 1.0 * i for i in range(5)]
    ro = mk.rollout([(x, 3.6, 0.0, 10.0) for x in xs], signals={"TL": "red"})
    assert _last(compute_metrics(ro, sc), "red_light_violation").values.max() == 0.0


def test_stop_sign_rolling_through_is_violation_and_full_stop_is_not(mk):
    sc = mk.scenario(stop_sign=True, light=False)
    rolling = [(100 - FRONT_OFF - 3.0 + 1.0 * i, 0.0, 0.0, 10.0) for i in range(6)]
    assert _last(compute_metrics(mk.rollout(rolling), sc), "stop_sign_violation").values.max() == 1.0
    stopping = [(100 - FRONT_OFF - 2.0, 0.0, 0.0, 0.2)] * 3 + [(100 - FRONT_OFF - 2.0 + 1.0 * i, 0.0, 0.0, 3.0) for i in range(1, 5)]
    r = _last(compute_metrics(mk.rollout(stopping), sc), "stop_sign_violation")
    assert r.values.max() == 0.0
    assert _v(compute_metrics(mk.rollout(rolling), sc), "red_light_violation") == 0.0


def test_flashing_red_light_acts_as_stop_sign(mk):
    sc = mk.scenario()
    rolling = [(100 - FRONT_OFF - 3.0 + 1.0 * i, 0.0, 0.0, 10.0) for i in range(6)]
    rows = compute_metrics(mk.rollout(rolling, signals={"TL": "flashing_red"}), sc)
    assert _last(rows, "stop_sign_violation").values.max() == 1.0
    assert _last(rows, "red_light_violation").values.max() == 0.0


# ---------------------------------------------------------------------------------------------
# close encounters
# ---------------------------------------------------------------------------------------------
def test_time_to_collision_of_closing_boxes():
    a = box_polygon(0.0, 0.0, 0.0, 4.0, 2.0, 0.0, 0.0)
    b = box_polygon(14.0, 0.0, 0.0, 4.0, 2.0, 0.0, 0.0)  # gap 10 m
    assert time_to_collision_s(a, np.array([10.0, 0.0]), b, np.zeros(2), 1.5) == pytest.approx(1.0, abs=2e-3)
    assert time_to_collision_s(a, np.array([5.0, 0.0]), b, np.zeros(2), 1.5) is None  # 2 s away
    assert time_to_collision_s(a, np.array([10.0, 0.0]), b, np.array([10.0, 0.0]), 1.5) is None  # same speed


def test_close_encounter_from_ttc_and_vru(mk):
    sc = mk.scenario(actors=[mk.car("a0", 0.0, 0.0)])
    near = {"a0": AgentState(EGO_FRONT + 10.0 + CAR_HL, 0.0, 0.0)}  # shrunk straight edges 10 m apart
    ro = mk.rollout([(EGO_X, 0.0, 0.0, 10.0)] * 3, actors=near)
    rows = compute_metrics(ro, sc)
    assert _v(rows, "close_encounter") == 1.0
    assert _v(rows, "min_time_to_collision_s") == pytest.approx(1.0, abs=2e-3)
    far = {"a0": AgentState(EGO_FRONT + 20.0 + CAR_HL, 0.0, 0.0)}
    rows = compute_metrics(mk.rollout([(EGO_X, 0.0, 0.0, 10.0)] * 3, actors=far), sc)
    assert _v(rows, "close_encounter") == 0.0 and not _last(rows, "min_time_to_collision_s").valid.any()
    # a stationary pedestrian 0.5 m beside a stationary ego
    sc = mk.scenario(actors=[mk.car("p", 0.0, 0.0, kind="pedestrian")])
    ped = {"p": AgentState(EGO_CX, EGO_HW + 0.5 + 0.6 * 0.98 / 2, 0.0)}
    rows = compute_metrics(mk.rollout([(EGO_X, 0.0, 0.0, 0.0)] * 3, actors=ped), sc)
    assert _v(rows, "close_encounter") == 1.0
    assert _v(rows, "min_distance_to_obstacle_m") == pytest.approx(0.5, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# comfort
# ---------------------------------------------------------------------------------------------
def _comfort(rows):
    return {k: _v(rows, f"comfort_{k}") for k in COMFORT_SIGNALS}, _v(rows, "comfort")


def test_comfort_constant_speed_passes_everything(mk):
    sc = mk.scenario()
    rows = compute_metrics(mk.rollout([(EGO_X + 1.0 * i, 0.0, 0.0, 10.0) for i in range(40)]), sc)
    per, mean = _comfort(rows)
    assert all(v == 1.0 for v in per.values()) and mean == 1.0


def test_comfort_hard_acceleration_fails_lon_accel_only(mk):
    # x = 1.5 t² (3 m/s²): lon accel 3 > 2.40, jerk 0
    sc = mk.scenario()
    t = np.arange(40) * 0.1
    ro = mk.rollout([(EGO_X + 1.5 * tt * tt, 0.0, 0.0) for tt in t])
    sig = comfort_signals(ro.t_us(), ro.ego_xy_yaw()[:, :2], ro.ego_xy_yaw()[:, 2])
    assert sig["lon_accel"][2:] == pytest.approx(3.0)
    assert sig["jerk"][3:] == pytest.approx(0.0, abs=1e-9)
    per, mean = _comfort(compute_metrics(ro, sc))
    assert per["lon_accel"] == 0.0 and sum(per.values()) == 5.0
    assert mean == pytest.approx(5 / 6)
    # the same acceleration inside the force-GT warm-up only is not counted
    ro2 = mk.rollout([(EGO_X + 1.5 * tt * tt, 0.0, 0.0) for tt in t[:20]] + [(EGO_X + 1.5 * 1.9**2 + 5.7 * (tt - 1.9), 0.0, 0.0) for tt in t[20:]],
                     force_gt_end_us=2_100_000)
    per2, _ = _comfort(compute_metrics(ro2, sc))
    assert per2["lon_accel"] == 1.0


def test_comfort_fast_turn_fails_yaw_rate(mk):
    # a circle of radius 10 m at 10 m/s: yaw rate 1.0 rad/s > 0.95
    sc = mk.scenario()
    th = np.arange(30) * 0.1
    ro = mk.rollout([(EGO_X + 10 * math.sin(a), 10 - 10 * math.cos(a), a) for a in th])
    sig = comfort_signals(ro.t_us(), ro.ego_xy_yaw()[:, :2], ro.ego_xy_yaw()[:, 2])
    assert sig["yaw_rate"][1:] == pytest.approx(1.0)
    per, _ = _comfort(compute_metrics(ro, sc))
    assert per["yaw_rate"] == 0.0 and per["yaw_accel"] == 1.0


# ---------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------
def test_eval_relevant_img_black_and_frame_columns(mk):
    sc = mk.scenario()
    ro = mk.rollout([(EGO_X + i, 0.0, 0.0, 10.0) for i in range(5)], force_gt_end_us=200_000)
    rows = compute_metrics(ro, sc)
    assert list(_last(rows, "eval_relevant").values) == [0, 0, 1, 1, 1]
    assert not _last(rows, "img_is_black").valid.any()
    df = metrics_to_frame(rows, "straight", "r0", "u", "LR-u")
    assert tuple(df.columns) == METRICS_COLUMNS
    assert df.height == sum(len(r.timestamps_us) for r in rows)
    names = set(df["name"].to_list())
    for k in ("collision_front", "collision_rear", "collision_lateral", "collision_any", "offroad", "wrong_lane",
              "min_distance_to_lane_boundary_m", "progress", "progress_rel_to_total", "progress_rel",
              "dist_to_gt_trajectory", "dist_to_gt_location", "dist_traveled_m", "gt_dist_traveled_m",
              "eval_relevant", "img_is_black", "red_light_violation", "stop_sign_violation", "close_encounter", "comfort"):
        assert k in names, k


def test_bad_rollouts_are_rejected(mk):
    sc = mk.scenario()
    ro = mk.rollout([(EGO_X, 0.0, 0.0)] * 3)
    ro.status, ro.error = "failed", "boom"
    with pytest.raises(ValueError, match="failed"):
        compute_metrics(ro, sc)
    ro = mk.rollout([(EGO_X, 0.0, 0.0)] * 3, scenario_id="other")
    with pytest.raises(ValueError, match="scenario"):
        compute_metrics(ro, sc)


def test_wrong_lane_ignores_opposing_junction_connectors(mk):
    # Crossing a junction box legally puts the ego inside the opposing straight connector.
    from cordillera.metrics.closedloop import MetricsConfig
    from cordillera.world.generator import make

    sc = make("traffic_light", 1000)
    conn = next(lane for lane in sc.map.lanes.values() if lane.is_intersection and lane.turn == "straight")
    s_mid = conn.length_m / 2
    x, y = conn.position(s_mid, 0.0)
    yaw_opposite = float(conn.heading_at(s_mid)) + math.pi
    # Place the ego (rig origin) so that its box centre sits on the connector, driving against it.
    off = sc.ego.rear_axle_to_center_m
    ego = (x - off * math.cos(yaw_opposite), y - off * math.sin(yaw_opposite), yaw_opposite)
    ro = mk.rollout([ego] * 3, scenario_id=sc.id)
    assert _v(compute_metrics(ro, sc), "wrong_lane") == 0.0
    cfg = MetricsConfig(wrong_lane_skip_connectors=False)
    assert _v(compute_metrics(ro, sc, config=cfg), "wrong_lane") == 1.0
