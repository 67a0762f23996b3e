"""The designed hazard really happens in the ego's path, at the time the ego meets it when it
keeps its start speed (simple kinematics on the scenario data only)."""

import math

import numpy as np
import pytest

from cordillera.world import generator
from cordillera.world.families._common import EGO_FRONT_M
from cordillera.world.map import Lane

SEEDS = range(1000, 1012)


def _make(family):
    return [generator.make(family, s) for s in SEEDS]


def route_lane(sc) -> Lane:
    return Lane("route", sc.route_polyline_xy())


def ego_s0(sc) -> float:
    (s,), _ = route_lane(sc).to_frenet(np.array([[sc.ego.x_m, sc.ego.y_m]]))
    return float(s)


def front_distance_to(sc, xy) -> float:
    """Route arc length from the ego's front bumper to the projection of ``xy`` on the route."""
    (s,), _ = route_lane(sc).to_frenet(np.asarray([xy], dtype=float))
    return float(s) - ego_s0(sc) - EGO_FRONT_M


def stop_line_distance(sc) -> float:
    """Ego front to its stop line (uncontrolled junction: to where it would be, 5 m before the end
    of the approach lane, i.e. behind the crosswalk)."""
    lid = next((l for l in sc.ego.route_lane_ids if sc.map.stop_lines_on(l)), None)
    if lid is None:
        first = sc.map.lane(sc.ego.route_lane_ids[0])
        return front_distance_to(sc, first.position(first.length_m - 5.0))
    sl = sc.map.stop_lines_on(lid)[0]
    return front_distance_to(sc, sl.segment_xy.mean(axis=0))


def hazard(sc, kind):
    return next(h for h in sc.hazards if h.kind == kind)


def test_road_following_sign_is_passed_at_the_hazard_time():
    for sc in _make("road_following"):
        sign = next(s for s in sc.map.signs if s.id == "sign_limit_b")
        d = front_distance_to(sc, (sign.x_m, sign.y_m))
        h = hazard(sc, "speed_limit_change")
        assert h.t_us / 1e6 == pytest.approx(d / sc.ego.speed_mps, abs=0.06)
        assert 3.0 <= h.t_us / 1e6 <= 8.0
        # the second section's limit is consistent with the curve (lateral accel <= 2 m/s²)
        second = sc.map.lane(sc.ego.route_lane_ids[1])
        k = abs(sc.params["curvature_1pm"])
        assert second.speed_limit_mps ** 2 * k <= 2.0 + 1e-9
        assert sign.value == pytest.approx(second.speed_limit_mps * 3.6)


def test_car_following_lead_brakes_ahead_in_ego_lane():
    for sc in _make("car_following"):
        lead = sc.actor("lead")
        h = hazard(sc, "lead_braking")
        assert h.actor_id == "lead" and lead.behavior.brake_events[0].t_us == h.t_us
        assert lead.behavior.route_lane_ids[0] == sc.ego.route_lane_ids[0]
        gap = front_distance_to(sc, (lead.x_m, lead.y_m)) - 0.5 * lead.length_m
        # at least ~1.5 s headway, so a careful driver keeps distance without a crash
        assert sc.ego.speed_mps * 1.5 <= gap <= sc.ego.speed_mps * 2.7
        ev = lead.behavior.brake_events[0]
        assert 2.0 <= ev.decel_mps2 <= 3.5 and 3.0e6 <= ev.t_us <= 8.0e6


