"""cut_in — a vehicle from an adjacent lane cuts in ahead of the ego.

The lane change lands the cutter 10–20 m ahead of the ego's front bumper (at the ego's start speed)
while it is up to 3 m/s slower, so the ego must slow to restore its gap.
Decisions exercised: Keep Distance / Yield, Keep Lane; causal factor: cut-in vehicle (with side).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    EGO_FRONT_M, Hazard, assemble, background_stream, ego_on_lane, idm, sample_conditions, uniform, us,
    vehicle_on_lane,
)
from cordillera.world.scenario import DEFAULT_SIZE_LWH_M, LaneChangeEvent

CATEGORY = "nominal"
FAMILY = "cut_in"
S_EGO0 = 40.0  # [m]


@dataclass(frozen=True)
class Params:
    n_fwd: int = 2
    n_bwd: int = 1
    ego_lane: int = 1
    from_side: str = "left"  # side of the ego the cutter comes from
    ego_speed_mps: float = 13.0
    cutter_kind: str = "car"
    cutter_slower_mps: float = 1.5
    cut_time_s: float = 4.0
    cut_duration_s: float = 3.0
    land_gap_m: float = 15.0  # cutter rear to ego front when the lane change completes
    lead_gap_m: float = 0.0  # 0 = no lead in the ego lane
    n_oncoming: int = 2
    time_of_day: str = "day"
    weather: str = "clear"

    @property
    def cutter_lane(self) -> int:
        return self.ego_lane - 1 if self.from_side == "left" else self.ego_lane + 1


def sample_params(rng: np.random.Generator) -> Params:
    n_fwd = int(rng.choice([2, 2, 3]))
    ego_lane = int(rng.integers(n_fwd))
    sides = [s for s, ok in (("left", ego_lane > 0), ("right", ego_lane < n_fwd - 1)) if ok]
    tod, weather = sample_conditions(rng)
    return Params(
        n_fwd=n_fwd, n_bwd=int(rng.choice([0, 1, 2])), ego_lane=ego_lane, from_side=str(rng.choice(sides)),
        ego_speed_mps=uniform(rng, 11.0, 16.0), cutter_kind=str(rng.choice(["car", "car", "car", "truck"])),
        cutter_slower_mps=uniform(rng, 0.0, 3.0), cut_time_s=uniform(rng, 3.0, 6.0, 1),
        cut_duration_s=uniform(rng, 2.5, 3.5, 1), land_gap_m=uniform(rng, 10.0, 20.0, 1),
        lead_gap_m=0.0 if rng.random() < 0.5 else uniform(rng, 60.0, 90.0, 1), n_oncoming=int(rng.integers(0, 4)),
        time_of_day=tod, weather=weather,
    )


def _make_map(p: Params):
    length = S_EGO0 + 20 * p.ego_speed_mps + 200.0
    road = roads.build_road(roads.straight_line((0.0, 0.0), (length, 0.0)), p.n_fwd, p.n_bwd, "R",
                            speed_limit_mps=roads.kmh(60.0))
    road.parts.signs.append(roads.speed_limit_sign("sign_limit", road.parts.lanes[road.fwd_ids[-1]], 60.0, 60))
    return road.parts.build(), road


def _make_actors(p: Params, m, road, rng: np.random.Generator):
    if not 0 <= p.cutter_lane < p.n_fwd:
        raise ValueError(f"cut_in: no lane on the {p.from_side} of ego lane {p.ego_lane} (n_fwd={p.n_fwd})")
    ego_id, cut_id = road.fwd_ids[p.ego_lane], road.fwd_ids[p.cutter_lane]
    ego = ego_on_lane(m.lane(ego_id), S_EGO0, p.ego_speed_mps, (ego_id,))
    v_c = p.ego_speed_mps - p.cutter_slower_mps
    half = 0.5 * DEFAULT_SIZE_LWH_M[p.cutter_kind][0]
    t_land = p.cut_time_s + p.cut_duration_s
    s_cut = S_EGO0 + EGO_FRONT_M + p.land_gap_m + half + (p.ego_speed_mps - v_c) * t_land
    ev = LaneChangeEvent(us(p.cut_time_s), ego_id, us(p.cut_duration_s))
    cutter = vehicle_on_lane("cutter", m.lane(cut_id), s_cut, v_c, idm((cut_id,), v_c, lane_change_events=(ev,)),
                             kind=p.cutter_kind)
    actors = [cutter]
    if p.lead_gap_m:
        actors.append(vehicle_on_lane("lead", m.lane(ego_id), S_EGO0 + EGO_FRONT_M + p.lead_gap_m + 2.3,
                                      p.ego_speed_mps, idm((ego_id,), p.ego_speed_mps + 1.0)))
    # Faster traffic ahead of the cutter in its lane, out of its way.
    actors += background_stream(m, (cut_id,), "adjacent", rng, 2, s_cut + half + 40.0, speed_mps=p.ego_speed_mps + 1.5)
    for j, lid in enumerate(road.bwd_ids[:1]):
        actors += background_stream(m, (lid,), "oncoming", rng, p.n_oncoming, float(rng.uniform(20.0, 80.0)),
                                    speed_mps=roads.kmh(60.0))
    hazards = [Hazard(ev.t_us, "cut_in", "cutter", f"{p.cutter_kind} cuts in from the {p.from_side}")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    m, road = _make_map(p)
    ego, actors, hazards = _make_actors(p, m, road, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, (), hazards, scenario_id, seed)
