"""stop_sign — two-way stop: the ego must stop at its stop sign and yield to priority cross traffic.

Cross traffic (no stop sign) reaches the ego's path 2–5 s after the ego would reach its stop line at
its start speed, i.e. about when a careful ego has completed its stop.
Decisions exercised: Stop, Yield, Resume Speed, optionally Turn right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families import _junction as J
from cordillera.world.families._common import Hazard, assemble, idm, sample_conditions, uniform, us, vehicle_on_lane
from cordillera.world.scenario import DEFAULT_SIZE_LWH_M

CATEGORY = "nominal"
FAMILY = "stop_sign"


@dataclass(frozen=True)
class Params:
    turn: str = "straight"  # ego route: "straight" | "right"
    ego_speed_mps: float = 10.0
    arrive_time_s: float = 5.0  # ego front reaches the stop line at its start speed
    cross_from: str = "S"  # arm the first cross vehicle comes from ("S" = from the ego's right)
    cross_speed_mps: float = 12.0
    cross_offset_s: float = 3.0  # cross vehicle front at the conflict point, relative to arrival
    cross_gap_s: float = 6.0
    n_cross: int = 2
    limit_kmh: float = 50.0
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    tod, weather = sample_conditions(rng)
    turn = "right" if rng.random() < 0.25 else "straight"
    return Params(
        turn=turn, ego_speed_mps=uniform(rng, 8.0, 12.0), arrive_time_s=uniform(rng, 4.0, 6.5, 1),
        cross_from="N" if turn == "right" else str(rng.choice(["S", "N"])),
        cross_speed_mps=uniform(rng, 10.0, 13.5), cross_offset_s=uniform(rng, 2.0, 5.0, 1),
        cross_gap_s=uniform(rng, 5.0, 9.0, 1), n_cross=int(rng.integers(1, 4)), limit_kmh=float(rng.choice([40, 50])),
        time_of_day=tod, weather=weather,
    )


def _make_map(p: Params) -> roads.Junction:
    d0 = p.ego_speed_mps * p.arrive_time_s
    cross_len = p.cross_speed_mps * (p.arrive_time_s + p.cross_offset_s + p.cross_gap_s * (p.n_cross - 1)) + 60
    lengths = {"W": J.approach_arm_length(d0), "E": 240.0, "N": 140.0, "S": 240.0}  # E / S: ego exits
    lengths[p.cross_from] = max(lengths[p.cross_from], cross_len)
    return roads.four_way_intersection(n_lanes=1, arm_length_m=lengths, speed_limit_mps=roads.kmh(p.limit_kmh),
                                       control="stop", stop_arms=("W", "E"), crosswalks=False)


def _make_signals(p: Params, j: roads.Junction):
    return ()


def cross_stream(m, j, ego_route, arm, speed, t_first, gap_s, n, prefix, kinds=("car",)):
    """IDM vehicles on ``arm`` (straight through) whose fronts reach the ego's path at
    t_first, t_first + gap_s, ... at constant speed."""
    r = j.route(arm, 0, "straight")
    s_conf = J.conflict_s(m, ego_route, r)
    out = []
    for k in range(n):
        kind = kinds[k % len(kinds)]
        placed = J.place_to_arrive(m, r, s_conf, speed, t_first + k * gap_s, 0.5 * DEFAULT_SIZE_LWH_M[kind][0])
        if placed is None:
            continue
        lid, s = placed
        out.append(vehicle_on_lane(f"{prefix}{k}", m.lane(lid), s, speed, idm(r[r.index(lid):], speed), kind=kind))
    return out


def _make_actors(p: Params, j: roads.Junction, m, rng: np.random.Generator):
    d0 = p.ego_speed_mps * p.arrive_time_s
    nav = "Turn right at the stop sign" if p.turn == "right" else None
    ego, route = J.ego_approach(j, m, 0, d0, p.ego_speed_mps, turn=p.turn, nav_text=nav)
    kinds = ("car", str(rng.choice(["car", "truck", "cyclist"])), "car")
    actors = cross_stream(m, j, route, p.cross_from, p.cross_speed_mps, p.arrive_time_s + p.cross_offset_s,
                          p.cross_gap_s, p.n_cross, "cross", kinds)
    t_sign = max(0.0, (d0 - 40.0) / p.ego_speed_mps)
    hazards = [Hazard(us(t_sign), "stop_sign", "W_stop_sign", "stop sign ahead"),
               Hazard(us(p.arrive_time_s), "crossing_traffic", actors[0].id if actors else None,
                      f"cross traffic from the {'right' if p.cross_from == 'S' else 'left'} has priority")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    j = _make_map(p)
    m = j.parts.build()
    ego, actors, hazards = _make_actors(p, j, m, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, _make_signals(p, j), hazards, scenario_id, seed)
