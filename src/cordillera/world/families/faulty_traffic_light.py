"""faulty_traffic_light — the junction's signals are dark or flashing (long tail).

``dark`` and ``flashing_red`` mean an all-way stop; ``flashing_yellow`` on the ego's road (with
flashing red for the cross street) means proceed with caution. The fault is present from the start
or begins while the ego approaches (after a green). A cross vehicle reaches the ego's path 1.5–4.5 s
after the ego would reach its stop line, so the ego must stop / yield.
Decisions exercised: Stop, Yield, Resume Speed; causal factors: faulty light, crossing traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.world import roads
from cordillera.world.families import _junction as J
from cordillera.world.families._common import Hazard, assemble, sample_conditions, uniform, us
from cordillera.world.families.stop_sign import cross_stream
from cordillera.world.scenario import SignalProgram

CATEGORY = "long_tail"
FAMILY = "faulty_traffic_light"
MODES = ("dark", "flashing_red", "flashing_yellow")


@dataclass(frozen=True)
class Params:
    mode: str = "dark"
    fault_time_s: float = 0.0  # 0 = broken from the start
    n_lanes: int = 1
    ego_speed_mps: float = 10.0
    arrive_time_s: float = 6.0
    cross_from: str = "S"
    cross_speed_mps: float = 10.0
    cross_offset_s: float = 3.0
    cross_gap_s: float = 7.0
    n_cross: int = 2
    time_of_day: str = "day"
    weather: str = "clear"


def sample_params(rng: np.random.Generator) -> Params:
    tod, weather = sample_conditions(rng)
    arrive = uniform(rng, 5.0, 7.0, 1)
    return Params(
        mode=str(rng.choice(MODES)), fault_time_s=0.0 if rng.random() < 0.6 else uniform(rng, 1.0, arrive - 2.5, 1),
        n_lanes=int(rng.choice([1, 1, 2])), ego_speed_mps=uniform(rng, 8.5, 12.0), arrive_time_s=arrive,
        cross_from=str(rng.choice(["S", "N"])), cross_speed_mps=uniform(rng, 8.0, 12.0),
        cross_offset_s=uniform(rng, 1.5, 4.5, 1), cross_gap_s=uniform(rng, 6.0, 10.0, 1),
        n_cross=int(rng.integers(1, 3)), time_of_day=tod, weather=weather,
    )


def _make_map(p: Params) -> roads.Junction:
    d0 = p.ego_speed_mps * p.arrive_time_s
    lengths = {"W": J.approach_arm_length(d0), "E": 220.0, "N": 140.0, "S": 140.0}
    lengths[p.cross_from] = max(140.0, p.cross_speed_mps * (p.arrive_time_s + p.cross_offset_s
                                                            + p.cross_gap_s * (p.n_cross - 1)) + 60)
    return roads.four_way_intersection(n_lanes=p.n_lanes, arm_length_m=lengths, control="signal")


def _make_signals(p: Params, j: roads.Junction):
    t_f = us(p.fault_time_s)
    # Before the fault the ego's road shows green (long enough to span the scenario).
    ew = SignalProgram((("green", 40_000_000), ("yellow", J.YELLOW_US), ("red", 30_000_000)),
                       mode=p.mode, fault_start_us=t_f)
    ns_mode = "flashing_red" if p.mode == "flashing_yellow" else p.mode
    ns_base = J.complementary_program(SignalProgram((("green", 40_000_000), ("yellow", J.YELLOW_US), ("red", 30_000_000))))
    ns = SignalProgram(ns_base.phases, ns_base.offset_us, mode=ns_mode, fault_start_us=t_f)
    return J.light_heads(j, {"W": ew, "E": ew, "N": ns, "S": ns})


def _make_actors(p: Params, j: roads.Junction, m, rng: np.random.Generator):
    d0 = p.ego_speed_mps * p.arrive_time_s
    ego, route = J.ego_approach(j, m, int(rng.integers(p.n_lanes)), d0, p.ego_speed_mps)
    actors = cross_stream(m, j, route, p.cross_from, p.cross_speed_mps, p.arrive_time_s + p.cross_offset_s,
                          p.cross_gap_s, p.n_cross, "cross", ("car", "truck"))
    t_h = max(p.fault_time_s, (d0 - 60.0) / p.ego_speed_mps, 0.0)
    hazards = [Hazard(us(t_h), "faulty_traffic_light", "light_W", f"traffic light is {p.mode.replace('_', ' ')}"),
               Hazard(us(p.arrive_time_s), "crossing_traffic", actors[0].id if actors else None,
                      "cross traffic at the uncontrolled junction")]
    return ego, actors, hazards


def make(p: Params, rng: np.random.Generator, scenario_id: str | None = None, seed: int = 0):
    if p.mode not in MODES:
        raise ValueError(f"faulty_traffic_light mode must be one of {MODES}, got {p.mode!r}")
    j = _make_map(p)
    m = j.parts.build()
    ego, actors, hazards = _make_actors(p, j, m, rng)
    return assemble(FAMILY, CATEGORY, p, m, ego, actors, _make_signals(p, j), hazards, scenario_id, seed)