def test_traffic_light_state_when_the_ego_arrives():
    seen = set()
    for sc in _make("traffic_light"):
        light = next(t for t in sc.traffic_lights if sc.ego.route_lane_ids[0] in t.lane_ids)
        d0 = stop_line_distance(sc)
        v = sc.ego.speed_mps
        t_arrive_us = int(d0 / v * 1e6)
        variant = sc.params["variant"]
        seen.add(variant)
        prog = light.program
        if variant == "turns_red":
            t_red = hazard(sc, "red_light").t_us
            assert prog.state_at(t_red - 1) == "yellow" and prog.state_at(t_red) == "red"
            assert prog.state_at(t_red - 3_000_000) == "yellow" and prog.state_at(t_red - 3_000_001) == "green"
            assert prog.state_at(t_arrive_us) == "red"
            assert 30.0 - 0.6 <= d0 - v * t_red / 1e6 <= 50.0 + 0.6  # ego 30-50 m before the line at red
            # the stop is comfortable if the ego brakes at the yellow onset
            d_yellow = d0 - v * (t_red - 3_000_000) / 1e6
            assert v**2 / (2 * d_yellow) < 2.0
        elif variant == "red_to_green":
            t_g = hazard(sc, "green_light").t_us
            assert prog.state_at(0) == "red" and prog.state_at(t_g) == "green" and prog.state_at(t_g - 1) == "red"
            assert prog.state_at(t_arrive_us) == "green"
            assert 25.0 - 0.6 <= d0 - v * t_g / 1e6 <= 45.0 + 0.6
        else:
            assert all(prog.state_at(t) == "green" for t in range(0, t_arrive_us + 3_000_000, 100_000))
        # crossing heads never show green together with the ego's head
        cross = next(t for t in sc.traffic_lights if t.id == "light_N")
        for t in range(0, 20_000_000, 100_000):
            assert not (prog.state_at(t) in ("green", "yellow") and cross.program.state_at(t) in ("green", "yellow"))
        assert light.z_m == pytest.approx(5.0)
    assert {"turns_red"} <= seen


def _walker_lane_entry_time_s(sc, walker, lane) -> float:
    """Time the walker's centre comes within (half lane + 0.3 m) of ``lane``'s centreline."""
    b = walker.behavior
    path = Lane("walk", np.asarray(b.path_xy))
    s = np.arange(0.0, path.length_m, 0.02)
    _, r = lane.to_frenet(path.position(s))
    k = int(np.argmax(np.abs(r) <= 0.5 * lane.width_m + 0.3 + 1e-6))
    assert np.abs(r[k]) <= 0.5 * lane.width_m + 0.31, "walker never reaches the ego lane"
    return b.start_us / 1e6 + s[k] / b.speed_mps


@pytest.mark.parametrize("family,lo,hi", [("pedestrian_crosswalk", 20.0, 35.0), ("jaywalker", 20.0, 35.0)])
def test_walker_enters_ego_lane_when_ego_is_20_to_35_m_away(family, lo, hi):
    for sc in _make(family):
        walker = sc.actor("ped0" if family == "pedestrian_crosswalk" else "jaywalker")
        lane = sc.map.lane(sc.ego.route_lane_ids[0])
        t_enter = _walker_lane_entry_time_s(sc, walker, lane)
        # the walker path crosses the ego route polyline within the scenario duration
        from shapely.geometry import LineString
        assert LineString(walker.behavior.path_xy).intersects(LineString(sc.route_polyline_xy()))
        assert t_enter < sc.duration_us / 1e6
        x_cross = front_distance_to(sc, walker.behavior.path_xy[0])
        d = x_cross - sc.ego.speed_mps * t_enter
        assert lo - 0.3 <= d <= hi + 1.0, f"{sc.id}: ego {d:.1f} m away when the walker enters its lane"
        assert hazard(sc, "pedestrian_crossing" if family == "pedestrian_crosswalk" else "jaywalker").t_us == \
            walker.behavior.start_us
        # a careful driver can stop: from the hazard onset at <= 4 m/s²
        d_onset = x_cross - sc.ego.speed_mps * walker.behavior.start_us / 1e6
        assert sc.ego.speed_mps ** 2 / (2 * (d_onset - 2.0)) < 4.0
    crosswalk_sc = generator.make("pedestrian_crosswalk", 1000)
    cw = crosswalk_sc.map.crosswalks[0].polygon_xy
    px = crosswalk_sc.actor("ped0").behavior.path_xy[0][0]
    assert cw[:, 0].min() < px < cw[:, 0].max()


