"""pedestrian_crosswalk — a pedestrian crosses at a marked mid-block crosswalk.

The pedestrian enters the ego lane when the ego (at its start speed) is 20–35 m from the crosswalk,
so the ego must yield; oncoming traffic passes the crosswalk before or after the pedestrian.
Decisions exercised: Yield, Stop, Resume Speed; causal factors: pedestrian, crosswalk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    EGO_FRONT_M, Hazard, assemble, ego_on_lane, idm, sample_conditions, uniform, us, vehicle_on_lane,
)
from cordillera.world.map import Crosswalk
from cordillera.world.scenario import ActorSpec, StaticBehavior, WalkerBehavior

CATEGORY = "nominal"
FAMILY = "pedestrian_crosswalk"
S_EGO0 = 40.0  # [m]
PED_RADIUS_M = 0.3  # [m]


@dataclass(frozen=True)
class Params:
    n_fwd: int = 1
    n_bwd: int = 1
    ego_lane: int = 0
    ego_speed_mps: float = 11.0
    side: str = "right"  # kerb the pedestrian starts from, seen by the ego
    walk_speed_mps: float = 1.4
    start_time_s: float = 3.0  # pedestrian starts walking
    enter_dist_m: float = 28.0  # ego front to crossing line when the pedestrian enters the ego lane
    oncoming_speed_mps: float = 12.0
    bystander: bool = True
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    n_fwd = int(rng.choice([1, 1, 2]))
    tod, weather = sample_conditions(rng)
    return Params(
        n_fwd=n_fwd, n_bwd=int(rng.choice([1, 1, 2])), ego_lane=int(rng.integers(n_fwd)),
        ego_speed_mps=uniform(rng, 9.0, 13.0), side=str(rng.choice(["right", "left"])),
        walk_speed_mps=uniform(rng, 1.1, 1.7), start_time_s=uniform(rng, 1.5, 5.0, 1),
        enter_dist_m=uniform(rng, 20.0, 35.0, 1), oncoming_speed_mps=uniform(rng, 10.0, 13.0),
        bystander=bool(rng.random() < 0.6), time_of_day=tod, weather=weather,
    )


@dataclass(frozen=True)
class Crossing:
    """Where and when a walker crosses a straight road along +x (derived from the parameters)."""

    x_m: float  # crossing line
    y_start_m: float
    y_end_m: float
    y_enter_m: float  # walker centre when it touches the ego lane
    t_enter_s: float
    d0_m: float  # ego front to the crossing line at t = 0


def crossing(n_fwd, n_bwd, ego_lane, side, walk_speed, start_s, enter_dist, ego_speed, y_right_kerb_m,
             w=roads.LANE_WIDTH_M, start_off_kerb_m=1.0) -> Crossing:
    y_left_kerb = n_bwd * w + roads.SHOULDER_M
    y_lane = -(ego_lane + 0.5) * w
    if side == "right":
        y0, y1, y_enter = y_right_kerb_m - start_off_kerb_m, y_left_kerb + 1.5, y_lane - 0.5 * w - PED_RADIUS_M
    elif side == "left":
        y0, y1, y_enter = y_left_kerb + start_off_kerb_m, y_right_kerb_m - 1.5, y_lane + 0.5 * w + PED_RADIUS_M
    else:
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    t_enter = start_s + abs(y_enter - y0) / walk_speed
    d0 = enter_dist + ego_speed * t_enter
    return Crossing(S_EGO0 + EGO_FRONT_M + d0, y0, y1, y_enter, t_enter, d0)


def _crossing(p: Params) -> Crossing:
    y_r = -(p.n_fwd * roads.LANE_WIDTH_M + roads.SHOULDER_M)
    return crossing(p.n_fwd, p.n_bwd, p.ego_lane, p.side, p.walk_speed_mps, p.start_time_s, p.enter_dist_m,
                    p.ego_speed_mps, y_r)


def _make_map(p: Params):
    c = _crossing(p)
    length = max(c.x_m + 150.0, S_EGO0 + 20 * p.ego_speed_mps + 120.0)
    road = roads.build_road(roads.straight_line((0.0, 0.0), (length, 0.0)), p.n_fwd, p.n_bwd, "R")
    parts = road.parts
    y_r = -(p.n_fwd * roads.LANE_WIDTH_M + roads.SHOULDER_M)
    y_l = p.n_bwd * roads.LANE_WIDTH_M + roads.SHOULDER_M
    parts.crosswalks.append(Crosswalk("crosswalk", np.array(
        [[c.x_m - 1.5, y_r], [c.x_m + 1.5, y_r], [c.x_m + 1.5, y_l], [c.x_m - 1.5, y_l]])))
    kerb_f, kerb_b = parts.lanes[road.fwd_ids[-1]], parts.lanes[road.bwd_ids[-1]]
    parts.signs.append(roads.roadside_sign("sign_crossing", "pedestrian_crossing", kerb_f, c.x_m - 35.0))
    parts.signs.append(roads.roadside_sign("sign_crossing_rev", "pedestrian_crossing", kerb_b,
                                           kerb_b.length_m - c.x_m - 35.0))
    return parts.build(), road, c


def oncoming_around(m, lane_id, x_cross, t_busy, speed, prefix):
    """Oncoming vehicles (driving -x on ``lane_id``) that pass ``x_cross`` 3 s before / after the
    busy interval ``t_busy`` = (t0, t1)."""
    lane = m.lane(lane_id)
    s_cross = lane.length_m - x_cross
    out = []
    for k, t in enumerate((t_busy[0] - 3.0, t_busy[1] + 3.0)):
        s = s_cross - speed * t - 2.3
        if t > 0.5 and 5.0 < s < lane.length_m - 5.0:
            out.append(vehicle_on_lane(f"{prefix}{k}", lane, s, speed, idm((lane_id,), speed)))
    return out


def _make_actors(p: Params, m, road, c: Crossing, rng: np.random.Generator):
    route = (road.fwd_ids[p.ego_lane],)
    ego = ego_on_lane(m.lane(route[0]), S_EGO0, p.ego_speed_mps, route)
    heading = math.pi / 2 if c.y_end_m > c.y_start_m else -math.pi / 2
    ped = ActorSpec("ped0", "pedestrian", c.x_m, c.y_start_m, heading, 0.0,
                    behavior=WalkerBehavior(((c.x_m, c.y_start_m), (c.x_m, c.y_end_m)), p.walk_speed_mps,
                                            us(p.start_time_s), yield_to_ego=False))
    actors = [ped]
    t_cross_all = abs(c.y_end_m - c.y_start_m) / p.walk_speed_mps
    for lid in road.bwd_ids[:1]:
        actors += oncoming_around(m, lid, c.x_m, (p.start_time_s, p.start_time_s + t_cross_all),
                                  p.oncoming_speed_mps, "oncoming")
    if p.bystander:
        y = c.y_end_m + (1.0 if c.y_end_m > 0 else -1.0)
        actors.append(ActorSpec("bystander", "pedestrian", c.x_m + float(rng.uniform(4.0, 12.0)), y,
                                float(rng.uniform(-math.pi, math.pi)), behavior=StaticBehavior()))
    hazards = [Hazard(us(p.start_time_s), "pedestrian_crossing", "ped0",
                      f"pedestrian crossing from the {p.side} at the crosswalk")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    m, road, c = _make_map(p)
    ego, actors, hazards = _make_actors(p, m, road, c, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, (), hazards, scenario_id, seed)
