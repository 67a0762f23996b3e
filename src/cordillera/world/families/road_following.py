"""road_following — keep lane along a straight or curvy two-way road with a speed-limit change.

Decisions exercised: Keep Lane, Adapt Speed (curve / lower limit), Resume Speed, follow_curve_*.
Hazard: the ego reaches the speed-limit sign announcing the (curvy, slower) second section.
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

CATEGORY = "nominal"
FAMILY = "road_following"
LAT_ACCEL_COMFORT_MPS2 = 2.0  # [m/s²] curve speed limit = sqrt(a / κ) rounded down to 10 km/h


@dataclass(frozen=True)
class Params:
    n_fwd: int = 1
    n_bwd: int = 1
    ego_lane: int = 0  # index inner -> kerb
    ego_speed_mps: float = 13.0
    limit_kmh: float = 50.0
    curvature_1pm: float = 1.0 / 80.0  # signed, + = left; 0 = straight second section
    curve_length_m: float = 80.0
    sign_time_s: float = 5.0  # when the ego (at start speed) passes the limit sign
    n_oncoming: int = 3
    lead_gap_m: float = 70.0  # 0 = no lead
    follower: bool = True
    time_of_day: str = "day"
    weather: str = "clear"

    @property
    def second_limit_kmh(self) -> float:
        if self.curvature_1pm == 0:
            return self.limit_kmh
        v = math.sqrt(LAT_ACCEL_COMFORT_MPS2 / abs(self.curvature_1pm)) * 3.6
        return float(min(self.limit_kmh, max(20.0, 10.0 * math.floor(v / 10.0))))


def sample_params(rng: np.random.Generator) -> Params:
    limit = float(rng.choice([40.0, 50.0, 60.0]))
    curvy = rng.random() < 0.7
    k = float(rng.uniform(1 / 120, 1 / 45)) * float(rng.choice([-1.0, 1.0])) if curvy else 0.0
    n_fwd = int(rng.choice([1, 1, 2]))
    tod, weather = sample_conditions(rng)
    return Params(
        n_fwd=n_fwd,
        n_bwd=int(rng.choice([1, 1, 2])),
        ego_lane=int(rng.integers(n_fwd)),
        ego_speed_mps=uniform(rng, 0.8, 0.95) * limit / 3.6,
        limit_kmh=limit,
        curvature_1pm=round(k, 5),
        curve_length_m=uniform(rng, 50.0, 120.0, 1),
        sign_time_s=uniform(rng, 4.0, 7.0, 1),
        n_oncoming=int(rng.integers(1, 5)),
        lead_gap_m=0.0 if rng.random() < 0.3 else uniform(rng, 50.0, 90.0, 1),
        follower=bool(rng.random() < 0.5),
        time_of_day=tod,
        weather=weather,
    )


S_EGO0 = 40.0  # [m] ego rig arc length on the first section
SIGN_TO_CURVE_M = 40.0  # [m] the curve starts this far after the sign
CLOTHOID_M = 25.0  # [m] curvature ramps at each end of the arc


def _make_map(p: Params):
    v = p.ego_speed_mps
    s_sign = S_EGO0 + EGO_FRONT_M + v * p.sign_time_s
    len_a = s_sign + SIGN_TO_CURVE_M
    total = S_EGO0 + v * 20.0 + 150.0
    ref_a = roads.reference_line((0.0, 0.0), 0.0, ((len_a, 0.0, 0.0),), 2.0)
    k = p.curvature_1pm
    rest = max(40.0, total - len_a - p.curve_length_m - 2 * CLOTHOID_M)
    pieces = ((CLOTHOID_M, 0.0, k), (p.curve_length_m, k, k), (CLOTHOID_M, k, 0.0), (rest, 0.0, 0.0)) if k else (
        (total - len_a, 0.0, 0.0),)
    ref_b = roads.reference_line(tuple(ref_a[-1]), 0.0, pieces, 1.0 if k else 2.0)
    lim_a, lim_b = roads.kmh(p.limit_kmh), roads.kmh(p.second_limit_kmh)
    a = roads.build_road(ref_a, p.n_fwd, p.n_bwd, "A", speed_limit_mps=lim_a)
    b = roads.build_road(ref_b, p.n_fwd, p.n_bwd, "B", speed_limit_mps=lim_b)
    parts = roads.chain_roads(a, b)
    kerb_a = parts.lanes[a.fwd_ids[-1]]
    parts.signs.append(roads.speed_limit_sign("sign_limit_a", kerb_a, S_EGO0 + 30.0, p.limit_kmh))
    parts.signs.append(roads.speed_limit_sign("sign_limit_b", kerb_a, s_sign, p.second_limit_kmh))
    kerb_b = parts.lanes[b.bwd_ids[-1]]  # oncoming side gets its own sign before the straight
    parts.signs.append(roads.speed_limit_sign("sign_limit_b_rev", kerb_b, 20.0, p.second_limit_kmh))
    return parts.build(), a, b, s_sign


def _make_signals(p: Params, m) -> tuple:
    return ()


def _make_actors(p: Params, m, a, b, s_sign: float, rng: np.random.Generator):
    i = p.ego_lane
    route = (a.fwd_ids[i], b.fwd_ids[i])
    ego = ego_on_lane(m.lane(route[0]), S_EGO0, p.ego_speed_mps, route)
    lim_a, lim_b = roads.kmh(p.limit_kmh), roads.kmh(p.second_limit_kmh)
    actors = []
    if p.lead_gap_m > 0:
        s_lead = S_EGO0 + EGO_FRONT_M + p.lead_gap_m + 2.3
        actors.append(vehicle_on_lane("lead", m.lane(route[0]), s_lead, p.ego_speed_mps, idm(route, lim_b * 1.05)))
    if p.follower:
        s_f = S_EGO0 - 4.0 - 18.0
        actors.append(vehicle_on_lane("follower", m.lane(route[0]), s_f, p.ego_speed_mps,
                                      idm(route, lim_a, time_headway_s=1.8)))
    for j, lid in enumerate(b.bwd_ids):
        on_route = (lid, a.bwd_ids[j])
        actors += background_stream(m, on_route, f"oncoming{j}_", rng, p.n_oncoming,
                                    float(rng.uniform(20.0, 60.0)), speed_mps=lim_b)
    t_sign = us((s_sign - S_EGO0 - EGO_FRONT_M) / p.ego_speed_mps)
    desc = f"speed limit {p.limit_kmh:.0f} -> {p.second_limit_kmh:.0f} km/h"
    if p.curvature_1pm:
        desc += f", {'left' if p.curvature_1pm > 0 else 'right'} curve R={1 / abs(p.curvature_1pm):.0f} m ahead"
    hazards = [Hazard(t_sign, "speed_limit_change", "sign_limit_b", desc)]
    if p.curvature_1pm:
        hazards.append(Hazard(us((m.lane(route[0]).length_m - S_EGO0 - EGO_FRONT_M) / p.ego_speed_mps), "curve", None,
                              desc))
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    m, a, b, s_sign = _make_map(p)
    lights = _make_signals(p, m)
    ego, actors, hazards = _make_actors(p, m, a, b, s_sign, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, lights, hazards, scenario_id, seed)
