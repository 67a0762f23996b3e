"""merge_on_ramp — join a busy main road from an on-ramp.

A main-road vehicle in the kerb lane reaches the merge point within ±1.5 s of the ego (at their
start speeds), with more traffic 25–45 m apart around it: the ego must adjust speed to a gap.
Decisions exercised: Merge, Gap-search, Adapt Speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families._common import (
    EGO_FRONT_M, Hazard, assemble, ego_on_lane, idm, sample_conditions, uniform, us, vehicle_on_lane,
)

CATEGORY = "nominal"
FAMILY = "merge_on_ramp"


@dataclass(frozen=True)
class Params:
    n_main: int = 2
    ego_speed_mps: float = 14.0
    merge_time_s: float = 11.0  # ego front reaches the end of the ramp lane at its start speed
    main_speed_mps: float = 16.0
    conflict_offset_s: float = 0.0  # main vehicle front at the merge point relative to the ego
    main_gaps_m: tuple[float, ...] = (30.0, 35.0, 40.0)  # bumper gaps around the conflict vehicle
    inner_lane_traffic: int = 2
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    tod, weather = sample_conditions(rng)
    return Params(
        n_main=int(rng.choice([1, 2, 2])), ego_speed_mps=uniform(rng, 12.0, 15.0),
        merge_time_s=uniform(rng, 10.0, 12.5, 1), main_speed_mps=uniform(rng, 14.0, 18.0),
        conflict_offset_s=uniform(rng, -1.5, 1.5, 1),
        main_gaps_m=tuple(uniform(rng, 25.0, 45.0, 1) for _ in range(4)), inner_lane_traffic=int(rng.integers(0, 4)),
        time_of_day=tod, weather=weather,
    )


def _make_map(p: Params):
    o = roads.on_ramp_merge(n_main=p.n_main, main_speed_limit_mps=roads.kmh(70.0), ramp_speed_limit_mps=roads.kmh(60.0),
                            pre_m=max(300.0, p.main_speed_mps * (p.merge_time_s + 2.0) + 150.0),
                            post_m=p.main_speed_mps * 20.0 + 100.0, acc_len_m=70.0, taper_m=40.0, ramp_len_m=150.0)
    kerb0 = o.parts.lanes[o.main[2][-1]]
    o.parts.signs.append(roads.speed_limit_sign("sign_limit", kerb0, 40.0, 70))
    return o.parts.build(), o


def _main_vehicle(m, o: roads.OnRamp, lane_index: int, x_center: float, speed: float, actor_id: str, kind="car"):
    """Vehicle on the main road at box-centre x (the main road runs along +x, merge at x = 0)."""
    for sec in range(3):
        lid = o.main[sec][lane_index]
        lane = m.lane(lid)
        x0 = float(lane.centerline_xy[0, 0])
        if x0 + 2.5 <= x_center <= x0 + lane.length_m - 2.5:
            route = tuple(o.main[k][lane_index] for k in range(sec, 3))
            return vehicle_on_lane(actor_id, lane, x_center - x0, speed, idm(route, speed), kind=kind)
    return None


def _make_actors(p: Params, m, o: roads.OnRamp, rng: np.random.Generator):
    ramp, approach = m.lane(o.ramp_id), m.lane(o.approach_id)
    s0 = ramp.length_m - EGO_FRONT_M - p.ego_speed_mps * p.merge_time_s  # on the acceleration lane ...
    if s0 < 0:  # ... or (usually) still on the curved approach
        s0 += approach.length_m
        route, start = (o.approach_id, o.ramp_id, o.main[2][-1]), approach
    else:
        route, start = (o.ramp_id, o.main[2][-1]), ramp
    if s0 < 0:
        raise ValueError(f"merge_on_ramp: ramp too short for {p.merge_time_s} s at {p.ego_speed_mps} m/s")
    ego = ego_on_lane(start, s0, p.ego_speed_mps, route, nav_text="Merge onto the main road")
    kerb = p.n_main - 1
    v = p.main_speed_mps
    x_conf = o.merge_x_m - v * (p.merge_time_s + p.conflict_offset_s) - 2.3  # box centre, front at x=0 on time
    actors = []
    xs = [(0, x_conf)]
    x = x_conf
    for k, g in enumerate(p.main_gaps_m[:2]):  # ahead of the conflict vehicle
        x += g + 4.6
        xs.append((k + 1, x))
    x = x_conf
    for k, g in enumerate(p.main_gaps_m[2:]):  # behind it
        x -= g + 4.6
        xs.append((k + 3, x))
    for k, xc in xs:
        a = _main_vehicle(m, o, kerb, xc, round(v * float(rng.uniform(0.95, 1.03)), 2) if k else v, f"main{k}")
        if a is not None:
            actors.append(a)
    if p.n_main > 1:
        x = x_conf + float(rng.uniform(-40.0, 40.0))
        for k in range(p.inner_lane_traffic):
            a = _main_vehicle(m, o, 0, x, v + 1.5, f"inner{k}")
            if a is not None:
                actors.append(a)
            x += float(rng.uniform(35.0, 60.0))
    t_acc = max(0.0, (ramp.length_m - p.ego_speed_mps * p.merge_time_s) / -p.ego_speed_mps)  # at acc-lane start
    hazards = [Hazard(us(t_acc), "merge", "main0", "merging into main-road traffic")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    m, o = _make_map(p)
    ego, actors, hazards = _make_actors(p, m, o, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, (), hazards, scenario_id, seed)
