"""Map-building helpers: lane geometry, markings, neighbours, junction topology, on-ramp."""

import math

import numpy as np
import pytest

from cordillera.world import roads
from cordillera.world.map import Lane


def test_reference_line_arc_matches_circle():
    k = 1.0 / 50.0
    xy = roads.reference_line((0.0, 0.0), 0.0, ((0.5 * math.pi / k, k, k),), step_m=1.0)
    # a quarter circle of radius 50 turning left ends at (50, 50), every point 50 m from (0, 50)
    np.testing.assert_allclose(xy[-1], [50.0, 50.0], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(xy - [0.0, 50.0], axis=1), 50.0, atol=1e-3)


def test_reference_line_clothoid_heading_is_integral_of_curvature():
    # curvature ramps 0 -> k over L: heading change = k L / 2
    k, L = 0.02, 40.0
    xy = roads.reference_line((0.0, 0.0), 0.3, ((L, 0.0, k),), step_m=0.5)
    lane = Lane("c", xy)
    assert lane.length_m == pytest.approx(L, abs=0.01)
    assert float(lane.heading_at(L - 0.01)) == pytest.approx(0.3 + k * L / 2, abs=0.01)
    with pytest.raises(ValueError, match="positive lengths"):
        roads.reference_line(pieces=((0.0, 0.0, 0.0),))


def test_lane_on_arc_headings_and_frenet_round_trip():
    k = 1.0 / 40.0
    ref = roads.reference_line((0.0, 0.0), 0.0, ((60.0, k, k),), step_m=1.0)
    road = roads.build_road(ref, 2, 1, "R")
    f1 = road.parts.lanes["R_f1"]  # second lane right of the centre line: radius 40 + 5.4
    s = np.array([5.0, 20.0, 40.0])
    # heading on an arc = initial heading + s / R_lane
    np.testing.assert_allclose(f1.heading_at(s), s / (40.0 + 5.4), atol=0.02)
    pts = f1.position(s, np.array([0.5, -1.0, 1.2]))
    s2, r2 = f1.to_frenet(pts)
    np.testing.assert_allclose(s2, s, atol=0.05)
    np.testing.assert_allclose(r2, [0.5, -1.0, 1.2], atol=0.02)
    # the lane stays 5.4 m from the reference (offset polyline exact up to chord error)
    d = np.linalg.norm(f1.centerline_xy - [0.0, 40.0], axis=1)
    np.testing.assert_allclose(d, 45.4, atol=0.01)


def test_two_way_road_markings_neighbours_and_directions():
    ref = roads.straight_line((0.0, 0.0), (100.0, 0.0))
    road = roads.build_road(ref, 2, 2, "R", lane_width_m=3.5)
    L = road.parts.lanes
    assert road.fwd_ids == ("R_f0", "R_f1") and road.bwd_ids == ("R_b0", "R_b1")
    assert L["R_f0"].left_marking == "double_yellow" and L["R_f0"].right_marking == "dashed_white"
    assert L["R_f1"].left_marking == "dashed_white" and L["R_f1"].right_marking == "solid_white"
    assert L["R_b0"].left_marking == "double_yellow" and L["R_b1"].right_marking == "solid_white"
    assert L["R_f0"].right_neighbor == "R_f1" and L["R_f1"].left_neighbor == "R_f0"
    assert L["R_f0"].left_neighbor is None  # never across the double yellow
    assert L["R_b0"].right_neighbor == "R_b1" and L["R_b1"].left_neighbor == "R_b0"
    np.testing.assert_allclose(L["R_f0"].centerline_xy[:, 1], -1.75)
    np.testing.assert_allclose(L["R_f1"].centerline_xy[:, 1], -5.25)
    np.testing.assert_allclose(L["R_b1"].centerline_xy[:, 1], 5.25)
    assert L["R_f0"].heading_at(10.0) == pytest.approx(0.0)
    assert abs(float(L["R_b0"].heading_at(10.0))) == pytest.approx(math.pi)
    edges = {e.id: e.polyline_xy for e in road.parts.road_edges}
    np.testing.assert_allclose(edges["R_edge_r"][:, 1], -(7.0 + roads.SHOULDER_M))
    np.testing.assert_allclose(edges["R_edge_l"][:, 1], 7.0 + roads.SHOULDER_M)
    road.parts.build()  # consistent references


def test_one_way_road_has_kerb_on_the_left():
    road = roads.build_road(roads.straight_line((0, 0), (50, 0)), 2, 0, "M")
    assert road.parts.lanes["M_f0"].left_marking == "road_edge"
    edges = {e.id: e.polyline_xy for e in road.parts.road_edges}
    np.testing.assert_allclose(edges["M_edge_l"][:, 1], 0.0)


def test_chain_roads_links_both_directions():
    a = roads.build_road(roads.straight_line((0, 0), (50, 0)), 1, 1, "A")
    b = roads.build_road(roads.straight_line((50, 0), (90, 0)), 1, 1, "B")
    m = roads.chain_roads(a, b).build()
    assert m.lane("A_f0").successors == ("B_f0",) and m.lane("B_f0").predecessors == ("A_f0",)
    assert m.lane("B_b0").successors == ("A_b0",)
    np.testing.assert_allclose(m.lane("A_f0").centerline_xy[-1], m.lane("B_f0").centerline_xy[0])


