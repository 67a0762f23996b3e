"""Helpers for the junction families: signal programs, light heads, ego approach, cross traffic."""

from __future__ import annotations

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import EGO_FRONT_M, background_stream, ego_on_lane
from cordillera.world.scenario import SignalProgram, TrafficLight

YELLOW_US = 3_000_000  # [µs] amber time at urban speeds (ITE practice ~3 s)
ALL_RED_US = 1_000_000  # [µs]
EGO_BEHIND_M = 45.0  # [m] road kept behind the ego start on its approach arm


def complementary_program(ew: SignalProgram, all_red_us: int = ALL_RED_US, yellow_us: int = YELLOW_US) -> SignalProgram:
    """Program for the crossing direction: green while ``ew`` is red, minus an all-red clearance at
    both ends and its own yellow. ``ew`` must have exactly one red phase."""
    reds = [k for k, (st, _) in enumerate(ew.phases) if st == "red"]
    if len(reds) != 1:
        raise ValueError(f"complementary_program needs exactly one red phase, got {ew.phases}")
    a = sum(d for _, d in ew.phases[: reds[0]])
    red = ew.phases[reds[0]][1]
    green = red - 2 * all_red_us - yellow_us
    if green <= 0:
        raise ValueError(f"red phase {red} µs too short for a crossing green")
    phases = (("green", green), ("yellow", yellow_us), ("red", ew.cycle_us - green - yellow_us))
    return SignalProgram(phases, offset_us=(ew.offset_us - (a + all_red_us)) % ew.cycle_us)


def light_heads(j: roads.Junction, programs: dict[str, SignalProgram]) -> tuple[TrafficLight, ...]:
    out = []
    for arm, prog in programs.items():
        x, y, z, h = j.signal_pose[arm]
        out.append(TrafficLight(f"light_{arm}", x, y, z, h, j.incoming[arm], j.stop_lines[arm][0], prog))
    return tuple(out)


def ew_ns_programs(ew: SignalProgram) -> dict[str, SignalProgram]:
    ns = complementary_program(ew)
    return {"W": ew, "E": ew, "N": ns, "S": ns}


def approach_arm_length(d_front_to_stop_m: float) -> float:
    """W arm length so the ego (front bumper ``d`` before the stop line) has road behind it."""
    return d_front_to_stop_m + EGO_FRONT_M + 5.0 + EGO_BEHIND_M


def ego_approach(j: roads.Junction, m, lane_index: int, d_front_to_stop_m: float, speed_mps: float,
                 turn: str = "straight", arm: str = "W", nav_text: str | None = None):
    route = j.route(arm, lane_index, turn)
    s_stop = j.stop_line_s(arm, lane_index)
    s_rig = s_stop - d_front_to_stop_m - EGO_FRONT_M
    if s_rig < 5.0:
        raise ValueError(f"approach arm too short for d={d_front_to_stop_m} m")
    return ego_on_lane(m.lane(route[0]), s_rig, speed_mps, route, nav_text), route


def cross_traffic(j: roads.Junction, m, arm: str, rng: np.random.Generator, n: int, speed_mps: float,
                  s_start_m: float, prefix: str, turn: str = "straight", lane_index: int | None = None, **kw):
    """A stream of IDM vehicles on ``arm``'s incoming lane heading through the junction."""
    i = len(j.incoming[arm]) - 1 if lane_index is None else lane_index
    if (arm, i, turn) not in j.connectors:
        turn = "straight"
    route = j.route(arm, i, turn)
    return background_stream(m, route, prefix, rng, n, s_start_m, speed_mps=speed_mps, **kw)


def time_to_s(s_from_m: float, s_to_m: float, speed_mps: float) -> float:
    return (s_to_m - s_from_m) / speed_mps


def route_polyline(m, route: tuple[str, ...]) -> np.ndarray:
    pts = [m.lane(route[0]).centerline_xy]
    for lid in route[1:]:
        p = m.lane(lid).centerline_xy
        pts.append(p[1:] if np.linalg.norm(p[0] - pts[-1][-1]) < 1e-6 else p)
    return np.concatenate(pts)


def conflict_s(m, ego_route: tuple[str, ...], other_route: tuple[str, ...], tol_m: float = 1.5) -> float:
    """Arc length along ``other_route`` of the first point within ``tol_m`` of the ego route's
    junction part (its connector lanes): where a crossing / merging path meets the ego's."""
    from shapely.geometry import LineString, Point

    ego_conn = [lid for lid in ego_route if m.lane(lid).is_intersection]
    ego_line = LineString(route_polyline(m, tuple(ego_conn) if ego_conn else ego_route))
    xy = roads.resample_polyline(route_polyline(m, other_route), 0.25)
    for k, p in enumerate(xy):
        if ego_line.distance(Point(p)) < tol_m:
            return float(k * np.linalg.norm(np.diff(xy, axis=0), axis=1).mean())
    raise ValueError(f"routes {ego_route} and {other_route} do not meet")


def place_to_arrive(m, route: tuple[str, ...], s_target_m: float, speed_mps: float, t_s: float, half_len_m: float):
    """Arc length on ``route`` of a box centre whose front reaches ``s_target_m`` at ``t_s`` at
    constant speed, and the lane of the route it falls on: (lane_id, s_on_lane) or None."""
    s = s_target_m - speed_mps * t_s - half_len_m
    for lid in route:
        L = m.lane(lid).length_m
        if half_len_m <= s <= L - half_len_m:
            return lid, s
        s -= L
        if s < 0:
            return None
    return None
