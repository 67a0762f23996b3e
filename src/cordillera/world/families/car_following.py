"""car_following — follow a lead vehicle that slows down (or stops) moderately.

Decisions exercised: Keep Distance, Stop (lead stops), Resume Speed.
Hazard: the lead starts braking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    EGO_FRONT_M, Hazard, assemble, background_stream, ego_on_lane, idm, sample_conditions, uniform, us,
    vehicle_on_lane,
)
from cordillera.world.scenario import DEFAULT_SIZE_LWH_M, BrakeEvent

CATEGORY = "nominal"
FAMILY = "car_following"
S_EGO0 = 40.0  # [m]


@dataclass(frozen=True)
class Params:
    n_fwd: int = 1
    ego_speed_mps: float = 12.0
    limit_kmh: float = 50.0
    lead_gap_m: float = 25.0  # bumper to bumper at t = 0
    lead_kind: str = "car"
    brake_time_s: float = 5.0
    brake_decel_mps2: float = 3.0
    brake_target_speed_mps: float = 0.0
    brake_hold_s: float = 4.0
    curvature_1pm: float = 0.0
    n_oncoming: int = 3
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    v = uniform(rng, 9.0, 14.0)
    tod, weather = sample_conditions(rng)
    return Params(
        n_fwd=int(rng.choice([1, 1, 2])),
        ego_speed_mps=v,
        limit_kmh=float(rng.choice([50.0, 60.0])),
        lead_gap_m=round(v * float(rng.uniform(1.6, 2.6)), 1),
        lead_kind=str(rng.choice(["car", "car", "car", "truck", "bus"])),
        brake_time_s=uniform(rng, 3.5, 8.0, 1),
        brake_decel_mps2=uniform(rng, 2.0, 3.5),
        brake_target_speed_mps=0.0 if rng.random() < 0.5 else uniform(rng, 2.0, 5.0),
        brake_hold_s=uniform(rng, 2.0, 6.0, 1),
        curvature_1pm=0.0 if rng.random() < 0.6 else round(float(rng.uniform(-1 / 250, 1 / 250)), 5),
        n_oncoming=int(rng.integers(1, 5)),
        time_of_day=tod,
        weather=weather,
    )


def _make_map(p: Params):
    length = S_EGO0 + p.ego_speed_mps * 20.0 + 200.0
    ref = roads.reference_line((0.0, 0.0), 0.0, ((length, p.curvature_1pm, p.curvature_1pm),), 2.0)
    road = roads.build_road(ref, p.n_fwd, 1, "R", speed_limit_mps=roads.kmh(p.limit_kmh))
    parts = road.parts
    parts.signs.append(roads.speed_limit_sign("sign_limit", parts.lanes[road.fwd_ids[-1]], S_EGO0 + 25.0, p.limit_kmh))
    return parts.build(), road


def _make_signals(p: Params, m) -> tuple:
    return ()


def _make_actors(p: Params, m, road, rng: np.random.Generator):
    ego_lane = road.fwd_ids[-1]
    route = (ego_lane,)
    lane = m.lane(ego_lane)
    ego = ego_on_lane(lane, S_EGO0, p.ego_speed_mps, route)
    half = 0.5 * DEFAULT_SIZE_LWH_M[p.lead_kind][0]
    s_lead = S_EGO0 + EGO_FRONT_M + p.lead_gap_m + half
    brake = BrakeEvent(us(p.brake_time_s), p.brake_decel_mps2, p.brake_target_speed_mps, us(p.brake_hold_s))
    lead = vehicle_on_lane("lead", lane, s_lead, p.ego_speed_mps,
                           idm(route, p.ego_speed_mps, brake_events=(brake,)), kind=p.lead_kind)
    actors = [lead]
    if p.n_fwd > 1:
        other = road.fwd_ids[0]
        actors += background_stream(m, (other,), "adjacent", rng, 2, S_EGO0 + float(rng.uniform(-25.0, 40.0)),
                                    speed_mps=p.ego_speed_mps * 1.1)
        actors = [a for a in actors if a.id == "lead" or abs(_s(m, other, a) - S_EGO0) > 8.0]
    actors += background_stream(m, (road.bwd_ids[0],), "oncoming", rng, p.n_oncoming, float(rng.uniform(20.0, 80.0)),
                                speed_mps=roads.kmh(p.limit_kmh))
    hazards = [Hazard(brake.t_us, "lead_braking", "lead",
                      f"lead {p.lead_kind} brakes at {p.brake_decel_mps2:.1f} m/s² to {p.brake_target_speed_mps:.1f} m/s")]
    return ego, actors, hazards


def _s(m, lane_id, actor) -> float:
    return float(m.lane(lane_id).to_frenet(np.array([actor.x_m, actor.y_m]))[0])


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    m, road = _make_map(p)
    lights = _make_signals(p, m)
    ego, actors, hazards = _make_actors(p, m, road, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, lights, hazards, scenario_id, seed)
