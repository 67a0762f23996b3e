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
    lid = next(l for l in sc.ego.route_lane_ids if sc.map.stop_lines_on(l))
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
