"""unprotected_left_turn — turn left across oncoming traffic on a permissive green (or at an
uncontrolled junction).

The first oncoming vehicle reaches the conflict point between 0.5 s before and 2 s after the ego
would reach its stop line at its start speed, so the ego must yield; the next one follows 7–11 s
later, leaving a gap to turn into.
Decisions exercised: Yield, Turn left, Gap-search; causal factors: oncoming traffic, intersection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families import _junction as J
from cordillera.world.families._common import (
    Hazard, assemble, idm, sample_conditions, uniform, us, vehicle_on_lane,
)
from cordillera.world.scenario import DEFAULT_SIZE_LWH_M, SignalProgram

CATEGORY = "nominal"
FAMILY = "unprotected_left_turn"


@dataclass(frozen=True)
class Params:
    signalised: bool = True
    n_lanes: int = 1
    ego_speed_mps: float = 10.0
    arrive_time_s: float = 6.0  # ego front reaches the stop line at its start speed
    oncoming_speed_mps: float = 12.0
    oncoming_offset_s: float = 0.5  # first oncoming front at the conflict point, relative to arrival
    oncoming_gap_s: float = 8.0  # time gap to the second oncoming vehicle
    n_oncoming: int = 3
    oncoming_kind: str = "car"
    n_cross: int = 1
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    tod, weather = sample_conditions(rng)
    return Params(
        signalised=bool(rng.random() < 0.7), n_lanes=int(rng.choice([1, 1, 2])),
        ego_speed_mps=uniform(rng, 8.5, 12.0), arrive_time_s=uniform(rng, 5.0, 7.0, 1),
        oncoming_speed_mps=uniform(rng, 10.0, 13.5), oncoming_offset_s=uniform(rng, -0.5, 2.0, 1),
        oncoming_gap_s=uniform(rng, 7.0, 11.0, 1), n_oncoming=int(rng.integers(2, 4)),
        oncoming_kind=str(rng.choice(["car", "car", "car", "truck", "bus"])), n_cross=int(rng.integers(0, 3)),
        time_of_day=tod, weather=weather,
    )


def _make_map(p: Params) -> roads.Junction:
    d0 = p.ego_speed_mps * p.arrive_time_s
    e_len = p.oncoming_speed_mps * (p.arrive_time_s + p.oncoming_offset_s + p.oncoming_gap_s * (p.n_oncoming - 1)) + 60
    return roads.four_way_intersection(
        n_lanes=p.n_lanes, arm_length_m={"W": J.approach_arm_length(d0), "E": e_len, "N": 220.0, "S": 140.0},
        control="signal" if p.signalised else "none")


def _make_signals(p: Params, j: roads.Junction):
    if not p.signalised:
        return ()
    ew = SignalProgram((("green", 60_000_000), ("yellow", J.YELLOW_US), ("red", 30_000_000)))
    return J.light_heads(j, J.ew_ns_programs(ew))


def _make_actors(p: Params, j: roads.Junction, m, rng: np.random.Generator):
    d0 = p.ego_speed_mps * p.arrive_time_s
    ego, route = J.ego_approach(j, m, 0, d0, p.ego_speed_mps, turn="left", nav_text="Turn left at the intersection")
    onc_route = j.route("E", 0, "straight")
    s_conf = J.conflict_s(m, route, onc_route)
    actors = []
    for k in range(p.n_oncoming):
        kind = p.oncoming_kind if k == 0 else "car"
        half = 0.5 * DEFAULT_SIZE_LWH_M[kind][0]
        t_k = p.arrive_time_s + p.oncoming_offset_s + k * p.oncoming_gap_s
        placed = J.place_to_arrive(m, onc_route, s_conf, p.oncoming_speed_mps, t_k, half)
        if placed is None:
            continue
        lid, s = placed
        r = onc_route[onc_route.index(lid):]
        actors.append(vehicle_on_lane(f"oncoming{k}", m.lane(lid), s, p.oncoming_speed_mps,
                                      idm(r, p.oncoming_speed_mps), kind=kind))
    if p.signalised and p.n_cross:  # cross traffic waits at its red light
        actors += J.cross_traffic(j, m, "S", rng, p.n_cross, 11.0, float(rng.uniform(30.0, 70.0)), "cross_s")
    t_h = max(0.0, p.arrive_time_s - 3.0)
    hazards = [Hazard(us(t_h), "oncoming_traffic", "oncoming0",
                      "oncoming vehicle approaching while turning left")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    j = _make_map(p)
    m = j.parts.build()
    lights = _make_signals(p, j)
    ego, actors, hazards = _make_actors(p, j, m, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, lights, hazards, scenario_id, seed)
