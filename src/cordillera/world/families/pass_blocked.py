"""pass_blocked — a parked / broken-down vehicle or a very slow vehicle blocks the ego lane; change
lanes to pass it.

The blocker becomes relevant (ego front 50 m behind it at the ego's start speed) 3–6 s in; traffic
in the passing lane may need a gap.
Decisions exercised: Lane Change left, Gap-search, (Pass/Overtake for a moving blocker), Stop if no gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    EGO_FRONT_M, EGO_REAR_M, Hazard, assemble, background_stream, ego_on_lane, idm, sample_conditions, uniform, us,
    vehicle_on_lane,
)
from cordillera.world.scenario import DEFAULT_SIZE_LWH_M, StaticBehavior

CATEGORY = "nominal"
FAMILY = "pass_blocked"
S_EGO0 = 50.0  # [m]
RELEVANT_GAP_M = 50.0  # [m] gap at which the blocker is the ego's problem (hazard onset)


@dataclass(frozen=True)
class Params:
    blocker: str = "parked_car"  # "parked_car" | "truck" (stopped, hazards on) | "slow_truck" | "slow_cyclist"
    n_bwd: int = 1
    ego_speed_mps: float = 12.0
    slow_speed_mps: float = 0.0
    relevant_time_s: float = 4.0
    passing_traffic: bool = True  # a faster car in the passing lane that the ego must let by
    passing_offset_m: float = -15.0  # its box centre relative to the ego rig, along the road
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    blocker = str(rng.choice(["parked_car", "truck", "slow_truck", "slow_cyclist"]))
    tod, weather = sample_conditions(rng)
    slow = {"parked_car": 0.0, "truck": 0.0, "slow_truck": uniform(rng, 2.5, 4.5), "slow_cyclist": uniform(rng, 3.0, 5.0)}
    return Params(
        blocker=blocker, n_bwd=int(rng.choice([0, 1])), ego_speed_mps=uniform(rng, 10.0, 14.0),
        slow_speed_mps=slow[blocker], relevant_time_s=uniform(rng, 3.0, 6.0, 1),
        passing_traffic=bool(rng.random() < 0.6), passing_offset_m=uniform(rng, -30.0, -12.0, 1),
        time_of_day=tod, weather=weather,
    )


def _kind(p: Params) -> str:
    return {"parked_car": "parked_car", "truck": "truck", "slow_truck": "truck", "slow_cyclist": "cyclist"}[p.blocker]


def blocker_gap0_m(p: Params) -> float:
    """Ego front to blocker rear at t = 0."""
    return RELEVANT_GAP_M + (p.ego_speed_mps - p.slow_speed_mps) * p.relevant_time_s


def _make_map(p: Params):
    length = S_EGO0 + 20 * p.ego_speed_mps + 200.0
    road = roads.build_road(roads.straight_line((0.0, 0.0), (length, 0.0)), 2, p.n_bwd, "R")
    return road.parts.build(), road


def _make_actors(p: Params, m, road, rng: np.random.Generator):
    ego_id, pass_id = road.fwd_ids[1], road.fwd_ids[0]
    ego = ego_on_lane(m.lane(ego_id), S_EGO0, p.ego_speed_mps, (ego_id,))
    kind = _kind(p)
    half = 0.5 * DEFAULT_SIZE_LWH_M[kind][0]
    s_b = S_EGO0 + EGO_FRONT_M + blocker_gap0_m(p) + half
    lane = m.lane(ego_id)
    if p.slow_speed_mps > 0:
        r = -0.4 if kind == "cyclist" else 0.0  # cyclists keep right
        blocker = vehicle_on_lane("blocker", lane, s_b, p.slow_speed_mps, idm((ego_id,), p.slow_speed_mps), kind=kind,
                                  r_m=r)
    else:
        blocker = vehicle_on_lane("blocker", lane, s_b, 0.0, StaticBehavior(), kind=kind, r_m=-0.4)
    actors = [blocker]
    if p.passing_traffic:
        v = p.ego_speed_mps + 3.0
        s_p = S_EGO0 + p.passing_offset_m
        if s_p - 2.3 > 0:
            actors.append(vehicle_on_lane("passing", m.lane(pass_id), s_p, v, idm((pass_id,), v)))
    if road.bwd_ids:
        actors += background_stream(m, (road.bwd_ids[0],), "oncoming", rng, 3, float(rng.uniform(20.0, 80.0)),
                                    speed_mps=12.0)
    # A queued car behind the ego keeps it from simply reversing out of the problem.
    actors.append(vehicle_on_lane("follower", lane, S_EGO0 - EGO_REAR_M - 20.0, p.ego_speed_mps,
                                  idm((ego_id,), p.ego_speed_mps, time_headway_s=1.8)))
    what = {"parked_car": "parked car", "truck": "stopped truck", "slow_truck": "slow truck",
            "slow_cyclist": "slow cyclist"}[p.blocker]
    hazards = [Hazard(us(p.relevant_time_s), "blocked_lane", "blocker", f"{what} blocking the ego lane")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    m, road = _make_map(p)
    ego, actors, hazards = _make_actors(p, m, road, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, (), hazards, scenario_id, seed)