def test_cut_in_lands_10_to_20_m_ahead_in_ego_lane():
    for sc in _make("cut_in"):
        cutter = sc.actor("cutter")
        ev = cutter.behavior.lane_change_events[0]
        assert ev.target_lane_id == sc.ego.route_lane_ids[0]
        assert cutter.behavior.route_lane_ids[0] != ev.target_lane_id
        assert ev.target_lane_id in (sc.map.lane(cutter.behavior.route_lane_ids[0]).left_neighbor,
                                     sc.map.lane(cutter.behavior.route_lane_ids[0]).right_neighbor)
        t_land = (ev.t_us + ev.duration_us) / 1e6
        d0 = front_distance_to(sc, (cutter.x_m, cutter.y_m)) - 0.5 * cutter.length_m
        gap = d0 + (cutter.speed_mps - sc.ego.speed_mps) * t_land
        assert 10.0 - 0.3 <= gap <= 20.0 + 0.3
        assert cutter.speed_mps <= sc.ego.speed_mps and hazard(sc, "cut_in").t_us == ev.t_us


def test_left_turn_oncoming_vehicle_conflicts_with_the_turn():
    from cordillera.world.families import _junction as J
    for sc in _make("unprotected_left_turn"):
        route = sc.ego.route_lane_ids
        assert sc.map.lane(route[1]).turn == "left"
        onc = sc.actor("oncoming0")
        s_conf = J.conflict_s(sc.map, route, onc.behavior.route_lane_ids)
        (s0,), _ = Lane("r", J.route_polyline(sc.map, onc.behavior.route_lane_ids)).to_frenet(
            np.array([[onc.x_m, onc.y_m]]))
        t_onc = (s_conf - s0 - 0.5 * onc.length_m) / onc.speed_mps
        t_ego = stop_line_distance(sc) / sc.ego.speed_mps
        assert -0.5 - 0.1 <= t_onc - t_ego <= 2.0 + 0.1
        for light in sc.traffic_lights:  # permissive: the ego's light stays green
            if route[0] in light.lane_ids:
                assert all(light.program.state_at(t) == "green" for t in range(0, 20_000_000, 500_000))


@pytest.mark.parametrize("family,lo,hi", [("stop_sign", 2.0, 5.0), ("faulty_traffic_light", 1.5, 4.5)])
def test_cross_traffic_reaches_the_ego_path_after_its_stop(family, lo, hi):
    from cordillera.world.families import _junction as J
    for sc in _make(family):
        route = sc.ego.route_lane_ids
        cross = sc.actor("cross0")
        s_conf = J.conflict_s(sc.map, route, cross.behavior.route_lane_ids)
        (s0,), _ = Lane("r", J.route_polyline(sc.map, cross.behavior.route_lane_ids)).to_frenet(
            np.array([[cross.x_m, cross.y_m]]))
        t_cross = (s_conf - s0 - 0.5 * cross.length_m) / cross.speed_mps
        t_ego = stop_line_distance(sc) / sc.ego.speed_mps
        assert lo - 0.1 <= t_cross - t_ego <= hi + 0.1
        if family == "stop_sign":
            assert any(s.kind == "stop" and route[0] in s.lane_ids for s in sc.map.signs)
            assert not any(s.kind == "stop" and cross.behavior.route_lane_ids[0] in s.lane_ids for s in sc.map.signs)


def test_faulty_light_programs_are_dark_or_flashing_when_the_ego_arrives():
    modes = set()
    for sc in _make("faulty_traffic_light"):
        t_ego = int(stop_line_distance(sc) / sc.ego.speed_mps * 1e6)
        ego_light = next(t for t in sc.traffic_lights if sc.ego.route_lane_ids[0] in t.lane_ids)
        mode = sc.params["mode"]
        modes.add(mode)
        assert ego_light.program.mode == mode and ego_light.program.fault_start_us < t_ego
        assert ego_light.program.state_at(t_ego) == mode
        assert ego_light.program.state_at(19_900_000) == mode
        cross_light = next(t for t in sc.traffic_lights if t.id == "light_S")
        assert cross_light.program.state_at(t_ego) == ("flashing_red" if mode == "flashing_yellow" else mode)
        if ego_light.program.fault_start_us > 0:
            assert ego_light.program.state_at(0) == "green"
    assert len(modes) >= 2


def test_pass_blocked_blocker_is_ahead_in_ego_lane_and_slower():
    for sc in _make("pass_blocked"):
        b = sc.actor("blocker")
        lane = sc.map.lane(sc.ego.route_lane_ids[0])
        assert lane.on_lane(np.array([b.x_m, b.y_m])) and lane.left_neighbor is not None
        gap0 = front_distance_to(sc, (b.x_m, b.y_m)) - 0.5 * b.length_m
        t_rel = hazard(sc, "blocked_lane").t_us / 1e6
        assert gap0 - (sc.ego.speed_mps - b.speed_mps) * t_rel == pytest.approx(50.0, abs=0.6)
        assert b.speed_mps <= 5.0 < sc.ego.speed_mps


