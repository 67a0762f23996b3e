"""Navigation text from rig-frame routes: hand-made straight, left-turn and right-turn routes."""

import math

import numpy as np
import pytest

from cordillera.sim.navigation import nav_text_from_route


def route_with_turn(d_m: float, radius_m: float, sign: float, n: int = 20, spacing: float = 80 / 19):
    """Straight for d_m, then a 90° arc of radius_m to the left (sign=+1) or right (-1)."""
    s = spacing * np.arange(n)
    arc = 0.5 * math.pi * radius_m
    out = []
    for si in s:
        if si <= d_m:
            out.append((si, 0.0))
        elif si <= d_m + arc:
            a = (si - d_m) / radius_m
            out.append((d_m + radius_m * math.sin(a), sign * radius_m * (1 - math.cos(a))))
        else:
            e = si - d_m - arc
            out.append((d_m + radius_m, sign * (radius_m + e)))
    return np.array([(x, y, 0.0) for x, y in out])


def test_straight_route():
    r = np.stack([np.arange(20) * 4.2, np.zeros(20), np.zeros(20)], 1)
    assert nav_text_from_route(r) == "Continue straight"


@pytest.mark.parametrize("d, sign, expect", [(25.0, 1, "Turn left in 25m"), (40.0, -1, "Turn right in 40m")])
def test_turns_and_distances(d, sign, expect):
    # The onset (8° of heading change) sits a few metres into the arc; rounding to 5 m absorbs it
    # for a tight 12 m junction radius when a waypoint falls near the arc start.
    assert nav_text_from_route(route_with_turn(d, 12.0, sign)) == expect


@pytest.mark.parametrize("d", [6.0, 10.0, 17.0, 33.0, 52.0])
def test_turn_distance_within_one_waypoint_spacing(d):
    # Waypoints are 80/19 ≈ 4.2 m apart, so the onset is known to one spacing, then rounded to 5 m.
    text = nav_text_from_route(route_with_turn(d, 12.0, 1))
    assert text.startswith("Turn left in ") and text.endswith("m")
    assert abs(int(text[len("Turn left in "):-1]) - d) <= 80 / 19 + 2.5


def test_gentle_curve_is_not_a_turn():
    a = np.linspace(0, math.radians(20), 20)
    r = 200.0 * np.stack([np.sin(a), 1 - np.cos(a), 0 * a], 1)
    assert nav_text_from_route(r) == "Continue straight"


def test_nan_padding_and_no_route():
    r = route_with_turn(25.0, 12.0, 1)
    r[15:] = np.nan
    assert nav_text_from_route(r) == "Turn left in 25m"
    assert nav_text_from_route(np.full((20, 3), np.nan)) is None
    with pytest.raises(ValueError):
        nav_text_from_route(np.zeros(5))
