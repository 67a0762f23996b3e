"""Lane projections of sim/traffic.py: hand-derived frenet values, and the all-lanes batch equals
each lane's own projection bit for bit (what the traffic step relies on to stay unchanged)."""

import math

import numpy as np

from cordillera.sim.traffic import _LaneBatch, _LaneGeom
from cordillera.world.map import Lane


def straight(length_m=100.0, y_m=0.0, n=11):
    return Lane("S", np.stack([np.linspace(0.0, length_m, n), np.full(n, y_m)], -1))


def arc(radius_m=20.0, theta_end=math.pi / 2, n=91):
    """Counter-clockwise arc around the origin from (R, 0)."""
    th = np.linspace(0.0, theta_end, n)
    return Lane("A", np.stack([radius_m * np.cos(th), radius_m * np.sin(th)], -1))


def test_straight_lane_hand_values():
    g = _LaneGeom(straight())
    s, r, h = g.frenet(np.array([[5.0, 2.0], [37.5, -1.25], [-3.0, 1.0], [103.0, -0.5]]))
    np.testing.assert_allclose(s, [5.0, 37.5, -3.0, 103.0], atol=1e-12)  # lane extended beyond both ends
    np.testing.assert_allclose(r, [2.0, -1.25, 1.0, -0.5], atol=1e-12)  # left of the direction of travel +
    np.testing.assert_allclose(h, 0.0, atol=1e-12)


def test_arc_lane_hand_values():
    """A point beyond a chord's midpoint, radially: s = (k + ½)·chord, r = −(ρ − R cos(Δθ/2));
    for a fine polyline s → R θ."""
    radius, n = 20.0, 91
    dth = (math.pi / 2) / (n - 1)
    chord = 2.0 * radius * math.sin(dth / 2)
    g = _LaneGeom(arc(radius, math.pi / 2, n))
    k, rho = 30, 21.0  # outside the arc = right of a CCW lane
    th = (k + 0.5) * dth
    s, r, h = g.frenet(np.array([[rho * math.cos(th), rho * math.sin(th)]]))
    assert abs(s[0] - (k + 0.5) * chord) < 1e-9
    assert abs(r[0] - -(rho - radius * math.cos(dth / 2))) < 1e-9
    assert abs(h[0] - (th + math.pi / 2)) < 1e-9  # the chord's heading is tangent at its middle
    assert abs(s[0] - radius * th) < 1e-3  # chord vs arc: R θ (1 − Δθ²/24)


def test_lane_batch_equals_each_lane_bit_for_bit():
    """Lanes of different segment counts (padded by repeating the last segment), points on, off
    and beyond the lanes, and points exactly on vertices (ties between two segments)."""
    lanes = {"S": straight(n=11), "S2": straight(length_m=60.0, y_m=3.6, n=4), "A": arc(), "one": straight(n=2)}
    geoms = {k: _LaneGeom(v) for k, v in lanes.items()}
    batch = _LaneBatch(geoms, {k: 3.6 for k in lanes})
    rng = np.random.default_rng(7)
    pts = np.concatenate([rng.uniform(-30.0, 130.0, (40, 2)), [[10.0, 0.0], [20.0, 3.6], [60.0, 3.6], [-5.0, 0.0]]])
    s_b, r_b, h_b = batch.frenet(pts)
    for i, lid in enumerate(batch.ids):
        s, r, h = geoms[lid].frenet(pts)
        assert np.array_equal(s_b[i], s) and np.array_equal(r_b[i], r) and np.array_equal(h_b[i], h), lid
    np.testing.assert_allclose(batch.half_width, 1.8)


def test_lane_geom_matches_lane_to_frenet_on_an_arc():
    lane = arc(radius_m=35.0, theta_end=2.0, n=57)
    pts = np.random.default_rng(3).uniform(-40.0, 40.0, (25, 2))
    s, r, _ = _LaneGeom(lane).frenet(pts)
    s2, r2 = lane.to_frenet(pts)
    np.testing.assert_allclose(s, s2, atol=1e-9)
    np.testing.assert_allclose(r, r2, atol=1e-9)
