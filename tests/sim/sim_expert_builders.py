"""Hand-made scenarios and a perfect-tracking closed loop for the expert tests.

The loop is deliberately tiny (no controller, no traffic model): the ego pose becomes the plan's
pose at t + 0.1 s; static actors stay, walkers follow their path from ``start_us``, vehicles move
at constant speed along their heading and apply their scripted ``BrakeEvent``s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon

from cordillera.world.map import Crosswalk, Lane, RoadEdge, RoadMap, StopLine
from cordillera.world.scenario import (
    ActorSpec,
    AgentState,
    EgoSpec,
    IdmBehavior,
    Scenario,
    SignalProgram,
    TrafficLight,
    WalkerBehavior,
    WorldState,
)

LANE_W = 3.6


def _line(x0, y0, x1, y1, n=2):
    return np.stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n)], axis=1)


def straight_map(length_m=400.0, n_lanes=2, opposite=False, crosswalk_x=None) -> RoadMap:
    """Eastbound lanes L0 (rightmost, y=0), L1 (y=3.6)...; optional westbound lane O0."""
    lanes = {}
    for i in range(n_lanes):
        lanes[f"L{i}"] = Lane(
            f"L{i}", _line(0, i * LANE_W, length_m, i * LANE_W), width_m=LANE_W,
            left_neighbor=f"L{i + 1}" if i + 1 < n_lanes else None, right_neighbor=f"L{i - 1}" if i > 0 else None,
            left_marking="dashed_white" if i + 1 < n_lanes else ("double_yellow" if opposite else "road_edge"),
            right_marking="road_edge" if i == 0 else "dashed_white",
        )
    top = (n_lanes - 0.5) * LANE_W
    if opposite:
        yo = n_lanes * LANE_W
        lanes["O0"] = Lane("O0", _line(length_m, yo, 0, yo), width_m=LANE_W, left_marking="double_yellow",
                           right_marking="road_edge")
        top += LANE_W
    edges = (RoadEdge("e_right", _line(0, -LANE_W / 2, length_m, -LANE_W / 2)), RoadEdge("e_left", _line(0, top, length_m, top)))
    cws = ()
    if crosswalk_x is not None:
        cws = (Crosswalk("cw0", np.array([[crosswalk_x - 2, -LANE_W / 2], [crosswalk_x + 2, -LANE_W / 2],
                                          [crosswalk_x + 2, top], [crosswalk_x - 2, top]])),)
    return RoadMap(lanes=lanes, road_edges=edges, crosswalks=cws)


def intersection_map(approach_m=150.0) -> RoadMap:
    """A 4-way junction at the origin (box ±10 m). Eastbound ego approach A (y=-1.8) with a stop
    line at x=-11; connectors: AB straight, AN left (to northbound exit N_out), AS right.
    Northbound cross traffic N_in -> NN -> N_out; westbound oncoming W_in -> WW -> W_out."""
    h = LANE_W / 2
    r_left = 10 + h
    th = np.linspace(-np.pi / 2, 0, 25)
    left = np.stack([-10 + r_left * np.cos(th), 10 + r_left * np.sin(th)], axis=1)
    r_right = 10 - h
    th2 = np.linspace(np.pi / 2, 0, 25)
    right = np.stack([-10 + r_right * np.cos(th2), -10 + r_right * np.sin(th2)], axis=1)
    lanes = {
        "A": Lane("A", _line(-approach_m, -h, -10, -h), successors=("AB", "AN", "AS"), left_marking="double_yellow",
                  right_marking="road_edge"),
        "AB": Lane("AB", _line(-10, -h, 10, -h), predecessors=("A",), successors=("B",), is_intersection=True),
        "AN": Lane("AN", left, predecessors=("A",), successors=("N_out",), is_intersection=True, turn="left"),
        "AS": Lane("AS", right, predecessors=("A",), successors=("S_out",), is_intersection=True, turn="right"),
        "B": Lane("B", _line(10, -h, approach_m, -h), predecessors=("AB",)),
        "N_out": Lane("N_out", _line(h, 10, h, approach_m), predecessors=("AN", "NN")),
        "S_out": Lane("S_out", _line(-h, -10, -h, -approach_m), predecessors=("AS",)),
        "N_in": Lane("N_in", _line(h, -approach_m, h, -10), successors=("NN",)),
        "NN": Lane("NN", _line(h, -10, h, 10), predecessors=("N_in",), successors=("N_out",), is_intersection=True),
        "W_in": Lane("W_in", _line(approach_m, h, 10, h), successors=("WW",)),
        "WW": Lane("WW", _line(10, h, -10, h), predecessors=("W_in",), successors=("W_out",), is_intersection=True),
        "W_out": Lane("W_out", _line(-10, h, -approach_m, h), predecessors=("WW",)),
    }
    stop = StopLine("sl_A", "A", approach_m - 11.0, np.array([[-11.0, -LANE_W], [-11.0, 0.0]]))
    return RoadMap(lanes=lanes, stop_lines=(stop,))


def make_scenario(road_map, route, ego_xy, ego_yaw=0.0, ego_speed=10.0, actors=(), lights=(), duration_s=20.0,
                  family="test") -> Scenario:
    return Scenario(
        id=f"{family}-0", family=family, category="nominal", seed=0, params={}, map=road_map,
        ego=EgoSpec(ego_xy[0], ego_xy[1], ego_yaw, ego_speed, tuple(route)), actors=tuple(actors),
        traffic_lights=tuple(lights), duration_us=int(duration_s * 1e6), force_gt_duration_us=0,
    )


def light_on_A(program: SignalProgram) -> TrafficLight:
    return TrafficLight("tl_A", -11.0, -5.0, 5.0, math.pi, ("A",), "sl_A", program)


# ----------------------------------------------------------------------------------------------
# Perfect-tracking closed loop
# ----------------------------------------------------------------------------------------------
def initial_state(sc: Scenario) -> WorldState:
    actors = {a.id: AgentState(a.x_m, a.y_m, a.yaw_rad, a.speed_mps, visible=a.appear_us <= 0) for a in sc.actors}
    signals = {tl.id: tl.program.state_at(0) for tl in sc.traffic_lights}
    return WorldState(0, AgentState(sc.ego.x_m, sc.ego.y_m, sc.ego.yaw_rad, sc.ego.speed_mps), actors, signals)


def _walker_pos(beh: WalkerBehavior, t_us: int):
    p = np.asarray(beh.path_xy, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    s = min(cum[-1], max(0.0, (t_us - beh.start_us) * 1e-6 * beh.speed_mps))
    k = min(int(np.searchsorted(cum, s, side="right") - 1), len(p) - 2)
    d = p[k + 1] - p[k]
    moving = 0.0 < s < cum[-1]
    return (np.interp(s, cum, p[:, 0]), np.interp(s, cum, p[:, 1]), math.atan2(d[1], d[0]),
            beh.speed_mps if moving else 0.0)


def _advance_actor(spec: ActorSpec, st: AgentState, t_us: int, dt: float) -> AgentState:
    beh = spec.behavior
    if isinstance(beh, WalkerBehavior):
        x, y, yaw, v = _walker_pos(beh, t_us + int(dt * 1e6))
        return AgentState(x, y, yaw, v)
    if isinstance(beh, IdmBehavior):
        v, a = st.speed_mps, 0.0
        for ev in beh.brake_events:
            if ev.t_us <= t_us and v > ev.target_speed_mps:
                a = -ev.decel_mps2
        v_new = max(0.0, v + a * dt)
        ds = 0.5 * (v + v_new) * dt
        return AgentState(st.x_m + ds * math.cos(st.yaw_rad), st.y_m + ds * math.sin(st.yaw_rad), st.yaw_rad, v_new, a)
    return st


@dataclass
class LoopResult:
    states: list  # WorldState per step
    plans: list


def run_perfect_loop(sc: Scenario, policy, duration_s: float | None = None) -> LoopResult:
    ws = initial_state(sc)
    n = int(round((duration_s or sc.duration_us * 1e-6) / 0.1))
    states, plans = [ws], []
    for _ in range(n):
        policy.observe_world(ws, sc)
        plan = policy.plan(None, ws.t_us, ws.t_us + 100_000)
        plan.validate(ws.t_us)
        plans.append(plan)
        e = ws.ego
        x, y = plan.xyz_rig[1, 0], plan.xyz_rig[1, 1]
        c, s = math.cos(e.yaw_rad), math.sin(e.yaw_rad)
        xl, yl = e.x_m + c * x - s * y, e.y_m + s * x + c * y
        # speed at t + 0.1 s: central difference of the plan (the average over [t, t+0.1] lags)
        v = (math.hypot(x, y) + float(np.hypot(*(plan.xyz_rig[2, :2] - plan.xyz_rig[1, :2])))) / 0.2
        ego = AgentState(xl, yl, e.yaw_rad + float(plan.yaw_rig[1]), v, (v - e.speed_mps) / 0.1)
        t = ws.t_us + 100_000
        actors = {}
        for spec in sc.actors:
            st = ws.actors[spec.id]
            nst = _advance_actor(spec, st, ws.t_us, 0.1)
            actors[spec.id] = AgentState(nst.x_m, nst.y_m, nst.yaw_rad, nst.speed_mps, nst.accel_mps2,
                                         visible=spec.appear_us <= t)
        signals = {tl.id: tl.program.state_at(t) for tl in sc.traffic_lights}
        ws = WorldState(t, ego, actors, signals)
        states.append(ws)
    return LoopResult(states, plans)


# ----------------------------------------------------------------------------------------------
# Geometry checks
# ----------------------------------------------------------------------------------------------
def box(x, y, yaw, length, width) -> Polygon:
    c, s = math.cos(yaw), math.sin(yaw)
    pts = [(x + c * dx - s * dy, y + s * dx + c * dy)
           for dx, dy in ((length / 2, width / 2), (-length / 2, width / 2), (-length / 2, -width / 2), (length / 2, -width / 2))]
    return Polygon(pts)


def ego_box(sc: Scenario, st: AgentState) -> Polygon:
    e = sc.ego
    cx = st.x_m + e.rear_axle_to_center_m * math.cos(st.yaw_rad)
    cy = st.y_m + e.rear_axle_to_center_m * math.sin(st.yaw_rad)
    return box(cx, cy, st.yaw_rad, e.length_m, e.width_m)


def actor_box(sc: Scenario, aid: str, st: AgentState) -> Polygon:
    spec = sc.actor(aid)
    return box(st.x_m, st.y_m, st.yaw_rad, spec.length_m, spec.width_m)


def min_distance(sc: Scenario, res: LoopResult, aid: str) -> float:
    return min(ego_box(sc, ws.ego).distance(actor_box(sc, aid, ws.actors[aid])) for ws in res.states)


def front_x(sc: Scenario, st: AgentState) -> float:
    return st.x_m + (sc.ego.rear_axle_to_center_m + sc.ego.length_m / 2) * math.cos(st.yaw_rad)


__all__ = [
    "LANE_W", "straight_map", "intersection_map", "make_scenario", "light_on_A", "initial_state", "run_perfect_loop",
    "LoopResult", "box", "ego_box", "actor_box", "min_distance", "front_x",
]
