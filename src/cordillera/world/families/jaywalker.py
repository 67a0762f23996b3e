"""jaywalker — a pedestrian, a child or an animal darts across mid-block, away from any crosswalk,
often from between parked cars (long tail).

It enters the ego lane when the ego (at its start speed) is 20–35 m away: an immediate but
feasible stop for a careful driver.
Decisions exercised: Stop / Yield (emergency), Resume Speed; causal factors: jaywalker, occlusion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    Hazard, assemble, ego_on_lane, sample_conditions, uniform, us,
)
from cordillera.world.families.pedestrian_crosswalk import S_EGO0, crossing, oncoming_around
from cordillera.world.scenario import ActorSpec, StaticBehavior, WalkerBehavior

CATEGORY = "long_tail"
FAMILY = "jaywalker"
PARKING_M = 2.6  # [m] parking strip right of the kerb lane
WALKERS = {  # kind -> (actor kind, size lwh or None, speed range m/s)
    "adult": ("pedestrian", None, (1.4, 2.4)),
    "child": ("pedestrian", (0.45, 0.45, 1.2), (2.0, 3.0)),
    "animal": ("animal", None, (3.0, 5.0)),
}


@dataclass(frozen=True)
class Params:
    walker: str = "adult"
    side: str = "right"
    parked_cars: bool = True  # occluding parked cars on the right (only for side == "right")
    n_bwd: int = 1
    ego_speed_mps: float = 10.0
    walk_speed_mps: float = 1.8
    start_time_s: float = 3.0
    enter_dist_m: float = 26.0
    diagonal_m: float = 1.5  # x drift over the crossing (jaywalkers cut across)
    oncoming_speed_mps: float = 11.0
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    walker = str(rng.choice(["adult", "adult", "adult", "child", "animal"]))
    side = str(rng.choice(["right", "right", "left"]))
    tod, weather = sample_conditions(rng)
    return Params(
        walker=walker, side=side, parked_cars=side == "right" and bool(rng.random() < 0.8),
        n_bwd=int(rng.choice([1, 1, 2])), ego_speed_mps=uniform(rng, 8.0, 11.5),
        walk_speed_mps=uniform(rng, *WALKERS[walker][2]), start_time_s=uniform(rng, 2.5, 6.0, 1),
        enter_dist_m=uniform(rng, 22.0, 35.0, 1), diagonal_m=uniform(rng, -2.0, 2.0, 1),
        oncoming_speed_mps=uniform(rng, 9.0, 12.0), time_of_day=tod, weather=weather,
    )


def _crossing(p: Params):
    y_r = -(roads.LANE_WIDTH_M + PARKING_M)
    off = -1.0 if p.parked_cars and p.side == "right" else 1.0  # start inside the parking strip
    return crossing(1, p.n_bwd, 0, p.side, p.walk_speed_mps, p.start_time_s, p.enter_dist_m, p.ego_speed_mps,
                    y_r, start_off_kerb_m=off)


def _make_map(p: Params):
    c = _crossing(p)
    length = max(c.x_m + 150.0, S_EGO0 + 20 * p.ego_speed_mps + 120.0)
    road = roads.build_road(roads.straight_line((0.0, 0.0), (length, 0.0)), 1, p.n_bwd, "R",
                            right_shoulder_m=PARKING_M)
    return road.parts.build(), road, c


def _make_actors(p: Params, m, road, c, rng: np.random.Generator):
    route = (road.fwd_ids[0],)
    ego = ego_on_lane(m.lane(route[0]), S_EGO0, p.ego_speed_mps, route)
    kind, size, _ = WALKERS[p.walker]
    # x at the ego lane entry is c.x_m; the diagonal drift is spread linearly over the crossing.
    frac = abs(c.y_enter_m - c.y_start_m) / abs(c.y_end_m - c.y_start_m)
    x0 = c.x_m - frac * p.diagonal_m
    x1 = x0 + p.diagonal_m
    heading = math.atan2(c.y_end_m - c.y_start_m, x1 - x0)
    lwh = dict(zip(("length_m", "width_m", "height_m"), size)) if size else {}
    walker = ActorSpec("jaywalker", kind, x0, c.y_start_m, heading, 0.0, **lwh,
                       behavior=WalkerBehavior(((x0, c.y_start_m), (x1, c.y_end_m)), p.walk_speed_mps,
                                               us(p.start_time_s), yield_to_ego=False))
    actors = [walker]
    if p.parked_cars and p.side == "right":
        y_car = -(roads.LANE_WIDTH_M + 0.4 + 0.95)
        for k, dx in enumerate((-16.0, -5.4, 5.4, 16.0)):
            kd = "parked_car" if k != 1 else str(rng.choice(["parked_car", "truck"]))
            L = 8.5 if kd == "truck" else 4.6
            xc = x0 + dx - (0.5 * (L - 4.6) if dx < 0 else -0.5 * (L - 4.6))
            actors.append(ActorSpec(f"parked{k}", kd, xc, y_car if kd != "truck" else y_car - 0.3, 0.0,
                                    behavior=StaticBehavior()))
    t_busy = (p.start_time_s, p.start_time_s + abs(c.y_end_m - c.y_start_m) / p.walk_speed_mps)
    actors += oncoming_around(m, road.bwd_ids[0], c.x_m, t_busy, p.oncoming_speed_mps, "oncoming")
    what = {"adult": "pedestrian", "child": "child", "animal": "animal"}[p.walker]
    hazards = [Hazard(us(p.start_time_s), "jaywalker", "jaywalker",
                      f"{what} darts into the road from the {p.side}"
                      + (" between parked cars" if p.parked_cars and p.side == "right" else ""))]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    if p.walker not in WALKERS:
        raise ValueError(f"jaywalker walker must be one of {tuple(WALKERS)}, got {p.walker!r}")
    m, road, c = _make_map(p)
    ego, actors, hazards = _make_actors(p, m, road, c, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, (), hazards, scenario_id, seed)
