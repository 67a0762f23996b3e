"""traffic_light — signalised 4-way junction: stop at red, go on green.

Variants: ``turns_red`` (yellow then red while the ego approaches; red onset when the ego front is
30–50 m before the stop line at its start speed), ``red_to_green`` (red at the start, green when the
ego is 25–45 m away: slow down, then go), ``stays_green`` (proceed through).
Decisions exercised: Stop, Resume Speed, Keep Lane; causal factors: light colour, intersection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families import _junction as J
from cordillera.world.families._common import Hazard, assemble, sample_conditions, uniform, us
from cordillera.world.scenario import SignalProgram

CATEGORY = "nominal"
FAMILY = "traffic_light"
VARIANTS = ("turns_red", "red_to_green", "stays_green")


@dataclass(frozen=True)
class Params:
    variant: str = "turns_red"
    n_lanes: int = 1
    ego_lane: int = 0
    ego_speed_mps: float = 12.0
    limit_kmh: float = 50.0
    change_time_s: float = 4.0  # yellow onset (turns_red) / green onset (red_to_green) / arrival (stays_green)
    change_dist_m: float = 40.0  # ego front to stop line at red onset / green onset (0 for stays_green)
    red_s: float = 9.0  # red duration for turns_red
    n_cross: int = 2
    n_oncoming: int = 2
    time_of_day: str = "day"
    weather: str = "clear"

    @property
    def d0_m(self) -> float:
        """Ego front to stop line at t = 0."""
        v = self.ego_speed_mps
        if self.variant == "turns_red":
            return self.change_dist_m + v * (self.change_time_s + J.YELLOW_US / 1e6)
        if self.variant == "red_to_green":
            return self.change_dist_m + v * self.change_time_s
        return v * self.change_time_s


def sample_params(rng: np.random.Generator) -> Params:
    variant = str(rng.choice(["turns_red", "turns_red", "red_to_green", "stays_green"]))
    n = int(rng.choice([1, 2]))
    tod, weather = sample_conditions(rng)
    dist = {"turns_red": (30.0, 50.0), "red_to_green": (25.0, 45.0), "stays_green": (0.0, 0.0)}[variant]
    t = {"turns_red": (2.5, 5.5), "red_to_green": (4.5, 7.0), "stays_green": (5.0, 8.0)}[variant]
    return Params(
        variant=variant, n_lanes=n, ego_lane=int(rng.integers(n)), ego_speed_mps=uniform(rng, 10.0, 13.5),
        limit_kmh=50.0, change_time_s=uniform(rng, *t, 1), change_dist_m=uniform(rng, *dist, 1),
        red_s=uniform(rng, 8.0, 11.0, 1), n_cross=int(rng.integers(1, 4)), n_oncoming=int(rng.integers(0, 3)),
        time_of_day=tod, weather=weather,
    )


def _make_map(p: Params) -> roads.Junction:
    w_len = J.approach_arm_length(p.d0_m)
    return roads.four_way_intersection(n_lanes=p.n_lanes, arm_length_m={"W": w_len, "E": 220.0, "N": 140.0, "S": 140.0},
                                       speed_limit_mps=roads.kmh(p.limit_kmh), control="signal")


def ew_program(p: Params) -> SignalProgram:
    t = us(p.change_time_s)
    if p.variant == "turns_red":
        green = t + 20_000_000
        return SignalProgram((("green", green), ("yellow", J.YELLOW_US), ("red", us(p.red_s))), offset_us=green - t)
    if p.variant == "red_to_green":
        red = t + 10_000_000
        return SignalProgram((("red", red), ("green", 25_000_000), ("yellow", J.YELLOW_US)), offset_us=red - t)
    return SignalProgram((("green", t + 12_000_000), ("yellow", J.YELLOW_US), ("red", 12_000_000)), offset_us=0)


def _make_signals(p: Params, j: roads.Junction):
    return J.light_heads(j, J.ew_ns_programs(ew_program(p)))


def _make_actors(p: Params, j: roads.Junction, m, rng: np.random.Generator):
    ego, route = J.ego_approach(j, m, p.ego_lane, p.d0_m, p.ego_speed_mps)
    v = roads.kmh(p.limit_kmh) * 0.9
    actors = []
    actors += J.cross_traffic(j, m, "S", rng, p.n_cross, v, float(rng.uniform(40.0, 90.0)), "cross_s")
    actors += J.cross_traffic(j, m, "N", rng, max(0, p.n_cross - 1), v, float(rng.uniform(40.0, 90.0)), "cross_n")
    actors += J.cross_traffic(j, m, "E", rng, p.n_oncoming, v, float(rng.uniform(60.0, 140.0)), "oncoming", lane_index=0)
    t = us(p.change_time_s)
    if p.variant == "turns_red":
        hazards = [Hazard(t, "yellow_light", "light_W", "light turns yellow"),
                   Hazard(t + J.YELLOW_US, "red_light", "light_W", "light turns red")]
    elif p.variant == "red_to_green":
        hazards = [Hazard(0, "red_light", "light_W", "red light ahead"),
                   Hazard(t, "green_light", "light_W", "light turns green")]
    else:
        hazards = [Hazard(0, "green_light", "light_W", "green light at the intersection")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    if p.variant not in VARIANTS:
        raise ValueError(f"traffic_light variant must be one of {VARIANTS}, got {p.variant!r}")
    j = _make_map(p)
    m = j.parts.build()
    lights = _make_signals(p, j)
    ego, actors, hazards = _make_actors(p, j, m, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, lights, hazards, scenario_id, seed)
