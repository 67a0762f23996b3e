"""debris_in_lane — an object lies in the ego lane: lost cargo, a tyre, a fallen box (long tail).

It becomes relevant (ego front 50 m from it at the ego's start speed) 3–6 s in. On a two-lane
carriageway the ego changes lanes (with traffic in the other lane); on a two-way road it nudges
around it (oncoming traffic timed to pass before / after) or stops if it cannot.
Decisions exercised: Nudge / Lane Change, Stop, Adapt Speed; causal factor: debris.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    EGO_FRONT_M, Hazard, assemble, background_stream, ego_on_lane, idm, sample_conditions, uniform, us,
    vehicle_on_lane,
)
from cordillera.world.scenario import StaticBehavior

CATEGORY = "long_tail"
FAMILY = "debris_in_lane"
S_EGO0 = 40.0  # [m]
RELEVANT_M = 50.0  # [m]
OBJECTS = {"box": (1.0, 0.8, 0.6), "tyre": (0.75, 0.3, 0.75), "cargo": (1.6, 1.2, 0.8), "branch": (2.4, 0.6, 0.4)}


@dataclass(frozen=True)
class Params:
    layout: str = "two_way"  # "two_way" (1+1 lanes, nudge) | "multi_lane" (2 forward lanes)
    obj: str = "box"
    lateral_m: float = 0.0  # offset of the main piece in the ego lane (left +)
    n_small: int = 2  # small scattered pieces near it
    ego_speed_mps: float = 12.0
    relevant_time_s: float = 4.0
    oncoming_speed_mps: float = 12.0
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    tod, weather = sample_conditions(rng)
    return Params(
        layout=str(rng.choice(["two_way", "multi_lane"])), obj=str(rng.choice(list(OBJECTS))),
        lateral_m=uniform(rng, -0.8, 0.8), n_small=int(rng.integers(0, 4)), ego_speed_mps=uniform(rng, 10.0, 15.0),
        relevant_time_s=uniform(rng, 3.0, 6.0, 1), oncoming_speed_mps=uniform(rng, 10.0, 14.0),
        time_of_day=tod, weather=weather,
    )


def debris_s(p: Params) -> float:
    """Arc length of the main piece's centre on the ego lane."""
    return S_EGO0 + EGO_FRONT_M + RELEVANT_M + p.ego_speed_mps * p.relevant_time_s + 0.5 * OBJECTS[p.obj][0]


def _make_map(p: Params):
    length = S_EGO0 + 20 * p.ego_speed_mps + 200.0
    n_fwd = 2 if p.layout == "multi_lane" else 1
    road = roads.build_road(roads.straight_line((0.0, 0.0), (length, 0.0)), n_fwd, 1, "R",
                            speed_limit_mps=roads.kmh(60.0))
    return road.parts.build(), road


def _make_actors(p: Params, m, road, rng: np.random.Generator):
    ego_id = road.fwd_ids[-1]
    lane = m.lane(ego_id)
    ego = ego_on_lane(lane, S_EGO0, p.ego_speed_mps, (ego_id,))
    s_d = debris_s(p)
    L, W, H = OBJECTS[p.obj]
    actors = [vehicle_on_lane("debris0", lane, s_d, 0.0, StaticBehavior(), kind="debris", r_m=p.lateral_m,
                              yaw_offset_rad=float(rng.uniform(-0.6, 0.6)), length_m=L, width_m=W)]
    actors[0] = actors[0].__class__(**{**actors[0].__dict__, "height_m": H})
    for k in range(p.n_small):
        s_k = s_d + 0.5 * L + 1.0 + 2.0 * k + float(rng.uniform(0.0, 1.5))  # >= 0.5 m apart: no overlap
        actors.append(vehicle_on_lane(f"debris{k + 1}", lane, s_k, 0.0,
                                      StaticBehavior(), kind="debris", r_m=float(rng.uniform(-1.4, 1.4)),
                                      yaw_offset_rad=float(rng.uniform(-1.5, 1.5)), length_m=0.35, width_m=0.3))
    v0 = p.ego_speed_mps
    if p.layout == "multi_lane":
        actors += background_stream(m, (road.fwd_ids[0],), "adjacent", rng, 2, S_EGO0 + float(rng.uniform(-30.0, -12.0)),
                                    gap_range_m=(35.0, 60.0), speed_mps=v0 + 2.0)
    b = m.lane(road.bwd_ids[0])
    t_at = (s_d - S_EGO0 - EGO_FRONT_M) / v0
    for k, t in enumerate((t_at - 3.5, t_at + 4.0)):
        s_c = (b.length_m - s_d) - p.oncoming_speed_mps * t - 2.3
        if t > 0.5 and 5.0 < s_c < b.length_m - 5.0:
            actors.append(vehicle_on_lane(f"oncoming{k}", b, s_c, p.oncoming_speed_mps, idm((b.id,), p.oncoming_speed_mps)))
    hazards = [Hazard(us(p.relevant_time_s), "debris", "debris0", f"{p.obj} lying in the ego lane")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    if p.obj not in OBJECTS:
        raise ValueError(f"debris_in_lane obj must be one of {tuple(OBJECTS)}, got {p.obj!r}")
    m, road = _make_map(p)
    ego, actors, hazards = _make_actors(p, m, road, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, (), hazards, scenario_id, seed)
