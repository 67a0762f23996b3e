"""Small helpers shared by the scenario families (placement on lanes, conditions, assembly)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np

from cordillera.world.map import Lane, RoadMap
from cordillera.world.scenario import (
    DEFAULT_SIZE_LWH_M,
    ActorSpec,
    Conditions,
    EgoSpec,
    Hazard,
    IdmBehavior,
    IdmParams,
    Scenario,
    TrafficLight,
)

DURATION_US = 20_000_000  # [µs] AlpaSim recordings are ~20 s, spec/alpasim.md §3.3
EGO = EgoSpec(0.0, 0.0, 0.0, 0.0, ())  # default ego dimensions, spec/alpasim.md §1.2
EGO_FRONT_M = EGO.rear_axle_to_center_m + 0.5 * EGO.length_m  # [m] rig origin -> front bumper
EGO_REAR_M = 0.5 * EGO.length_m - EGO.rear_axle_to_center_m  # [m] rig origin -> rear bumper
NIGHT_P, DUSK_P, RAIN_P, FOG_P = 0.20, 0.10, 0.15, 0.05  # per-seed condition frequencies


def sample_conditions(rng: np.random.Generator) -> tuple[str, str]:
    """(time_of_day, weather): ~20 % night, ~10 % dusk; ~15 % rain, ~5 % fog."""
    u, v = rng.random(), rng.random()
    tod = "night" if u < NIGHT_P else ("dusk" if u < NIGHT_P + DUSK_P else "day")
    weather = "rain" if v < RAIN_P else ("fog" if v < RAIN_P + FOG_P else "clear")
    return tod, weather


def uniform(rng: np.random.Generator, lo: float, hi: float, nd: int = 2) -> float:
    return round(float(rng.uniform(lo, hi)), nd)


def us(t_s: float) -> int:
    """Seconds -> µs rounded to the 100 ms control grid."""
    return int(round(t_s * 10.0)) * 100_000


def ego_on_lane(lane: Lane, s_rig_m: float, speed_mps: float, route: tuple[str, ...], nav_text: str | None = None) -> EgoSpec:
    x, y = lane.position(s_rig_m)
    return EgoSpec(float(x), float(y), float(lane.heading_at(s_rig_m)), float(speed_mps), tuple(route), nav_text=nav_text)


def vehicle_on_lane(actor_id: str, lane: Lane, s_center_m: float, speed_mps: float, behavior=None,
                    kind: str = "car", r_m: float = 0.0, yaw_offset_rad: float = 0.0, appear_us: int = 0,
                    length_m: float | None = None, width_m: float | None = None) -> ActorSpec:
    """An actor whose box centre sits at (s, r) on ``lane`` and whose yaw follows the lane."""
    x, y = lane.position(s_center_m, r_m)
    kw = {} if behavior is None else {"behavior": behavior}
    return ActorSpec(actor_id, kind, float(x), float(y), float(lane.heading_at(s_center_m)) + yaw_offset_rad,
                     float(speed_mps), length_m=length_m, width_m=width_m, appear_us=appear_us, **kw)


def idm(route: tuple[str, ...], desired_speed_mps: float, **kw) -> IdmBehavior:
    p = {k: kw.pop(k) for k in list(kw) if k in IdmParams.__dataclass_fields__}
    return IdmBehavior(tuple(route), IdmParams(desired_speed_mps=float(desired_speed_mps), **p), **kw)


def lane_route(m: RoadMap, start_id: str, max_lanes: int = 8, prefer: str | None = None) -> tuple[str, ...]:
    """Follow first successors (or the one containing ``prefer``) from ``start_id``."""
    out = [start_id]
    while len(out) < max_lanes:
        succ = m.lane(out[-1]).successors
        if not succ:
            break
        pick = next((s for s in succ if prefer and prefer in s), succ[0])
        if pick in out:
            break
        out.append(pick)
    return tuple(out)


def background_stream(m: RoadMap, route: tuple[str, ...], prefix: str, rng: np.random.Generator, n: int,
                      s_start_m: float, gap_range_m=(30.0, 60.0), speed_mps: float = 12.0,
                      kinds=("car", "car", "car", "car", "truck"), **idm_kw) -> list[ActorSpec]:
    """``n`` IDM vehicles along the first lane of ``route`` at s_start, s_start + gap, ...; vehicles
    that would fall beyond the first lane are dropped (keeps placement simple and on-lane)."""
    lane = m.lane(route[0])
    out, s = [], s_start_m
    for k in range(n):
        kind = str(kinds[int(rng.integers(len(kinds)))])
        half = 0.5 * DEFAULT_SIZE_LWH_M[kind][0]
        if s - half < 0 or s + half > lane.length_m:
            break
        v = round(speed_mps * float(rng.uniform(0.9, 1.05)), 2)
        out.append(vehicle_on_lane(f"{prefix}{k}", lane, s, v, idm(route, v, **idm_kw), kind=kind))
        s += float(rng.uniform(*gap_range_m)) + 2 * half
    return out


def box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = 0.5 * length, 0.5 * width
    local = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
    return np.array([x, y]) + local @ np.array([[c, s], [-s, c]])


def ego_box(ego: EgoSpec) -> np.ndarray:
    cx = ego.x_m + ego.rear_axle_to_center_m * math.cos(ego.yaw_rad)
    cy = ego.y_m + ego.rear_axle_to_center_m * math.sin(ego.yaw_rad)
    return box_corners(cx, cy, ego.yaw_rad, ego.length_m, ego.width_m)


def to_jsonable(params) -> dict:
    return json.loads(json.dumps(asdict(params)))


def assemble(family: str, category: str, params, road_map: RoadMap, ego: EgoSpec, actors, lights=(),
             hazards=(), scenario_id: str | None = None, seed: int = 0) -> Scenario:
    return Scenario(
        id=scenario_id or f"{family}-custom",
        family=family,
        category=category,
        seed=int(seed),
        params=to_jsonable(params),
        map=road_map,
        ego=ego,
        actors=tuple(actors),
        traffic_lights=tuple(lights),
        conditions=Conditions(params.time_of_day, params.weather),
        hazards=tuple(sorted(hazards, key=lambda h: h.t_us)),
        duration_us=DURATION_US,
    )


__all__ = [
    "DURATION_US", "EGO_FRONT_M", "EGO_REAR_M", "sample_conditions", "uniform", "us", "ego_on_lane",
    "vehicle_on_lane", "idm", "lane_route", "background_stream", "box_corners", "ego_box", "to_jsonable",
    "assemble", "Hazard", "TrafficLight",
]
