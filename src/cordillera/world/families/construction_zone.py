"""construction_zone — cones and barriers narrow or close the ego lane (long tail).

``narrowing``: on a two-way road cones intrude 0.8–1.4 m into the ego lane from the kerb over a
40–70 m work zone (nudge left, possibly over the centre line; oncoming traffic is timed to pass the
zone before or after the ego). ``lane_closure``: on a two-lane carriageway a cone taper closes the
kerb lane (lane change left). The zone becomes relevant (ego front 60 m from the first cone) 3–6 s in.
Decisions exercised: Nudge / Lane Change, Adapt Speed, Gap-search; causal factor: construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    EGO_FRONT_M, Hazard, assemble, background_stream, ego_on_lane, idm, sample_conditions, uniform, us,
    vehicle_on_lane,
)
from cordillera.world.scenario import ActorSpec, StaticBehavior

CATEGORY = "long_tail"
FAMILY = "construction_zone"
S_EGO0 = 40.0  # [m]
RELEVANT_M = 60.0  # [m]
TAPER_M = 15.0  # [m] length of the cone taper at each end


@dataclass(frozen=True)
class Params:
    variant: str = "narrowing"  # "narrowing" | "lane_closure"
    ego_speed_mps: float = 10.0
    relevant_time_s: float = 4.0
    zone_length_m: float = 50.0
    intrusion_m: float = 1.1  # narrowing: how far the cone line reaches into the ego lane from its right edge
    cone_spacing_m: float = 4.0
    workers: int = 1
    oncoming_speed_mps: float = 11.0
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    tod, weather = sample_conditions(rng)
    return Params(
        variant=str(rng.choice(["narrowing", "lane_closure"])), ego_speed_mps=uniform(rng, 8.0, 12.0),
        relevant_time_s=uniform(rng, 3.0, 6.0, 1), zone_length_m=uniform(rng, 40.0, 70.0, 1),
        intrusion_m=uniform(rng, 0.8, 1.4), cone_spacing_m=uniform(rng, 3.0, 5.0, 1), workers=int(rng.integers(0, 3)),
        oncoming_speed_mps=uniform(rng, 9.0, 12.0), time_of_day=tod, weather=weather,
    )


def first_cone_s(p: Params) -> float:
    return S_EGO0 + EGO_FRONT_M + RELEVANT_M + p.ego_speed_mps * p.relevant_time_s


def cone_offsets(p: Params, w: float = roads.LANE_WIDTH_M) -> tuple[np.ndarray, np.ndarray]:
    """(s, r) of the cone line on the ego lane: a taper in, the zone, a taper out."""
    r_edge = -0.5 * w - 0.2
    r_in = -0.5 * w + p.intrusion_m if p.variant == "narrowing" else 0.5 * w - 0.35
    s0 = first_cone_s(p)
    total = 2 * TAPER_M + p.zone_length_m
    s = s0 + np.arange(0.0, total + 1e-6, p.cone_spacing_m)
    u = s - s0
    r = np.where(u < TAPER_M, r_edge + (r_in - r_edge) * u / TAPER_M,
                 np.where(u > TAPER_M + p.zone_length_m, r_in + (r_edge - r_in) * (u - TAPER_M - p.zone_length_m) / TAPER_M,
                          r_in))
    return s, r


def _make_map(p: Params):
    length = S_EGO0 + 20 * p.ego_speed_mps + 200.0
    n_fwd, n_bwd = (1, 1) if p.variant == "narrowing" else (2, 1)
    road = roads.build_road(roads.straight_line((0.0, 0.0), (length, 0.0)), n_fwd, n_bwd, "R",
                            speed_limit_mps=roads.kmh(50.0))
    kerb = road.parts.lanes[road.fwd_ids[-1]]
    s0 = first_cone_s(p)
    road.parts.signs.append(roads.roadside_sign("sign_construction", "construction", kerb, s0 - 45.0))
    road.parts.signs.append(roads.speed_limit_sign("sign_limit_zone", kerb, s0 - 40.0, 30))
    return road.parts.build(), road


def _make_actors(p: Params, m, road, rng: np.random.Generator):
    ego_id = road.fwd_ids[-1]
    lane = m.lane(ego_id)
    ego = ego_on_lane(lane, S_EGO0, p.ego_speed_mps, (ego_id,))
    s, r = cone_offsets(p)
    actors = [vehicle_on_lane(f"cone{k}", lane, float(sk), 0.0, StaticBehavior(), kind="cone", r_m=float(rk))
              for k, (sk, rk) in enumerate(zip(s, r))]
    # Barriers inside the closed area, parallel to the road, and workers behind them.
    s_zone0, s_zone1 = s[0] + TAPER_M, s[0] + TAPER_M + p.zone_length_m
    r_inside = 0.5 * (-0.5 * lane.width_m - 0.6 + float(r.max())) - 0.3
    for k, sb in enumerate(np.arange(s_zone0 + 4.0, s_zone1 - 4.0, 6.0)):
        actors.append(vehicle_on_lane(f"barrier{k}", lane, float(sb), 0.0, StaticBehavior(), kind="barrier",
                                      r_m=r_inside - 0.4))
    for k in range(p.workers):
        sw = float(rng.uniform(s_zone0 + 2.0, s_zone1 - 2.0))
        x, y = lane.position(sw, -0.5 * lane.width_m - roads.SHOULDER_M - 0.8)
        actors.append(ActorSpec(f"worker{k}", "pedestrian", float(x), float(y), float(rng.uniform(-3.1, 3.1)),
                                behavior=StaticBehavior()))
    v0 = p.ego_speed_mps
    t_in = (s[0] - S_EGO0 - EGO_FRONT_M) / v0
    t_out = (s[-1] - S_EGO0) / v0 + 1.0
    if p.variant == "narrowing":
        # Oncoming vehicles pass the zone well before / after the ego: the nudge needs no gap search.
        b = m.lane(road.bwd_ids[0])
        for k, t in enumerate((t_in - 3.0, t_out + 4.0)):
            s_front_zone = b.length_m - float(s[-1])  # zone end (on the b lane) is met first
            s_c = s_front_zone - p.oncoming_speed_mps * t - 2.3
            if t > 0.5 and 5.0 < s_c < b.length_m - 5.0:
                actors.append(vehicle_on_lane(f"oncoming{k}", b, s_c, p.oncoming_speed_mps,
                                              idm((b.id,), p.oncoming_speed_mps)))
    else:
        pass_id = road.fwd_ids[0]
        actors += background_stream(m, (pass_id,), "adjacent", rng, 2, S_EGO0 + float(rng.uniform(25.0, 45.0)),
                                    speed_mps=v0 + 1.0)
        actors += background_stream(m, (road.bwd_ids[0],), "oncoming", rng, 3, float(rng.uniform(20.0, 80.0)),
                                    speed_mps=p.oncoming_speed_mps)
    what = "lane narrowed by cones" if p.variant == "narrowing" else "lane closed by construction cones"
    hazards = [Hazard(us(p.relevant_time_s), "construction_zone", "cone0", what)]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    if p.variant not in ("narrowing", "lane_closure"):
        raise ValueError(f"construction_zone variant must be narrowing/lane_closure, got {p.variant!r}")
    m, road = _make_map(p)
    ego, actors, hazards = _make_actors(p, m, road, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, (), hazards, scenario_id, seed)
