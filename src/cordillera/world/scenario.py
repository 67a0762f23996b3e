"""The immutable scenario description (DESIGN.md §3) and the mutable-free world state.

A ``Scenario`` holds everything needed to reproduce a rollout: the map, traffic-light programs,
actors with their behaviours, the ego start and route, duration, seed, family name and parameters,
rendering conditions and the hazard-onset times the CoC labeler uses. It serialises to JSON
(``to_json``/``from_json``) losslessly up to 1e-4 m rounding of map coordinates.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from cordillera.world.map import RoadMap

CONTROL_PERIOD_US = 100_000  # [µs] 10 Hz control, spec/alpasim.md §1.3

# ----------------------------------------------------------------------------------------------
# Traffic lights
# ----------------------------------------------------------------------------------------------
LIGHT_STATES = ("red", "yellow", "green", "dark", "flashing_yellow", "flashing_red")
LIGHT_MODES = ("normal", "dark", "flashing_yellow", "flashing_red", "stuck_red", "stuck_green")


@dataclass(frozen=True)
class SignalProgram:
    """Cyclic phase program. ``phases`` = ((state, duration_us), ...); the cycle starts at
    ``t_us = -offset_us``. Faulty modes override the cycle (``dark``, ``flashing_*``, ``stuck_*``);
    ``fault_start_us`` lets a light fail mid-scenario."""

    phases: tuple[tuple[str, int], ...] = (("green", 10_000_000), ("yellow", 3_000_000), ("red", 10_000_000))
    offset_us: int = 0
    mode: str = "normal"
    fault_start_us: int = 0

    def __post_init__(self):
        if self.mode not in LIGHT_MODES:
            raise ValueError(f"unknown signal mode {self.mode!r}; expected one of {LIGHT_MODES}")
        if not self.phases:
            raise ValueError("signal program needs at least one phase")
        for state, dur in self.phases:
            if state not in ("red", "yellow", "green"):
                raise ValueError(f"phase state must be red/yellow/green, got {state!r}")
            if int(dur) <= 0:
                raise ValueError(f"phase duration must be > 0 µs, got {dur}")
        object.__setattr__(self, "phases", tuple((str(s), int(d)) for s, d in self.phases))

    @property
    def cycle_us(self) -> int:
        return sum(d for _, d in self.phases)

    def state_at(self, t_us: int) -> str:
        """Signal state at time ``t_us``: one of LIGHT_STATES. Flashing lamps are reported as
        ``flashing_*`` (the renderer blinks them at 1 Hz)."""
        if self.mode != "normal" and t_us >= self.fault_start_us:
            return {
                "dark": "dark",
                "flashing_yellow": "flashing_yellow",
                "flashing_red": "flashing_red",
                "stuck_red": "red",
                "stuck_green": "green",
            }[self.mode]
        tc = (int(t_us) + self.offset_us) % self.cycle_us
        for state, dur in self.phases:
            if tc < dur:
                return state
            tc -= dur
        raise AssertionError("unreachable")

    def next_change_us(self, t_us: int) -> int | None:
        """Time of the next state change after ``t_us`` (None if the light never changes)."""
        if self.mode != "normal" and t_us >= self.fault_start_us:
            return None
        tc = (int(t_us) + self.offset_us) % self.cycle_us
        acc = 0
        for _, dur in self.phases:
            acc += dur
            if tc < acc:
                change = int(t_us) + (acc - tc)
                if self.mode != "normal" and change > self.fault_start_us:
                    return self.fault_start_us
                return change
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class TrafficLight:
    """A signal head governing ``lane_ids`` at ``stop_line_id``; pose of the head in local."""

    id: str
    x_m: float
    y_m: float
    z_m: float  # height of the lamp housing centre [m]
    heading_rad: float  # direction the lamps face (towards approaching traffic)
    lane_ids: tuple[str, ...]
    stop_line_id: str | None
    program: SignalProgram = field(default_factory=SignalProgram)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lane_ids"] = list(self.lane_ids)
        d["program"]["phases"] = [list(p) for p in self.program.phases]
        return d

    @staticmethod
    def from_dict(d: dict) -> "TrafficLight":
        prog = d["program"]
        return TrafficLight(
            **{**d, "lane_ids": tuple(d["lane_ids"]),
               "program": SignalProgram(**{**prog, "phases": tuple(tuple(p) for p in prog["phases"])})}
        )


# ----------------------------------------------------------------------------------------------
# Actors and behaviours
# ----------------------------------------------------------------------------------------------
ACTOR_KINDS = ("car", "truck", "bus", "cyclist", "pedestrian", "cone", "barrier", "debris", "parked_car", "animal")
STATIC_KINDS = ("cone", "barrier", "debris", "parked_car")
VULNERABLE_KINDS = ("pedestrian", "cyclist", "animal")
# Label strings used in PhysicalAI-AV style obstacle labels and AlpaSim's label_class.
ACTOR_LABELS = {
    "car": "automobile", "truck": "heavy_truck", "bus": "bus", "cyclist": "cyclist", "pedestrian": "person",
    "cone": "traffic_cone", "barrier": "barrier", "debris": "debris", "parked_car": "automobile", "animal": "animal",
}
DEFAULT_SIZE_LWH_M = {
    "car": (4.6, 1.9, 1.5), "truck": (8.5, 2.5, 3.4), "bus": (12.0, 2.6, 3.2), "cyclist": (1.8, 0.7, 1.7),
    "pedestrian": (0.6, 0.6, 1.75), "cone": (0.4, 0.4, 0.75), "barrier": (1.8, 0.5, 1.0),
    "debris": (0.9, 0.7, 0.35), "parked_car": (4.6, 1.9, 1.5), "animal": (1.2, 0.5, 0.9),
}


@dataclass(frozen=True)
class IdmParams:
    """Intelligent Driver Model parameters (Treiber 2000) plus MOBIL lane-change parameters."""

    desired_speed_mps: float = 13.9
    time_headway_s: float = 1.5
    min_gap_m: float = 2.5
    max_accel_mps2: float = 1.5
    comfort_decel_mps2: float = 2.0
    delta: float = 4.0
    politeness: float = 0.2  # MOBIL p
    lane_change_threshold_mps2: float = 0.2  # MOBIL Δa_th
    safe_decel_mps2: float = 4.0  # MOBIL b_safe


@dataclass(frozen=True)
class BrakeEvent:
    """Scripted hard braking: from ``t_us`` decelerate at ``decel_mps2`` to ``target_speed_mps``."""

    t_us: int
    decel_mps2: float
    target_speed_mps: float = 0.0
    hold_us: int = 10**12  # how long to keep the reduced speed before resuming IDM


@dataclass(frozen=True)
class LaneChangeEvent:
    """Scripted lane change (e.g. a cut-in) into ``target_lane_id`` starting at ``t_us``."""

    t_us: int
    target_lane_id: str
    duration_us: int = 3_000_000


@dataclass(frozen=True)
class IdmBehavior:
    """Reactive vehicle: IDM along ``route_lane_ids`` (+ MOBIL if allowed), obeys signals."""

    route_lane_ids: tuple[str, ...]
    params: IdmParams = field(default_factory=IdmParams)
    allow_lane_change: bool = False
    obey_signals: bool = True
    yield_to_ego: bool = True  # treat the ego as a leader when it is in the path
    brake_events: tuple[BrakeEvent, ...] = ()
    lane_change_events: tuple[LaneChangeEvent, ...] = ()
    kind: str = "idm"


@dataclass(frozen=True)
class WalkerBehavior:
    """Pedestrian / cyclist following ``path_xy`` at ``speed_mps`` starting at ``start_us``
    (a crosswalk crossing, a jaywalk, a bike lane). ``yield_to_ego``: stop before entering the
    ego lane while the ego is close (a courteous pedestrian); jaywalkers do not."""

    path_xy: tuple[tuple[float, float], ...]
    speed_mps: float = 1.4
    start_us: int = 0
    yield_to_ego: bool = False
    kind: str = "walker"


@dataclass(frozen=True)
class LogBehavior:
    """Replay of a recorded track (AlpaSim's default traffic): poses interpolated in time."""

    t_us: tuple[int, ...]
    xy: tuple[tuple[float, float], ...]
    yaw_rad: tuple[float, ...]
    kind: str = "log"


@dataclass(frozen=True)
class StaticBehavior:
    kind: str = "static"


Behavior = IdmBehavior | WalkerBehavior | LogBehavior | StaticBehavior
_BEHAVIOR_TYPES = {"idm": IdmBehavior, "walker": WalkerBehavior, "log": LogBehavior, "static": StaticBehavior}


@dataclass(frozen=True)
class ActorSpec:
    id: str
    kind: str
    x_m: float  # initial box-centre position in local [m]
    y_m: float
    yaw_rad: float
    speed_mps: float = 0.0
    length_m: float | None = None
    width_m: float | None = None
    height_m: float | None = None
    behavior: Behavior = field(default_factory=StaticBehavior)
    appear_us: int = 0  # the actor exists (is visible/collidable) from this time on

    def __post_init__(self):
        if self.kind not in ACTOR_KINDS:
            raise ValueError(f"actor {self.id}: unknown kind {self.kind!r}; expected one of {ACTOR_KINDS}")
        l, w, h = DEFAULT_SIZE_LWH_M[self.kind]
        for name, default in (("length_m", l), ("width_m", w), ("height_m", h)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
            elif not getattr(self, name) > 0:
                raise ValueError(f"actor {self.id}: {name} must be > 0")
        if not all(np.isfinite([self.x_m, self.y_m, self.yaw_rad, self.speed_mps])):
            raise ValueError(f"actor {self.id}: non-finite initial state")

    @property
    def is_static(self) -> bool:
        return isinstance(self.behavior, StaticBehavior)

    @property
    def label(self) -> str:
        return ACTOR_LABELS[self.kind]

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ActorSpec":
        b = dict(d["behavior"])
        cls = _BEHAVIOR_TYPES.get(b.get("kind"))
        if cls is None:
            raise ValueError(
                f"actor {d.get('id')!r}: unknown behavior kind {b.get('kind')!r}; expected one of {sorted(_BEHAVIOR_TYPES)}"
            )
        if cls is IdmBehavior:
            b["route_lane_ids"] = tuple(b["route_lane_ids"])
            b["params"] = IdmParams(**b["params"])
            b["brake_events"] = tuple(BrakeEvent(**e) for e in b["brake_events"])
            b["lane_change_events"] = tuple(LaneChangeEvent(**e) for e in b["lane_change_events"])
        elif cls is WalkerBehavior:
            b["path_xy"] = tuple(tuple(p) for p in b["path_xy"])
        elif cls is LogBehavior:
            b["t_us"] = tuple(int(t) for t in b["t_us"])
            b["xy"] = tuple(tuple(p) for p in b["xy"])
            b["yaw_rad"] = tuple(b["yaw_rad"])
        return ActorSpec(**{**d, "behavior": cls(**b)})


# ----------------------------------------------------------------------------------------------
# Ego, conditions, hazards, scenario
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EgoSpec:
    """Ego start (rig origin = rear-axle centre on the ground) and its route through the map.

    Dimensions default to AlpaSim's VehicleConfig (spec/alpasim.md §1.2)."""

    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float
    route_lane_ids: tuple[str, ...]
    length_m: float = 5.393  # spec/alpasim.md §1.2
    width_m: float = 2.109
    height_m: float = 1.503
    rear_axle_to_center_m: float = 1.3965  # rig -> aabb x offset, spec/alpasim.md §1.2
    wheelbase_m: float = 2.85  # spec/alpasim.md §2.4
    nav_text: str | None = None  # optional free-text navigation ("Turn left in 30m")


@dataclass(frozen=True)
class Conditions:
    time_of_day: str = "day"  # "day" | "dusk" | "night"
    weather: str = "clear"  # "clear" | "rain" | "fog"

    def __post_init__(self):
        if self.time_of_day not in ("day", "dusk", "night"):
            raise ValueError(f"time_of_day must be day/dusk/night, got {self.time_of_day!r}")
        if self.weather not in ("clear", "rain", "fog"):
            raise ValueError(f"weather must be clear/rain/fog, got {self.weather!r}")


@dataclass(frozen=True)
class Hazard:
    """A hazard onset the CoC labeler may use as a keyframe (``t_us``) with its causal object."""

    t_us: int
    kind: str  # e.g. "red_light", "lead_braking", "pedestrian_crossing", "cut_in", "blocked_lane"
    actor_id: str | None = None
    description: str = ""


FAMILY_CATEGORIES = ("nominal", "long_tail")


@dataclass(frozen=True, eq=False)
class Scenario:
    id: str
    family: str
    category: str  # "nominal" | "long_tail"
    seed: int
    params: dict  # the family's parameters (JSON-able)
    map: RoadMap
    ego: EgoSpec
    actors: tuple[ActorSpec, ...] = ()
    traffic_lights: tuple[TrafficLight, ...] = ()
    conditions: Conditions = field(default_factory=Conditions)
    hazards: tuple[Hazard, ...] = ()
    duration_us: int = 20_000_000
    traffic_mode: str = "reactive"  # "reactive" (IDM/walkers) | "log" (replay LogBehavior tracks)
    force_gt_duration_us: int = 1_700_000  # spec/alpasim.md §1.3 base_config default

    def __post_init__(self):
        if self.category not in FAMILY_CATEGORIES:
            raise ValueError(f"scenario {self.id}: category must be one of {FAMILY_CATEGORIES}")
        if self.duration_us <= 0 or self.duration_us % CONTROL_PERIOD_US:
            raise ValueError(f"scenario {self.id}: duration_us must be a positive multiple of {CONTROL_PERIOD_US}")
        if self.force_gt_duration_us % CONTROL_PERIOD_US:
            raise ValueError(f"scenario {self.id}: force_gt_duration_us must be a multiple of {CONTROL_PERIOD_US}")
        if self.traffic_mode not in ("reactive", "log"):
            raise ValueError(f"scenario {self.id}: traffic_mode must be 'reactive' or 'log'")
        for lid in self.ego.route_lane_ids:
            self.map.lane(lid)
        ids = [a.id for a in self.actors]
        if len(set(ids)) != len(ids) or "EGO" in ids:
            raise ValueError(f"scenario {self.id}: actor ids must be unique and not 'EGO'")

    # -- derived ------------------------------------------------------------------------------
    def actor(self, actor_id: str) -> ActorSpec:
        for a in self.actors:
            if a.id == actor_id:
                return a
        raise ValueError(f"scenario {self.id}: unknown actor {actor_id!r}")

    def route_polyline_xy(self) -> np.ndarray:
        """Concatenated centrelines of the ego route lanes (local frame)."""
        pts = [self.map.lane(lid).centerline_xy for lid in self.ego.route_lane_ids]
        out = [pts[0]]
        for p in pts[1:]:
            out.append(p[1:] if np.linalg.norm(p[0] - out[-1][-1]) < 1e-6 else p)
        return np.concatenate(out)

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": "cordillera.scenario/1",
            "id": self.id,
            "family": self.family,
            "category": self.category,
            "seed": self.seed,
            "params": self.params,
            "map": self.map.to_dict(),
            "ego": {**asdict(self.ego), "route_lane_ids": list(self.ego.route_lane_ids)},
            "actors": [a.to_dict() for a in self.actors],
            "traffic_lights": [t.to_dict() for t in self.traffic_lights],
            "conditions": asdict(self.conditions),
            "hazards": [asdict(h) for h in self.hazards],
            "duration_us": self.duration_us,
            "traffic_mode": self.traffic_mode,
            "force_gt_duration_us": self.force_gt_duration_us,
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @staticmethod
    def from_dict(d: dict) -> "Scenario":
        if d.get("schema") != "cordillera.scenario/1":
            raise ValueError(f"not a cordillera scenario (schema={d.get('schema')!r})")
        try:
            return Scenario(
                id=d["id"],
                family=d["family"],
                category=d["category"],
                seed=int(d["seed"]),
                params=d["params"],
                map=RoadMap.from_dict(d["map"]),
                ego=EgoSpec(**{**d["ego"], "route_lane_ids": tuple(d["ego"]["route_lane_ids"])}),
                actors=tuple(ActorSpec.from_dict(a) for a in d["actors"]),
                traffic_lights=tuple(TrafficLight.from_dict(t) for t in d["traffic_lights"]),
                conditions=Conditions(**d["conditions"]),
                hazards=tuple(Hazard(**h) for h in d["hazards"]),
                duration_us=int(d["duration_us"]),
                traffic_mode=d["traffic_mode"],
                force_gt_duration_us=int(d["force_gt_duration_us"]),
            )
        except KeyError as e:
            raise ValueError(f"scenario is missing field {e.args[0]!r}") from None
        except TypeError as e:
            raise ValueError(f"malformed scenario: {e}") from None

    @staticmethod
    def from_json(text: str) -> "Scenario":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"scenario is not valid JSON: {e}") from None
        return Scenario.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @staticmethod
    def load(path: str | Path) -> "Scenario":
        try:
            return Scenario.from_json(Path(path).read_text())
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def with_(self, **changes) -> "Scenario":
        return replace(self, **changes)


# ----------------------------------------------------------------------------------------------
# World state (what the simulator advances)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AgentState:
    """Kinematic state of the ego (rig origin) or an actor (box centre) in the local frame."""

    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float = 0.0
    accel_mps2: float = 0.0
    yaw_rate_radps: float = 0.0
    z_m: float = 0.0
    lat_speed_mps: float = 0.0  # rig-frame lateral velocity (dynamic bicycle model)
    steering_rad: float = 0.0
    visible: bool = True  # False before ``appear_us`` or after an actor left the scene


@dataclass(frozen=True)
class WorldState:
    t_us: int
    ego: AgentState
    actors: dict[str, AgentState]
    signals: dict[str, str]  # traffic light id -> state (LIGHT_STATES)


__all__ = [
    "CONTROL_PERIOD_US", "LIGHT_STATES", "LIGHT_MODES", "SignalProgram", "TrafficLight", "ACTOR_KINDS",
    "STATIC_KINDS", "VULNERABLE_KINDS", "ACTOR_LABELS", "DEFAULT_SIZE_LWH_M", "IdmParams", "BrakeEvent",
    "LaneChangeEvent", "IdmBehavior", "WalkerBehavior", "LogBehavior", "StaticBehavior", "Behavior",
    "ActorSpec", "EgoSpec", "Conditions", "Hazard", "FAMILY_CATEGORIES", "Scenario", "AgentState", "WorldState",
]
