"""Free-text navigation from the route, in the A1.5 format ("Turn left in 30m").

Alpamayo 1.5 conditions on free text inside ``<|route_start|>…<|route_end|>`` (spec/alpamayo_model.md
§2.6). We derive it from the AlpaSim route observation (20 rig-frame waypoints every 80/19 m,
NaN-padded) so the in-process runtime, the gRPC driver and the data pipeline say the same thing
for the same geometry.
"""

from __future__ import annotations

import math

import numpy as np

TURN_ANGLE_RAD = math.radians(35.0)  # total heading change that makes a turn (not a curve)
TURN_ONSET_RAD = math.radians(8.0)  # where the turn is said to start
ROUND_M = 5  # distances are rounded to 5 m, as in the released examples ("Turn right in 30m")


def nav_text_from_route(route_rig) -> str | None:
    """Navigation sentence for a rig-frame route polyline (N, ≥2), or None without a route.

    "Turn left in 25m" / "Turn right in 10m" when the route turns by ≥ 35° within its length,
    else "Continue straight". Distance = arc length to where the heading has changed by 8°."""
    pts = np.asarray(route_rig, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"route must be (N, 2|3) rig-frame points, got shape {pts.shape}")
    pts = pts[np.all(np.isfinite(pts[:, :2]), axis=1), :2]
    if len(pts) < 2:
        return None
    seg = np.diff(pts, axis=0)
    length = np.linalg.norm(seg, axis=1)
    keep = length > 1e-6
    seg, length = seg[keep], length[keep]
    if len(seg) == 0:
        return None
    heading = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
    rel = heading - heading[0]
    s_start = np.concatenate([[0.0], np.cumsum(length)[:-1]])  # arc length at each segment start
    turn = np.nonzero(np.abs(rel) >= TURN_ANGLE_RAD)[0]
    if len(turn) == 0:
        return "Continue straight"
    k = int(turn[0])
    direction = "left" if rel[k] > 0 else "right"
    onset = np.nonzero(np.abs(rel[: k + 1]) >= TURN_ONSET_RAD)[0]
    # The onset segment begins where the previous one ended: the turn starts at that point.
    d_m = float(s_start[int(onset[0])]) + float(np.hypot(*pts[0]))
    d_round = int(ROUND_M * round(d_m / ROUND_M))
    return f"Turn {direction} in {d_round}m"
