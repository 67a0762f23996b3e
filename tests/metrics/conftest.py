"""Hand-built worlds for the closed-loop metric tests: a straight two-way road and rollouts made
directly from StepRecord lists (no runtime needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cordillera.sim.types import Plan, Rollout, StepRecord
from cordillera.world.map import Lane, RoadEdge, RoadMap, Sign, StopLine
from cordillera.world.scenario import ActorSpec, AgentState, EgoSpec, Scenario, SignalProgram, TrafficLight

LANE_W = 3.6


def straight_scenario(actors=(), stop_sign: bool = False, light: bool = True, force_gt_us: int = 0,
                      duration_us: int = 20_000_000, ego_speed: float = 10.0) -> Scenario:
    """Eastbound lane L0 (y = 0) and westbound L1 (y = 3.6), x in [0, 200]; road edges at
    y = −1.8 and y = 5.4; a stop line on L0 at x = 100 governed by light TL."""
    l0 = Lane("L0", np.array([[0.0, 0.0], [200.0, 0.0]]), width_m=LANE_W)
    l1 = Lane("L1", np.array([[200.0, LANE_W], [0.0, LANE_W]]), width_m=LANE_W)
    sl = StopLine("SL", "L0", 100.0, np.array([[100.0, -1.8], [100.0, 1.8]]))
    edges = (RoadEdge("E0", np.array([[0.0, -1.8], [200.0, -1.8]])), RoadEdge("E1", np.array([[0.0, 5.4], [200.0, 5.4]])))
    signs = (Sign("S0", "stop", 101.0, -3.0, np.pi, lane_ids=("L0",)),) if stop_sign else ()
    rmap = RoadMap(lanes={"L0": l0, "L1": l1}, stop_lines=(sl,), road_edges=edges, signs=signs)
    lights = (TrafficLight("TL", 102.0, -3.0, 5.0, np.pi, ("L0",), "SL", SignalProgram()),) if light else ()
    ego = EgoSpec(x_m=10.0, y_m=0.0, yaw_rad=0.0, speed_mps=ego_speed, route_lane_ids=("L0",))
    return Scenario(id="straight", family="test", category="nominal", seed=0, params={}, map=rmap, ego=ego,
                    actors=tuple(actors), traffic_lights=lights, duration_us=duration_us,
                    force_gt_duration_us=force_gt_us)


def car(aid: str, x: float, y: float, yaw: float = 0.0, kind: str = "car") -> ActorSpec:
    return ActorSpec(id=aid, kind=kind, x_m=x, y_m=y, yaw_rad=yaw)


def make_rollout(ego_states, actors=None, signals=None, plans=None, t0_us: int = 0, dt_us: int = 100_000,
                 force_gt_end_us: int = 0, scenario_id: str = "straight") -> Rollout:
    """ego_states: list of AgentState or (x, y, yaw[, speed]); actors: list (per step) of dicts
    id -> AgentState, or one dict used at every step; signals likewise."""
    steps = []
    for i, e in enumerate(ego_states):
        if not isinstance(e, AgentState):
            e = AgentState(*e)
        a = actors[i] if isinstance(actors, list) else (actors or {})
        s = signals[i] if isinstance(signals, list) else (signals or {})
        p = plans[i] if plans is not None else None
        steps.append(StepRecord(t_us=t0_us + i * dt_us, ego=e, actors=dict(a), signals=dict(s), plan=p))
    return Rollout(scenario_id=scenario_id, rollout_id="r0", policy_name="test", seed=0, steps=steps,
                   force_gt_end_us=force_gt_end_us)


def straight_line_plan(t_now_us: int, speed: float, y_rig: float = 0.0, n: int = 31,
                       alternatives=()) -> Plan:
    t = t_now_us + np.arange(n, dtype=np.int64) * 100_000
    x = speed * (t - t_now_us) / 1e6
    xyz = np.stack([x, np.full(n, y_rig), np.zeros(n)], -1)
    return Plan(t_us=t, xyz_rig=xyz, yaw_rig=np.zeros(n), alternatives=tuple(alternatives))


@pytest.fixture
def mk():
    """The builders above, as one namespace (test modules must not import conftest directly)."""
    return SimpleNamespace(scenario=straight_scenario, car=car, rollout=make_rollout, plan=straight_line_plan)