def test_merge_conflict_vehicle_reaches_the_merge_point_with_the_ego():
    for sc in _make("merge_on_ramp"):
        ramp = sc.map.lane("RAMP")
        assert sc.ego.route_lane_ids[-2:] == ("RAMP", ramp.successors[0])
        merge_xy = ramp.centerline_xy[-1]
        t_ego = front_distance_to(sc, merge_xy) / sc.ego.speed_mps
        main0 = sc.actor("main0")
        t_main = (merge_xy[0] - main0.x_m - 0.5 * main0.length_m) / main0.speed_mps
        assert abs(t_main - t_ego) <= 1.5 + 0.1
        assert abs(main0.y_m - merge_xy[1]) < 1e-6  # in the lane the ramp merges into
        assert 9.0 <= t_ego <= 13.0
        # the hazard is when the ego reaches the start of the acceleration lane
        t_acc = front_distance_to(sc, ramp.centerline_xy[0]) / sc.ego.speed_mps
        assert hazard(sc, "merge").t_us / 1e6 == pytest.approx(max(0.0, t_acc), abs=0.06)


def test_construction_cones_narrow_or_close_the_ego_lane():
    variants = set()
    for sc in _make("construction_zone"):
        lane = sc.map.lane(sc.ego.route_lane_ids[0])
        cones = [a for a in sc.actors if a.kind == "cone"]
        _, r = lane.to_frenet(np.array([[c.x_m, c.y_m] for c in cones]))
        inside = r > -0.5 * lane.width_m
        assert inside.sum() >= 5
        variants.add(sc.params["variant"])
        if sc.params["variant"] == "narrowing":
            free_in_lane = 0.5 * lane.width_m - r.max()
            assert free_in_lane + 0.5 * lane.width_m - 0.2 >= 0.0
            # the ego can pass with its left wheels at most 1 m over the centre line, 0.3 m from cones
            assert lane.width_m - (r.max() + 0.5 * lane.width_m) + 1.0 >= 2.109 + 0.3 + 0.2
        else:
            assert r.max() > 0.5 * lane.width_m - 0.5  # fully closed
            assert lane.left_neighbor is not None
        first = min(front_distance_to(sc, (c.x_m, c.y_m)) for c in cones)
        t_h = hazard(sc, "construction_zone").t_us / 1e6
        assert first - sc.ego.speed_mps * t_h == pytest.approx(60.0, abs=1.5)
        assert any(s.kind == "construction" for s in sc.map.signs)
    assert variants == {"narrowing", "lane_closure"}


def test_debris_lies_in_the_ego_lane():
    for sc in _make("debris_in_lane"):
        d = sc.actor("debris0")
        lane = sc.map.lane(sc.ego.route_lane_ids[0])
        assert lane.on_lane(np.array([d.x_m, d.y_m])) and d.kind == "debris"
        gap = front_distance_to(sc, (d.x_m, d.y_m)) - 0.5 * d.length_m
        assert gap - sc.ego.speed_mps * hazard(sc, "debris").t_us / 1e6 == pytest.approx(50.0, abs=0.6)


def test_emergency_brake_is_hard_but_solvable():
    from cordillera.world.families.emergency_brake_lead import min_gap_m
    for sc in _make("emergency_brake_lead"):
        lead = sc.actor("lead")
        ev = lead.behavior.brake_events[0]
        gap = front_distance_to(sc, (lead.x_m, lead.y_m)) - 0.5 * lead.length_m
        v = sc.ego.speed_mps
        assert ev.decel_mps2 >= 6.0 and ev.target_speed_mps == 0.0
        assert gap >= min_gap_m(v, ev.decel_mps2)
        # hand check: ego 0.5 s reaction, 6 m/s² -> stops >= 2 m behind
        assert gap + v * v / (2 * ev.decel_mps2) - (0.5 * v + v * v / 12.0) >= 2.0 - 1e-6
        assert gap < 1.7 * v  # tight enough to be an emergency