def test_speed_limit_sign_on_the_right_facing_traffic():
    lane = roads.build_road(roads.straight_line((0, 0), (50, 0)), 1, 1, "R").parts.lanes["R_f0"]
    sign = roads.speed_limit_sign("s", lane, 20.0, 40)
    assert sign.x_m == pytest.approx(20.0) and sign.y_m < -1.8 - roads.SHOULDER_M
    assert math.cos(sign.heading_rad) == pytest.approx(-1.0)  # faces traffic driving +x
    assert sign.value == 40.0 and sign.lane_ids == ("R_f0",)


@pytest.mark.parametrize("n", [1, 2])
def test_four_way_intersection_topology(n):
    j = roads.four_way_intersection(n_lanes=n, arm_length_m=80.0)
    m = j.parts.build()
    w = roads.LANE_WIDTH_M
    # the ego approach (W arm) drives +x on the right (y < 0)
    west_in = m.lane(j.incoming["W"][0])
    assert float(west_in.heading_at(10.0)) == pytest.approx(0.0, abs=1e-9)
    assert west_in.centerline_xy[0, 1] == pytest.approx(-0.5 * w)
    for arm in roads.ARMS:
        for turn in ("straight", "left", "right"):
            i = 0 if turn == "left" else n - 1
            inc, con, out = j.route(arm, i, turn)
            c, o = m.lane(con), m.lane(out)
            assert c.is_intersection and c.turn == turn
            np.testing.assert_allclose(m.lane(inc).centerline_xy[-1], c.centerline_xy[0], atol=1e-9)
            np.testing.assert_allclose(c.centerline_xy[-1], o.centerline_xy[0], atol=1e-9)
            dh = math.remainder(float(o.heading_at(1.0)) - float(m.lane(inc).heading_at(1.0)), 2 * math.pi)
            assert dh == pytest.approx({"straight": 0.0, "left": math.pi / 2, "right": -math.pi / 2}[turn], abs=1e-6)
            assert j.exit_arm[(arm, turn)] in out
    assert len(m.crosswalks) == 4 and len(m.stop_lines) == 4 * n and len(m.intersections) == 1
    # stop line before the crosswalk, which lies outside the box
    sl = m.stop_lines_on(j.incoming["W"][0])[0]
    assert sl.segment_xy[:, 0].max() < -j.half_size_m - 3.5
    cw = next(c for c in m.crosswalks if c.id == "W_crosswalk")
    assert cw.polygon_xy[:, 0].max() < -j.half_size_m and cw.polygon_xy[:, 0].min() > sl.segment_xy[0, 0]
    x, y, z, h = j.signal_pose["W"]
    assert z == roads.SIGNAL_HEIGHT_M and x > j.half_size_m and y < -n * w  # far-right corner
    assert math.cos(h) == pytest.approx(-1.0)  # lamps face west, towards the approaching ego
    # left-turn connector approximates a circular arc: mid point at the right distance from the corner
    left = m.lane(j.connectors[("W", 0, "left")])
    R = j.half_size_m + 0.5 * w
    assert left.length_m == pytest.approx(0.5 * math.pi * R, rel=0.01)


def test_stop_controlled_junction_has_stop_signs_on_minor_arms():
    j = roads.four_way_intersection(control="stop", stop_arms=("W", "E"))
    kinds = {s.id: s.kind for s in j.parts.signs}
    assert kinds == {"W_stop_sign": "stop", "E_stop_sign": "stop"}
    assert sorted(sl.lane_id for sl in j.parts.stop_lines) == ["E_f0", "W_f0"]  # priority road unpainted
    assert j.stop_line_s("N", 0) == pytest.approx(j.parts.lanes["N_f0"].length_m - 5.0)
    assert not roads.four_way_intersection(control="none").parts.stop_lines
    with pytest.raises(ValueError, match="control"):
        roads.four_way_intersection(control="roundabout")


def test_on_ramp_merges_into_kerb_lane():
    o = roads.on_ramp_merge(n_main=2)
    m = o.parts.build()
    ramp = m.lane(o.ramp_id)
    kerb2 = m.lane(o.main[2][-1])
    np.testing.assert_allclose(ramp.centerline_xy[-1], kerb2.centerline_xy[0], atol=1e-9)
    assert ramp.successors == (kerb2.id,) and ramp.left_neighbor == o.main[1][-1]
    appr = m.lane(o.approach_id)
    assert appr.successors == (ramp.id,) and appr.left_marking == "solid_white" and ramp.left_marking == "dashed_white"
    np.testing.assert_allclose(appr.centerline_xy[-1], ramp.centerline_xy[0], atol=1e-9)
    assert float(appr.heading_at(appr.length_m - 0.1)) == pytest.approx(0.0, abs=0.01)
    assert float(appr.heading_at(0.0)) > 0.3  # climbs up from the south-west
    assert float(ramp.heading_at(ramp.length_m - 0.1)) == pytest.approx(0.0, abs=0.02)  # tangent at the merge
    # parallel acceleration section one lane width right of the kerb lane
    assert ramp.on_lane(np.array([o.acc_start_x_m + 20.0, -1.5 * roads.LANE_WIDTH_M - 3.6]))
    assert m.lane(o.main[0][0]).successors == (o.main[1][0],)
