"""emergency_brake_lead — the lead vehicle brakes hard to a stop (long tail), sometimes because an
animal runs across in front of it.

The gap is chosen so that an ego reacting within 0.5 s and braking at 6 m/s² stops at least 2 m
behind the lead (solvable), but an inattentive driver does not.
Decisions exercised: Stop (strong_deceleration), Keep Distance; causal factor: lead vehicle braking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    EGO_FRONT_M, Hazard, assemble, background_stream, ego_on_lane, idm, sample_conditions, uniform, us,
    vehicle_on_lane,
)
from cordillera.world.scenario import ActorSpec, BrakeEvent, WalkerBehavior

CATEGORY = "long_tail"
FAMILY = "emergency_brake_lead"
S_EGO0 = 40.0  # [m]
EGO_REACTION_S = 0.5  # [s] assumed for the solvability bound
EGO_BRAKE_MPS2 = 6.0  # [m/s²]
MARGIN_M = 2.0  # [m]


def min_gap_m(v: float, lead_decel: float) -> float:
    """Smallest initial bumper gap an ego (0.5 s reaction, 6 m/s²) needs behind a lead that brakes
    from the same speed ``v`` at ``lead_decel`` to a stop."""
    return v * EGO_REACTION_S + v * v / (2 * EGO_BRAKE_MPS2) - v * v / (2 * lead_decel) + MARGIN_M


@dataclass(frozen=True)
class Params:
    ego_speed_mps: float = 13.0
    lead_gap_m: float = 18.0
    lead_kind: str = "car"
    brake_time_s: float = 5.0
    brake_decel_mps2: float = 7.0
    cause: str = "none"  # "none" | "animal"
    n_oncoming: int = 2
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    v = uniform(rng, 10.0, 15.0)
    decel = uniform(rng, 6.0, 8.0)
    lo = max(12.0, min_gap_m(v, decel) + 1.0)
    tod, weather = sample_conditions(rng)
    return Params(
        ego_speed_mps=v, lead_gap_m=uniform(rng, lo, max(lo + 1.0, 1.6 * v), 1),
        lead_kind=str(rng.choice(["car", "car", "truck"])), brake_time_s=uniform(rng, 4.0, 8.0, 1),
        brake_decel_mps2=decel, cause=str(rng.choice(["none", "animal"])), n_oncoming=int(rng.integers(0, 3)),
        time_of_day=tod, weather=weather,
    )


def _make_map(p: Params):
    length = S_EGO0 + 20 * p.ego_speed_mps + 200.0
    road = roads.build_road(roads.straight_line((0.0, 0.0), (length, 0.0)), 1, 1, "R", speed_limit_mps=roads.kmh(60.0))
    return road.parts.build(), road


def _make_actors(p: Params, m, road, rng: np.random.Generator):
    ego_id = road.fwd_ids[0]
    lane = m.lane(ego_id)
    ego = ego_on_lane(lane, S_EGO0, p.ego_speed_mps, (ego_id,))
    half = 4.25 if p.lead_kind == "truck" else 2.3
    s_lead = S_EGO0 + EGO_FRONT_M + p.lead_gap_m + half
    brake = BrakeEvent(us(p.brake_time_s), p.brake_decel_mps2, 0.0, 3_000_000)
    actors = [vehicle_on_lane("lead", lane, s_lead, p.ego_speed_mps,
                              idm((ego_id,), p.ego_speed_mps, brake_events=(brake,)), kind=p.lead_kind)]
    if p.cause == "animal":
        # A deer crosses ~12 m in front of the lead as it starts braking, leaving before the ego arrives.
        x_cross = s_lead + half + p.ego_speed_mps * p.brake_time_s + 12.0
        y0, y1 = -(lane.width_m + roads.SHOULDER_M + 3.0), lane.width_m + roads.SHOULDER_M + 6.0
        speed = 5.0
        start = p.brake_time_s - (abs(y0) - 0.5 * lane.width_m) / speed
        actors.append(ActorSpec("animal", "animal", x_cross, y0, math.pi / 2, 0.0,
                                behavior=WalkerBehavior(((x_cross, y0), (x_cross, y1)), speed, us(max(0.0, start)))))
    actors += background_stream(m, (road.bwd_ids[0],), "oncoming", rng, p.n_oncoming, float(rng.uniform(20.0, 80.0)),
                                speed_mps=roads.kmh(60.0))
    why = " for an animal crossing" if p.cause == "animal" else ""
    hazards = [Hazard(brake.t_us, "lead_emergency_braking", "lead",
                      f"lead {p.lead_kind} brakes hard at {p.brake_decel_mps2:.1f} m/s²{why}")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    m, road = _make_map(p)
    ego, actors, hazards = _make_actors(p, m, road, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, (), hazards, scenario_id, seed)
