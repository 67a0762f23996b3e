"""Invariants every scenario family must satisfy (parametrised over all families and a few seeds)."""

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
from shapely.geometry import Polygon

from cordillera.world import generator
from cordillera.world.families._common import box_corners, ego_box
from cordillera.world.scenario import IdmBehavior, Scenario, WalkerBehavior

FAMILIES = list(generator.FAMILIES)
SEEDS = (1000, 1001, 1002, 1003, 1004, 1005)


@pytest.fixture(scope="module")
def scenarios():
    return {(f, s): generator.make(f, s) for f in FAMILIES for s in SEEDS}


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_json_and_seeds_differ(family, scenarios):
    a = generator.make(family, 1000)
    assert a.to_json() == scenarios[(family, 1000)].to_json()
    assert a.id == f"{family}-01000" and a.seed == 1000 and a.family == family
    assert len({scenarios[(family, s)].to_json() for s in SEEDS}) == len(SEEDS)


@pytest.mark.parametrize("family", FAMILIES)
def test_json_round_trip_and_params(family, scenarios, tmp_path):
    for s in SEEDS[:3]:
        sc = scenarios[(family, s)]
        path = tmp_path / f"{sc.id}.json"
        sc.save(path)
        back = Scenario.load(path)
        assert back.to_json() == sc.to_json()
        assert sc.params == json.loads(json.dumps(asdict(generator.make_params(family, s))))
        assert sc.category == generator.FAMILIES[family].CATEGORY
        assert sc.duration_us == 20_000_000


@pytest.mark.parametrize("family", FAMILIES)
def test_ego_starts_on_first_route_lane_and_route_is_connected(family, scenarios):
    for s in SEEDS:
        sc = scenarios[(family, s)]
        route = sc.ego.route_lane_ids
        lane = sc.map.lane(route[0])
        (s_m,), (r_m,) = lane.to_frenet(np.array([[sc.ego.x_m, sc.ego.y_m]]))
        assert abs(r_m) < 0.5 and 0.0 <= s_m <= lane.length_m
        assert abs(math.remainder(sc.ego.yaw_rad - float(lane.heading_at(s_m)), 2 * math.pi)) < 0.05
        assert sc.ego.speed_mps > 0
        for a, b in zip(route[:-1], route[1:]):
            assert b in sc.map.lane(a).successors, f"{sc.id}: route {a} -> {b} not connected"
        # enough route ahead to drive 20 s at the start speed
        ahead = sum(sc.map.lane(l).length_m for l in route) - s_m
        assert ahead > sc.ego.speed_mps * 20.0 * 0.6, f"{sc.id}: only {ahead:.0f} m of route"


@pytest.mark.parametrize("family", FAMILIES)
def test_actors_do_not_overlap_at_start(family, scenarios):
    for s in SEEDS:
        sc = scenarios[(family, s)]
        polys = [("EGO", Polygon(ego_box(sc.ego)))]
        polys += [(a.id, Polygon(box_corners(a.x_m, a.y_m, a.yaw_rad, a.length_m, a.width_m)))
                  for a in sc.actors if a.appear_us == 0]
        for i in range(len(polys)):
            for j in range(i + 1, len(polys)):
                assert not polys[i][1].intersects(polys[j][1]), f"{sc.id}: {polys[i][0]} overlaps {polys[j][0]}"


@pytest.mark.parametrize("family", FAMILIES)
def test_actor_behaviours_are_consistent_with_the_map(family, scenarios):
    for s in SEEDS:
        sc = scenarios[(family, s)]
        for a in sc.actors:
            if isinstance(a.behavior, IdmBehavior):
                lane = sc.map.lane(a.behavior.route_lane_ids[0])
                (sm,), (rm,) = lane.to_frenet(np.array([[a.x_m, a.y_m]]))
                assert abs(rm) < 0.5 and -0.5 <= sm <= lane.length_m + 0.5, f"{sc.id}: {a.id} off its lane"
                for x, y in zip(a.behavior.route_lane_ids[:-1], a.behavior.route_lane_ids[1:]):
                    assert y in sc.map.lane(x).successors
                for ev in a.behavior.lane_change_events:
                    sc.map.lane(ev.target_lane_id)
            if isinstance(a.behavior, WalkerBehavior):
                assert np.allclose(a.behavior.path_xy[0], (a.x_m, a.y_m), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_hazards_reference_real_objects_within_the_duration(family, scenarios):
    for s in SEEDS:
        sc = scenarios[(family, s)]
        assert sc.hazards, f"{sc.id}: no hazard"
        ids = {a.id for a in sc.actors} | {t.id for t in sc.traffic_lights} | {g.id for g in sc.map.signs}
        for h in sc.hazards:
            assert 0 <= h.t_us < sc.duration_us and h.t_us % 100_000 == 0
            assert h.actor_id is None or h.actor_id in ids, f"{sc.id}: hazard actor {h.actor_id}"
        assert [h.t_us for h in sc.hazards] == sorted(h.t_us for h in sc.hazards)
