"""Privileged rule-based expert planner (our data source and upper-bound baseline).

The expert reads the ground-truth ``WorldState`` and ``Scenario`` through
``PrivilegedPolicy.observe_world`` and plans every control period (100 ms) a 6.4 s, 10 Hz
trajectory in the rig frame at ``t_now`` (spec/alpasim.md §1.4, §2.2: pose 0 = current pose).

Planning, in order (one pass, no search, deterministic):

1. **Route path.** The ego route lanes are joined into one centreline sampled every 0.5 m
   (``RoutePath``); the ego and every actor are projected onto it (Frenet ``s`` along, ``d`` left +).
2. **Prediction.** Every actor is predicted over 6.4 s at 0.2 s with privileged knowledge of its
   behaviour: walkers along their scripted path (starting at ``start_us``), reactive vehicles at
   constant speed along their route lanes (stopping at their own red light; scripted lane changes
   followed), log actors replayed, anything else constant velocity / turn rate.
3. **Lateral plan.** Static obstacles (cones, debris, parked cars, static actors) that intrude into
   the ego corridor are bypassed with a lateral offset profile ``D(s)``: a *Nudge* (smallest offset
   keeping ≥ 0.5 m clearance, on the drivable surface) or a *Lane Change* into a same-direction
   neighbour lane when the lane is blocked and the target-lane gap is safe (time-to-collision check
   on the target-lane traffic, MOBIL safety first). The ego returns to the lane centre after passing.
   Slow *moving* vehicles (their own desired speed < half the limit) are overtaken the same way, by a
   lane change into a free same-direction lane only, returning once the rear bumper is 8 m ahead of
   them (Pass/Overtake). An oncoming vehicle blocks a departure only if it would meet the ego on the
   stretch where the ego is out of its lane and leaves it too little room.
   The current offset/heading error blends into the profile with a quintic.
4. **Interactions.** Actors predicted inside the planned corridor become (time-varying) IDM
   leaders; same-direction actors about to enter it (cut-ins, mainline traffic at a merge) become
   leaders before they enter; crossing/oncoming actors and pedestrians are handled by gap
   acceptance on their corridor occupancy window (yield = virtual stop before the conflict, snapped
   to the crosswalk / stop line).
5. **Controls.** Red light → stop line; yellow → stop when ≤ 3 m/s² suffices (or when the ego
   cannot clear before red); stop signs and dark / flashing-red lights → full stop ≥ 1 s then go
   when the conflict check is clear; flashing yellow → slow down and yield.
6. **Speed.** IDM-style longitudinal rollout (0.1 s steps) against the leaders and stop points,
   capped by the lane speed limit, a curvature limit (lateral accel ≤ 2 m/s²) and a work-zone speed
   (30 km/h beside ≥ 2 cones / barriers), accel within (−4.05, 2.40) m/s² except emergencies (down
   to −8 m/s² for an in-path leader), jerk-limited from the MEASURED acceleration, with the brake
   released as the speed runs out at the end of a stop.
7. **Output.** 65 poses (t_now … t_now + 6.4 s) + ``decisions`` in the exact CoC vocabulary of
   spec/alpamayo_training_data.md §6.2, chosen from the constraint that actually shapes the plan and
   checked against the plan's own motion (see ``_decide``).

Memory across steps (stop-sign stops, yellow-light choices, committed lateral manoeuvres) lives in
``ExpertPolicy``; ``plan_from_state`` with a fresh policy is stateless.

``privileged=False`` (e.g. the gRPC driver, which has no ground truth): ``plan`` degrades to plain
route following — it drives along ``observation.route_rig`` at the current speed (capped by a
curvature limit), seeing no actors and no signals. ``observe_world`` is then ignored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from cordillera.sim.types import Observation, Plan, SessionInfo
from cordillera.world.map import Lane, RoadMap
from cordillera.world.scenario import (
    STATIC_KINDS,
    VULNERABLE_KINDS,
    ActorSpec,
    AgentState,
    IdmBehavior,
    LogBehavior,
    Scenario,
    StaticBehavior,
    WalkerBehavior,
    WorldState,
)

# ----------------------------------------------------------------------------------------------
# Vocabulary (spec/alpamayo_training_data.md §6.2, exact strings)
# ----------------------------------------------------------------------------------------------
LONGITUDINAL_DECISIONS = ("Stop", "Yield", "Pass/Overtake", "Gap-search", "Keep Distance", "Adapt Speed", "Resume Speed")
MERGE_SIDE_LOOKBACK_M = 30.0  # [m] where the merge's other lane is sampled to tell its side
LATERAL_DECISIONS = ("Lane Change", "Nudge", "Turn", "Merge", "Split", "Keep Lane")
RELATIONS = ("lead", "cut_in", "merging", "crossing", "oncoming", "blocking")

# ----------------------------------------------------------------------------------------------
# Clocks
# ----------------------------------------------------------------------------------------------
PLAN_DT_US = 100_000  # [µs] 10 Hz plan samples, spec/alpasim.md §2.2
PLAN_STEPS = 64  # 6.4 s horizon, spec/alpamayo_model.md (future 64 poses at 10 Hz)
PRED_DT_S = 0.2  # [s] actor prediction grid (every second plan step)
PRED_STEPS = PLAN_STEPS // 2  # prediction samples after t_now (0.2 … 6.4 s)
ROUTE_DS_M = 0.5  # [m] route path sampling


@dataclass(frozen=True)
class ExpertParams:
    """Tunable constants of the expert; units in the names."""

    # -- longitudinal (IDM, Treiber 2000) ---------------------------------------------------
    max_accel_mps2: float = 1.8  # < 2.40 comfort bound, spec/alpamayo_training_data.md §3.5
    comfort_decel_mps2: float = 2.5  # IDM b
    max_comfort_brake_mps2: float = 3.8  # < 4.05 comfort bound
    emergency_brake_mps2: float = 8.0  # in-path leader emergencies only
    time_headway_s: float = 1.3
    min_gap_vehicle_m: float = 3.0
    min_gap_static_m: float = 5.0  # stop further back behind a blocker (room to steer around)
    min_gap_stop_line_m: float = 1.5  # front bumper to stop line
    min_gap_vulnerable_m: float = 3.0
    # < 4.13 lon jerk comfort bound; the tracking controller's PI + feed-forward executes about
    # 1.3× the planned jerk at a change of acceleration, so the plan keeps well under the bound
    jerk_max_mps3: float = 2.5
    stop_release_jerk_mps3: float = 3.5  # brake release at the end of a stop (see the rollout)
    max_lat_accel_mps2: float = 2.0  # curvature speed limit
    max_yaw_rate_radps: float = 0.8  # < 0.95 comfort bound
    anticipation_decel_mps2: float = 1.5  # backward pass of the speed cap
    # -- signals and stop signs -------------------------------------------------------------
    yellow_comfort_decel_mps2: float = 3.0
    stop_sign_hold_s: float = 1.0
    stopped_speed_mps: float = 0.2
    stop_line_zone_m: float = 4.0  # front bumper within this of the line counts as "at the line"
    flashing_yellow_speed_mps: float = 6.0
    # -- gap acceptance ------------------------------------------------------------------------
    clear_margin_vehicle_s: float = 1.5  # ego must be gone this long before a crossing vehicle arrives
    clear_margin_vulnerable_s: float = 2.5
    after_margin_s: float = 1.0  # actor must be gone this long before the ego arrives
    yield_buffer_vehicle_m: float = 2.0
    yield_buffer_vulnerable_m: float = 2.5
    corridor_margin_vehicle_m: float = 0.3
    corridor_margin_vulnerable_m: float = 0.9
    cut_in_lookahead_s: float = 4.0
    # -- lateral ---------------------------------------------------------------------------------
    nudge_clearance_m: float = 0.7  # plan with slack so the tracked path keeps >= 0.5 m
    lane_change_ttc_s: float = 3.0
    lane_change_min_gap_m: float = 4.0
    oncoming_clearance_m: float = 0.4  # ours: a nudge may meet oncoming traffic with this much room
    lookahead_m: float = 140.0
    # -- overtaking slow moving vehicles (Pass/Overtake) ------------------------------------------
    overtake_speed_ratio: float = 0.5  # ours: a vehicle whose own desired speed is below this × limit
    overtake_lookahead_m: float = 60.0  # ours: start considering the pass this far behind it
    overtake_margin_m: float = 8.0  # ours: rear bumper this far ahead of its front before cutting back
    # -- construction zones ----------------------------------------------------------------------
    work_zone_speed_mps: float = 30.0 / 3.6  # ours: the families post 30 km/h at work zones
    work_zone_min_objects: int = 2  # cones/barriers near the lane that make a zone
    # -- decisions -------------------------------------------------------------------------------
    binding_margin_mps2: float = 0.3  # a constraint "shapes the plan" when it lowers the accel this much
    rest_speed_mps: float = 0.5  # a plan "comes to rest" below this (checker: Stop ⇒ < 0.5 m/s)


# ----------------------------------------------------------------------------------------------
# Route path (Frenet frame along joined lane centrelines)
# ----------------------------------------------------------------------------------------------
def _wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def _smoothstep(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10 - 15 * u + 6 * u * u)


@dataclass(frozen=True, eq=False)
class RoutePath:
    """A route centreline sampled every ``ROUTE_DS_M``: stations, xy, heading, curvature, and for
    every sample the index of the route lane it belongs to (-1 on the extension)."""

    s: np.ndarray  # (N,)
    xy: np.ndarray  # (N, 2)
    heading: np.ndarray  # (N,) unwrapped
    curvature: np.ndarray  # (N,) [1/m]
    lane_index: np.ndarray  # (N,) int
    lane_ids: tuple[str, ...]
    lane_start_s: np.ndarray  # (L,) route station where each route lane starts (its s_m = 0)
    speed_limit: np.ndarray  # (N,) [m/s]
    width: np.ndarray  # (N,) [m]

    @property
    def length_m(self) -> float:
        return float(self.s[-1])

    def index(self, s_m) -> np.ndarray:
        return np.clip(np.round(np.asarray(s_m) / ROUTE_DS_M).astype(np.int64), 0, len(self.s) - 1)

    def project(self, xy, lo: int = 0, hi: int | None = None, heading=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frenet (s, d) of local points (..., 2) using samples [lo, hi); ``heading`` (...,)
        (optional) excludes samples pointing more than 90° away (self-crossing routes).
        Returns (s, d, inside) where ``inside`` is False when the nearest sample is a window end."""
        hi = len(self.s) if hi is None else hi
        lo, hi = max(0, lo), min(len(self.s), hi)
        p = np.asarray(xy, dtype=np.float64)
        flat = p.reshape(-1, 2)
        w = self.xy[lo:hi]
        d2 = (flat[:, 0:1] - w[None, :, 0]) ** 2 + (flat[:, 1:2] - w[None, :, 1]) ** 2
        if heading is not None:
            hd = np.abs(_wrap(np.asarray(heading, dtype=np.float64).reshape(-1)[:, None] - self.heading[None, lo:hi]))
            d2 = np.where(hd < np.pi / 2, d2, d2 + 1e6)
        k = np.argmin(d2, axis=1)
        i = k + lo
        h = self.heading[i]
        rel = flat - self.xy[i]
        s = self.s[i] + rel[:, 0] * np.cos(h) + rel[:, 1] * np.sin(h)
        d = -rel[:, 0] * np.sin(h) + rel[:, 1] * np.cos(h)
        inside = ((k > 0) | (lo == 0)) & ((k < hi - lo - 1) | (hi == len(self.s)))
        shape = p.shape[:-1]
        return s.reshape(shape), d.reshape(shape), inside.reshape(shape)

    def position(self, s_m, d_m=0.0) -> np.ndarray:
        s = np.asarray(s_m, dtype=np.float64)
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        h = np.interp(s, self.s, self.heading)
        return np.stack([x - np.sin(h) * d_m, y + np.cos(h) * d_m], axis=-1)


def _lane_samples(lane: Lane, s0: float, s1: float) -> np.ndarray:
    n = max(2, int(math.ceil((s1 - s0) / ROUTE_DS_M)) + 1)
    return lane.position(np.linspace(s0, s1, n))


def build_route_path(road_map: RoadMap, lane_ids, extend_m: float = 120.0) -> RoutePath:
    """Join ``lane_ids`` into one sampled centreline. Consecutive lanes that do not connect end to
    start (a lane change encoded in the route) are joined with a smooth 30 m blend; the path is
    extended ``extend_m`` past the last lane (through its first successors, then straight)."""
    lane_ids = tuple(lane_ids)
    if not lane_ids:
        raise ValueError("route needs at least one lane id")
    lanes = [road_map.lane(lid) for lid in lane_ids]
    # extension through successors (not part of the route; lane index -1)
    ext: list[Lane] = []
    last, acc = lanes[-1], 0.0
    while acc < extend_m and last.successors:
        last = road_map.lane(last.successors[0])
        if last.id in lane_ids or any(e.id == last.id for e in ext):
            break
        ext.append(last)
        acc += last.length_m
    pieces, owners, limits, widths = [], [], [], []
    start_s: list[float] = []
    total = 0.0
    pts_all = lanes + ext
    s_from = 0.0
    for j, lane in enumerate(pts_all):
        nxt = pts_all[j + 1] if j + 1 < len(pts_all) else None
        s_to = lane.length_m
        blend = None
        if nxt is not None and np.linalg.norm(nxt.centerline_xy[0] - lane.centerline_xy[-1]) > 1.0:
            # not end-to-start: where does the next lane run beside this one?
            sn, _ = nxt.to_frenet(lane.centerline_xy[-1])
            s_mid = min(lane.length_m, max(0.0, lane.length_m - 15.0))
            s_to = s_mid
            blend = (lane, nxt, float(s_mid), float(np.clip(sn - (lane.length_m - s_mid), -1e9, 1e9)))
        if j < len(lanes):
            start_s.append(total - s_from)
        seg = _lane_samples(lane, s_from, max(s_to, s_from + ROUTE_DS_M))
        if pieces:
            seg = seg[1:]
        pieces.append(seg)
        owners.append(np.full(len(seg), j if j < len(lanes) else -1))
        limits.append(np.full(len(seg), lane.speed_limit_mps))
        widths.append(np.full(len(seg), lane.width_m))
        total += max(s_to, s_from + ROUTE_DS_M) - s_from
        s_from = 0.0
        if blend is not None:
            la, lb, sa, sb = blend
            u = np.linspace(0.0, 1.0, 61)[1:]
            w = _smoothstep(u)[:, None]
            pa = la.position(sa + 30.0 * u)
            pb = lb.position(sb + 30.0 * u)
            seg = (1 - w) * pa + w * pb
            pieces.append(seg)
            owners.append(np.full(len(seg), j + 1 if j + 1 < len(lanes) else -1))
            limits.append(np.full(len(seg), lb.speed_limit_mps))
            widths.append(np.full(len(seg), lb.width_m))
            total += 30.0
            s_from = min(lb.length_m - ROUTE_DS_M, sb + 30.0)
    xy = np.concatenate(pieces)
    owner = np.concatenate(owners)
    lim = np.concatenate(limits)
    wid = np.concatenate(widths)
    # straight extension
    d_end = xy[-1] - xy[-2]
    d_end = d_end / np.linalg.norm(d_end)
    n_ext = int(extend_m / ROUTE_DS_M)
    xy = np.concatenate([xy, xy[-1] + d_end * (ROUTE_DS_M * np.arange(1, n_ext + 1))[:, None]])
    owner = np.concatenate([owner, np.full(n_ext, -1)])
    lim = np.concatenate([lim, np.full(n_ext, lim[-1])])
    wid = np.concatenate([wid, np.full(n_ext, wid[-1])])
    # drop near-duplicate points, then resample uniformly in arc length
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-6])
    xy, owner, lim, wid = xy[keep], owner[keep], lim[keep], wid[keep]
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    s = np.arange(0.0, cum[-1], ROUTE_DS_M)
    xs = np.stack([np.interp(s, cum, xy[:, 0]), np.interp(s, cum, xy[:, 1])], axis=1)
    idx = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(cum) - 1)
    g = np.gradient(xs, axis=0)
    heading = np.unwrap(np.arctan2(g[:, 1], g[:, 0]))
    k = np.gradient(heading) / ROUTE_DS_M
    kern = np.ones(7) / 7.0
    curv = np.convolve(np.pad(k, 3, mode="edge"), kern, mode="valid")
    # lane start stations in the resampled path (arc-length of the raw joins ~ resampled s)
    lane_start = np.array(start_s, dtype=np.float64)
    return RoutePath(s, xs, heading, curv, owner[idx], lane_ids, lane_start, lim[idx], wid[idx])


# ----------------------------------------------------------------------------------------------
# Per-scenario static context
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Control:
    id: str  # memory key
    kind: str  # "light" | "stop_sign"
    s_line: float  # route station of the stop line
    light_id: str | None = None


@dataclass(frozen=True)
class _Span:
    s0: float
    s1: float
    kind: str  # "turn" | "merge" | "split" | "crosswalk"
    direction: str | None = None
    id: str | None = None


@dataclass(eq=False)
class _Context:
    scenario: Scenario
    route: RoutePath
    controls: list[_Control]
    spans: list[_Span]
    left_avail: np.ndarray  # (N,) drivable distance left of the route centreline [m]
    right_avail: np.ndarray
    left_same_dir: np.ndarray  # (N,) [m] width of same-direction neighbour lane (0 = none)
    right_same_dir: np.ndarray
    specs: dict[str, ActorSpec]
    lights: dict
    actor_paths: dict = field(default_factory=dict)  # actor id -> RoutePath (reactive vehicles)
    walker_paths: dict = field(default_factory=dict)  # actor id -> (xy, cum_s)


def _route_station_of(route: RoutePath, lane_id: str, s_m: float) -> float | None:
    if lane_id not in route.lane_ids:
        return None
    j = route.lane_ids.index(lane_id)
    return float(route.lane_start_s[j] + s_m)


def _build_context(scenario: Scenario) -> _Context:
    m = scenario.map
    route = build_route_path(m, scenario.ego.route_lane_ids)
    controls: list[_Control] = []
    stop_by_id = {sl.id: sl for sl in m.stop_lines}
    for tl in scenario.traffic_lights:
        s_line = None
        if tl.stop_line_id is not None and tl.stop_line_id in stop_by_id:
            sl = stop_by_id[tl.stop_line_id]
            s_line = _route_station_of(route, sl.lane_id, sl.s_m)
        if s_line is None:
            for lid in tl.lane_ids:
                if lid in route.lane_ids:
                    s_line = _route_station_of(route, lid, m.lane(lid).length_m)
                    break
        if s_line is not None and any(lid in route.lane_ids for lid in tl.lane_ids) or (
            s_line is not None and tl.stop_line_id in stop_by_id
        ):
            controls.append(_Control(f"light:{tl.id}", "light", s_line, tl.id))
    for sign in m.signs:
        if sign.kind != "stop":
            continue
        for lid in sign.lane_ids:
            if lid not in route.lane_ids:
                continue
            sls = m.stop_lines_on(lid)
            s_m = sls[-1].s_m if sls else m.lane(lid).length_m
            controls.append(_Control(f"stop:{sign.id}:{lid}", "stop_sign", _route_station_of(route, lid, s_m)))
    controls.sort(key=lambda c: c.s_line)

    spans: list[_Span] = []
    for j, lid in enumerate(route.lane_ids):
        lane = m.lane(lid)
        s0 = float(route.lane_start_s[j])
        if lane.is_intersection and lane.turn in ("left", "right"):
            spans.append(_Span(s0, s0 + lane.length_m, "turn", lane.turn, lid))
        if j + 1 < len(route.lane_ids):
            nxt = m.lane(route.lane_ids[j + 1])
            if lane.is_intersection or nxt.is_intersection:
                continue
            if nxt.id in lane.successors:
                others = [p for p in nxt.predecessors if p != lid and not m.lane(p).is_intersection]
                if others:  # merging into a lane fed by another lane: the ego moves toward it
                    # (its end point is the merge point itself, on the route: look 30 m upstream)
                    other = m.lane(others[0])
                    back_m = min(MERGE_SIDE_LOOKBACK_M, 0.5 * other.length_m, 0.5 * lane.length_m)
                    side = _side_of(route, other.position(other.length_m - back_m), s0 + lane.length_m - back_m)
                    spans.append(_Span(s0 + lane.length_m - 60.0, s0 + lane.length_m + 10.0, "merge",
                                       "left" if side > 0 else "right", nxt.id))
                outs = [q for q in lane.successors if q != nxt.id and not m.lane(q).is_intersection]
                if outs:
                    side = _side_of(route, m.lane(outs[0]).position(min(20.0, m.lane(outs[0]).length_m)),
                                    s0 + lane.length_m + 20.0)
                    spans.append(_Span(s0 + lane.length_m - 40.0, s0 + lane.length_m + 20.0, "split",
                                       "left" if side < 0 else "right", nxt.id))
    for cw in m.crosswalks:
        s, d, inside = route.project(cw.polygon_xy)
        if np.any(inside & (np.abs(d) < 8.0)):
            ok = np.abs(d) < 12.0
            spans.append(_Span(float(s[ok].min()), float(s[ok].max()), "crosswalk", None, cw.id))

    left_avail, right_avail, left_same, right_same = _drivable_widths(m, route)
    return _Context(
        scenario=scenario, route=route, controls=controls, spans=spans, left_avail=left_avail,
        right_avail=right_avail, left_same_dir=left_same, right_same_dir=right_same,
        specs={a.id: a for a in scenario.actors}, lights={t.id: t for t in scenario.traffic_lights},
    )


def _side_of(route: RoutePath, xy, s_hint: float) -> float:
    """Signed lateral offset (left +) of a point relative to the route near ``s_hint``."""
    i = int(route.index(s_hint))
    _, d, _ = route.project(np.asarray(xy)[None], i - 80, i + 80)
    return float(d[0])


def _drivable_widths(m: RoadMap, route: RoutePath):
    """Per route sample: how far left/right of the centreline the road surface (any lane)
    continues, and the width of a same-direction neighbour lane on each side (0 if none)."""
    n = len(route.s)
    step = 4  # evaluate every 2 m, then hold
    idx = np.arange(0, n, step)
    offs = np.arange(0.25, 9.01, 0.25)
    h = route.heading[idx]
    nx, ny = -np.sin(h), np.cos(h)
    half = 0.5 * route.width[idx]
    res = {}
    for sign, name in ((1.0, "left"), (-1.0, "right")):
        d = sign * (half[:, None] + offs[None, :])  # (M, O)
        px = route.xy[idx, 0][:, None] + nx[:, None] * d
        py = route.xy[idx, 1][:, None] + ny[:, None] * d
        pts = np.stack([px, py], axis=-1).reshape(-1, 2)
        on = np.zeros(len(pts), dtype=bool)
        same = np.zeros(len(pts), dtype=bool)
        hh = np.repeat(h, len(offs))
        for lane in m.lanes.values():
            c = lane.centerline_xy
            lo, hi = c.min(axis=0) - 10.0, c.max(axis=0) + 10.0
            cand = np.all((pts >= lo) & (pts <= hi), axis=1)
            if not np.any(cand):
                continue
            s, r = lane.to_frenet(pts[cand])
            hit = (s >= -0.5) & (s <= lane.length_m + 0.5) & (np.abs(r) <= 0.5 * lane.width_m + 0.05)
            ci = np.flatnonzero(cand)[hit]
            on[ci] = True
            hd = np.abs(_wrap(lane.heading_at(s[hit]) - hh[ci]))
            same[ci[hd < np.pi / 2]] = True
        on = on.reshape(len(idx), len(offs))
        same = same.reshape(len(idx), len(offs))
        # contiguous free offsets from the lane edge
        first_off = np.argmin(np.concatenate([on, np.zeros((len(idx), 1), bool)], axis=1), axis=1)
        avail = half + np.where(first_off > 0, offs[np.maximum(first_off - 1, 0)], 0.0)
        # same-direction neighbour: the point one lane width out is on a same-direction lane
        k_nb = np.clip(np.searchsorted(offs, half) , 0, len(offs) - 1)  # ~ neighbour centre
        nb = same[np.arange(len(idx)), k_nb] & on[np.arange(len(idx)), k_nb] & (avail >= 3 * half - 0.3)
        nb_w = np.where(nb, 2 * half, 0.0)
        res[name] = (np.repeat(avail, step)[:n], np.repeat(nb_w, step)[:n])
    # the route's own lane neighbours are authoritative where known
    for j, lid in enumerate(route.lane_ids):
        lane = m.lane(lid)
        sel = route.lane_index == j
        if lane.left_neighbor is not None:
            res["left"][1][sel] = m.lane(lane.left_neighbor).width_m
            res["left"][0][sel] = np.maximum(res["left"][0][sel], 0.5 * lane.width_m + m.lane(lane.left_neighbor).width_m)
        if lane.right_neighbor is not None:
            res["right"][1][sel] = m.lane(lane.right_neighbor).width_m
            res["right"][0][sel] = np.maximum(res["right"][0][sel], 0.5 * lane.width_m + m.lane(lane.right_neighbor).width_m)
    return res["left"][0], res["right"][0], res["left"][1], res["right"][1]


# ----------------------------------------------------------------------------------------------
# Prediction
# ----------------------------------------------------------------------------------------------
_T_PRED = PRED_DT_S * np.arange(PRED_STEPS + 1)  # (K+1,) [s] 0 … 6.4


def _actor_route(ctx: _Context, aid: str, beh: IdmBehavior) -> RoutePath | None:
    if aid not in ctx.actor_paths:
        try:
            ctx.actor_paths[aid] = build_route_path(ctx.scenario.map, beh.route_lane_ids, extend_m=80.0)
        except ValueError:
            ctx.actor_paths[aid] = None
    return ctx.actor_paths[aid]


def _actor_red_stop(ctx: _Context, path: RoutePath, beh: IdmBehavior, s_now: float, signals: dict) -> float | None:
    """Route station (of the actor path) where a signal-obeying actor will stop, if any."""
    if not beh.obey_signals:
        return None
    best = None
    for tl in ctx.scenario.traffic_lights:
        state = signals.get(tl.id)
        if state not in ("red", "yellow"):
            continue
        for lid in tl.lane_ids:
            if lid not in path.lane_ids:
                continue
            sl = next((x for x in ctx.scenario.map.stop_lines if x.id == tl.stop_line_id), None)
            s_m = sl.s_m if sl is not None and sl.lane_id == lid else ctx.scenario.map.lane(lid).length_m
            s_line = float(path.lane_start_s[path.lane_ids.index(lid)] + s_m)
            if s_line > s_now and (best is None or s_line < best):
                best = s_line
    return best


def _predict(ctx: _Context, ws: WorldState, t_now_us: int):
    """(ids, xy (A,K+1,2), yaw (A,K+1), speed (A,), specs) for visible actors."""
    ids, xys, yaws, speeds = [], [], [], []
    T = _T_PRED
    for aid, st in ws.actors.items():
        if not st.visible or aid not in ctx.specs:
            continue
        spec = ctx.specs[aid]
        beh = spec.behavior
        v = max(0.0, float(st.speed_mps))
        xy = yaw = None
        if isinstance(beh, StaticBehavior) or spec.kind in STATIC_KINDS:
            xy = np.repeat([[st.x_m, st.y_m]], len(T), axis=0)
            yaw = np.full(len(T), st.yaw_rad)
            v = 0.0
        elif isinstance(beh, WalkerBehavior):
            xy, yaw, v = _predict_walker(ctx, aid, beh, st, t_now_us)
        elif isinstance(beh, LogBehavior):
            tt = np.asarray(beh.t_us, dtype=np.float64)
            tq = t_now_us + T * 1e6
            pts = np.asarray(beh.xy, dtype=np.float64)
            xy = np.stack([np.interp(tq, tt, pts[:, 0]), np.interp(tq, tt, pts[:, 1])], axis=1)
            yaw = np.interp(tq, tt, np.unwrap(np.asarray(beh.yaw_rad, dtype=np.float64)))
        elif isinstance(beh, IdmBehavior):
            xy, yaw = _predict_vehicle(ctx, aid, beh, st, ws, t_now_us)
        if xy is None:
            xy, yaw = _ctrv(st, T)
        ids.append(aid)
        xys.append(xy)
        yaws.append(yaw)
        speeds.append(v)
    if not ids:
        return [], np.zeros((0, len(T), 2)), np.zeros((0, len(T))), np.zeros(0)
    return ids, np.stack(xys), np.stack(yaws), np.asarray(speeds)


def _ctrv(st: AgentState, T: np.ndarray):
    v, w = max(0.0, st.speed_mps), st.yaw_rate_radps
    a = min(0.0, st.accel_mps2)
    # constant (negative) acceleration until standstill, then hold
    t_stop = v / -a if a < -0.3 else np.inf
    tt = np.minimum(T, t_stop)
    dist = v * tt + 0.5 * (a if a < -0.3 else 0.0) * tt * tt
    if abs(w) < 1e-3:
        x = st.x_m + dist * math.cos(st.yaw_rad)
        y = st.y_m + dist * math.sin(st.yaw_rad)
        return np.stack([x, y], axis=1), np.full(len(T), st.yaw_rad)
    yaw = st.yaw_rad + w * np.minimum(tt, 3.0)  # do not predict loops
    # integrate heading numerically (short horizon)
    ds = np.diff(dist, prepend=0.0)
    x = st.x_m + np.cumsum(ds * np.cos(yaw))
    y = st.y_m + np.cumsum(ds * np.sin(yaw))
    return np.stack([x, y], axis=1), yaw


def _predict_walker(ctx: _Context, aid: str, beh: WalkerBehavior, st: AgentState, t_now_us: int):
    if aid not in ctx.walker_paths:
        p = np.asarray(beh.path_xy, dtype=np.float64)
        if len(p) >= 2:
            cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
            ctx.walker_paths[aid] = (p, cum)
        else:
            ctx.walker_paths[aid] = None
    wp = ctx.walker_paths[aid]
    if wp is None or wp[1][-1] < 1e-6:
        xy, yaw = _ctrv(st, _T_PRED)
        return xy, yaw, st.speed_mps
    p, cum = wp
    # project the current position onto the walker path
    a, d = p[:-1], np.diff(p, axis=0)
    L2 = np.maximum(np.sum(d * d, axis=1), 1e-12)
    u = np.clip(((st.x_m - a[:, 0]) * d[:, 0] + (st.y_m - a[:, 1]) * d[:, 1]) / L2, 0, 1)
    q = a + u[:, None] * d
    k = int(np.argmin(np.sum((q - [st.x_m, st.y_m]) ** 2, axis=1)))
    s0 = cum[k] + u[k] * math.sqrt(L2[k])
    t_start = max(0.0, (beh.start_us - t_now_us) * 1e-6)
    moving = st.speed_mps > 0.05 or t_start > 0.0 or t_now_us < beh.start_us + 1_000_000
    if beh.yield_to_ego and st.speed_mps <= 0.05 and t_now_us >= beh.start_us + 500_000:
        moving = False  # a courteous walker waiting for the ego: it stays until we pass
    v = beh.speed_mps if moving else 0.0
    s = np.clip(s0 + v * np.maximum(_T_PRED - t_start, 0.0), 0.0, cum[-1])
    xy = np.stack([np.interp(s, cum, p[:, 0]), np.interp(s, cum, p[:, 1])], axis=1)
    seg = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(d) - 1)
    yaw = np.arctan2(d[seg, 1], d[seg, 0])
    return xy, yaw, v


def _predict_vehicle(ctx: _Context, aid: str, beh: IdmBehavior, st: AgentState, ws: WorldState, t_now_us: int):
    T = _T_PRED
    v = max(0.0, st.speed_mps)
    # scripted lane change in progress or about to start (privileged: we know the script)
    for ev in beh.lane_change_events:
        if ev.t_us - 1_500_000 <= t_now_us < ev.t_us + ev.duration_us and ev.target_lane_id in ctx.scenario.map.lanes:
            lane = ctx.scenario.map.lane(ev.target_lane_id)
            s0, r0 = lane.to_frenet(np.array([st.x_m, st.y_m]))
            tq = t_now_us * 1e-6 + T
            u = (tq - ev.t_us * 1e-6) / (ev.duration_us * 1e-6)
            r = float(r0) * (1.0 - _smoothstep(u)) / max(1e-6, 1.0 - float(_smoothstep(np.array((t_now_us - ev.t_us) / ev.duration_us))))
            if t_now_us < ev.t_us:
                r = float(r0) * (1.0 - _smoothstep(u))
            s = float(s0) + v * T
            xy = lane.position(s, r)
            return xy, lane.heading_at(s)
    path = _actor_route(ctx, aid, beh)
    if path is None:
        return None, None
    s0, d0, inside = path.project(np.array([[st.x_m, st.y_m]]))
    s0, d0 = float(s0[0]), float(d0[0])
    h = float(np.interp(s0, path.s, path.heading))
    if abs(d0) > 1.0 or abs(_wrap(st.yaw_rad - h)) > 0.4:
        return None, None
    a = min(0.0, st.accel_mps2)
    t_stop = v / -a if a < -0.3 else np.inf
    tt = np.minimum(T, t_stop)
    dist = v * tt + 0.5 * (a if a < -0.3 else 0.0) * tt * tt
    s = s0 + dist
    s_stop = _actor_red_stop(ctx, path, beh, s0 + 0.5 * ctx.specs[aid].length_m, ws.signals)
    if s_stop is not None:
        s = np.minimum(s, max(s0, s_stop - 0.5 * ctx.specs[aid].length_m - 1.0))
    d = d0 * np.exp(-T / 1.5)
    xy = path.position(s, d)
    return xy, np.interp(s, path.s, path.heading)


# ----------------------------------------------------------------------------------------------
# Memory across steps
# ----------------------------------------------------------------------------------------------
@dataclass
class _Memory:
    s_hint: float | None = None
    stopped_since_us: dict = field(default_factory=dict)  # control id -> t_us
    released: set = field(default_factory=set)  # control ids already satisfied
    yellow_choice: dict = field(default_factory=dict)  # light id -> "stop" | "go"
    maneuver: dict | None = None  # committed lateral manoeuvre
    d_hist: list = field(default_factory=list)  # [(t_us, Frenet offset d)] of the last ~1.6 s


# ----------------------------------------------------------------------------------------------
# The policy
# ----------------------------------------------------------------------------------------------
class ExpertPolicy:
    """Privileged rule-based expert (see module docstring). Implements ``PrivilegedPolicy``."""

    name = "expert"
    runs_inline = True  # bounded, in-process: no policy-timeout worker thread (sim/runtime.py)

    def __init__(self, privileged: bool = True, params: ExpertParams | None = None):
        self.privileged = bool(privileged)
        self.params = params or ExpertParams()
        self._ctx: _Context | None = None
        self._ctx_key = None
        self._mem = _Memory()
        self._world: WorldState | None = None
        self._session: SessionInfo | None = None

    # -- Policy protocol ------------------------------------------------------------------------
    def start(self, session: SessionInfo) -> None:
        self._session = session
        self._mem = _Memory()
        self._world = None

    def close(self) -> None:
        self._world = None

    def observe_world(self, world_state: WorldState, scenario: Scenario) -> None:
        if not self.privileged:
            return
        self._bind(scenario)
        self._world = world_state

    def plan(self, observation: Observation, t_now_us: int, t_query_us: int) -> Plan:
        if not self.privileged:
            return route_following_plan(observation, t_now_us)
        if self._world is None or self._ctx is None:
            raise RuntimeError(
                "ExpertPolicy is privileged: the runtime must call observe_world(world_state, scenario) "
                "before plan(); construct ExpertPolicy(privileged=False) for route following without ground truth"
            )
        if int(self._world.t_us) != int(t_now_us):
            raise ValueError(f"observe_world saw t_us={self._world.t_us} but plan() was asked for t_now_us={t_now_us}")
        return self.plan_from_state(self._world, self._ctx.scenario, t_now_us)

    # -- the planner ------------------------------------------------------------------------------
    def _bind(self, scenario: Scenario) -> None:
        key = (id(scenario), scenario.id)
        if key != self._ctx_key:
            self._ctx = _build_context(scenario)
            self._ctx_key = key
            self._mem = _Memory()

    def plan_from_state(self, world_state: WorldState, scenario: Scenario, t_now_us: int) -> Plan:
        """Plan from ground truth (usable without the runtime); updates the expert's memory."""
        t0 = time.perf_counter()
        self._bind(scenario)
        plan = _plan(self._ctx, self._mem, self.params, world_state, int(t_now_us))
        plan.timing_ms["plan"] = (time.perf_counter() - t0) * 1e3
        return plan


def plan_from_state(world_state: WorldState, scenario: Scenario, t_now_us: int, params: ExpertParams | None = None) -> Plan:
    """Stateless one-shot expert plan (fresh memory: stop signs are never 'already stopped')."""
    return ExpertPolicy(params=params).plan_from_state(world_state, scenario, t_now_us)


# ----------------------------------------------------------------------------------------------
# Planning internals
# ----------------------------------------------------------------------------------------------
@dataclass
class _Leader:
    """A time-varying obstacle in the ego path: station of its back edge along the route per
    prediction step (NaN where it is not a leader), its speed along the path, its stop gap."""

    s_back: np.ndarray  # (K+1,)
    v_along: np.ndarray  # (K+1,)
    s0_m: float
    tag: tuple  # ("lead"|"cut_in"|..., actor id) or ("stop", control id, ...)
    max_brake_mps2: float


def _ego_geometry(scenario: Scenario):
    e = scenario.ego
    front = e.rear_axle_to_center_m + 0.5 * e.length_m
    rear = 0.5 * e.length_m - e.rear_axle_to_center_m
    return front, rear, 0.5 * e.width_m


def _time_to_travel(dist, v0: float, v_max: float, accel: float = 1.5) -> np.ndarray:
    """Time to cover ``dist`` starting at ``v0`` accelerating at ``accel`` up to ``v_max``."""
    dist = np.maximum(np.asarray(dist, dtype=np.float64), 0.0)
    v_max = max(v_max, v0, 0.5)
    t_acc = (v_max - v0) / accel
    d_acc = v0 * t_acc + 0.5 * accel * t_acc**2
    t1 = (-v0 + np.sqrt(v0 * v0 + 2 * accel * dist)) / accel
    t2 = t_acc + (dist - d_acc) / v_max
    return np.where(dist <= d_acc, t1, t2)


def _dist_in_time(t_s: float, v0: float, v_max: float, accel: float = 1.0) -> float:
    """Distance covered in ``t_s`` from ``v0`` accelerating gently up to ``v_max``."""
    t_acc = min(t_s, max(0.0, (v_max - v0) / accel))
    return v0 * t_acc + 0.5 * accel * t_acc**2 + max(v_max, v0) * (t_s - t_acc) if v_max > v0 else v0 * t_s


def _plan(ctx: _Context, mem: _Memory, P: ExpertParams, ws: WorldState, t_now_us: int) -> Plan:
    route = ctx.route
    sc = ctx.scenario
    ego = ws.ego
    front_m, rear_m, ego_hw = _ego_geometry(sc)
    v0 = max(0.0, float(ego.speed_mps))

    # -- ego Frenet state ------------------------------------------------------------------------
    if mem.s_hint is None:
        lo, hi = 0, len(route.s)
    else:
        i = int(route.index(mem.s_hint))
        lo, hi = i - 80, i + 200
    s_e, d_e, _ = route.project(np.array([[ego.x_m, ego.y_m]]), lo, hi, heading=np.array([ego.yaw_rad]))
    s_e, d_e = float(s_e[0]), float(d_e[0])
    mem.s_hint = s_e
    i_e = int(route.index(s_e))
    head_err = float(_wrap(ego.yaw_rad - route.heading[i_e]))
    s_front, s_rear = s_e + front_m, s_e - rear_m

    w_lo = max(0, i_e - int(30 / ROUTE_DS_M))
    w_hi = min(len(route.s), i_e + int(P.lookahead_m / ROUTE_DS_M))
    S = route.s[w_lo:w_hi]

    # -- predictions and projection ------------------------------------------------------------
    ids, pxy, pyaw, pspeed = _predict(ctx, ws, t_now_us)
    A = len(ids)
    specs = [ctx.specs[a] for a in ids]
    kinds = [s.kind for s in specs]
    is_static = np.array([isinstance(s.behavior, StaticBehavior) or s.kind in STATIC_KINDS for s in specs], dtype=bool)
    is_vru = np.array([k in VULNERABLE_KINDS for k in kinds], dtype=bool)
    L = np.array([s.length_m for s in specs], dtype=np.float64)
    W = np.array([s.width_m for s in specs], dtype=np.float64)
    if A:
        sa, da, ins = route.project(pxy, w_lo, w_hi)  # (A, K+1)
        ha = np.interp(sa, route.s, route.heading)
        dyaw = _wrap(pyaw - ha)
        c, s_ = np.abs(np.cos(dyaw)), np.abs(np.sin(dyaw))
        hl = c * L[:, None] / 2 + s_ * W[:, None] / 2
        hw = s_ * L[:, None] / 2 + c * W[:, None] / 2
        v_along = pspeed[:, None] * np.cos(dyaw)
        valid = ins & (np.abs(da) < 25.0)
    else:
        sa = da = hl = hw = v_along = dyaw = np.zeros((0, PRED_STEPS + 1))
        valid = np.zeros((0, PRED_STEPS + 1), bool)

    # -- lateral plan ------------------------------------------------------------------------------
    lat = _plan_lateral(ctx, mem, P, ids, is_static, sa, da, hl, hw, v_along, dyaw, valid, s_e, d_e, v0,
                        front_m, rear_m, ego_hw, S, w_lo)
    D_t = lat["D"]  # target offsets on the window samples
    # blend the current offset/heading error into the target profile (quintic in s)
    Lb = float(np.clip(2.0 * v0, 8.0, 30.0))
    Lb = max(Lb, 4.0 * abs(d_e - np.interp(s_e, S, D_t)))
    e0 = d_e - float(np.interp(s_e, S, D_t))
    dDt = np.gradient(D_t, ROUTE_DS_M)
    e1 = math.tan(float(np.clip(head_err, -1.2, 1.2))) - float(np.interp(s_e, S, dDt))
    x = np.clip(S - s_e, 0.0, Lb) / Lb
    # quintic e(x) with e(0)=e0, e'(0)=e1*Lb, e''(0)=0, e(1)=e'(1)=e''(1)=0
    a0, a1 = e0, e1 * Lb
    c3 = -10 * a0 - 6 * a1
    c4 = 15 * a0 + 8 * a1
    c5 = -6 * a0 - 3 * a1
    err = a0 + a1 * x + c3 * x**3 + c4 * x**4 + c5 * x**5
    err = np.where(S < s_e, e0, err)
    D = D_t + err

    # -- corridor occupancy with the planned offsets ---------------------------------------------
    if A:
        Dat = np.interp(sa, S, D)
        margin = np.where(is_vru, P.corridor_margin_vulnerable_m, P.corridor_margin_vehicle_m)[:, None]
        in_corr = valid & (np.abs(da - Dat) < ego_hw + hw + margin)
    else:
        in_corr = valid

    leaders: list[_Leader] = []
    yield_info = []
    nominal_cap = float(route.speed_limit[i_e])
    for a in range(A):
        if not np.any(in_corr[a]):
            continue
        aid = ids[a]
        s_back = sa[a] - hl[a]
        s_fwd = sa[a] + hl[a]
        ahead = s_fwd > s_rear + 0.3
        occ = in_corr[a] & ahead
        if not np.any(occ):
            continue
        k_in = int(np.argmax(occ))
        same_dir = abs(float(dyaw[a, k_in])) < np.pi / 3
        if is_static[a]:
            # a blocker not bypassed: stop behind it
            sb = np.where(occ, s_back, np.nan)
            s0_block = max(P.min_gap_static_m, lat.get("stop_gap_m", 0.0))
            leaders.append(_Leader(sb, np.zeros_like(sb), s0_block, ("blocking", aid), P.emergency_brake_mps2))
            continue
        if same_dir:  # vehicles, and cyclists/walkers moving along our path
            if k_in == 0 and in_corr[a, 0]:
                sb = np.where(in_corr[a] & ahead, s_back, np.nan)
                sb[0] = s_back[0]
                leaders.append(_Leader(sb, v_along[a], P.min_gap_vehicle_m, ("lead", aid), P.emergency_brake_mps2))
            else:
                t_in = k_in * PRED_DT_S
                crossing_join = abs(float(dyaw[a, 0])) > np.pi / 4  # crossing now, joins our path later
                if t_in > P.cut_in_lookahead_s and not crossing_join:
                    continue
                ego_rear_then = s_rear + _dist_in_time(t_in, v0, max(nominal_cap, v0))
                if s_fwd[k_in] < ego_rear_then - max(3.0, (1.5 if crossing_join else 1.0) * float(pspeed[a])):
                    continue  # joins well behind us: it has to yield
                if abs(float(dyaw[a, 0])) > np.pi / 4:
                    rel = "crossing"  # crossing traffic that turns into / continues along our path
                elif any(sp.kind == "merge" and sp.s0 - 10 <= s_e <= sp.s1 for sp in ctx.spans):
                    rel = "merging"
                else:
                    rel = "cut_in"
                sb = s_back.copy()
                sb[~valid[a]] = np.nan
                leaders.append(_Leader(sb, v_along[a], P.min_gap_vehicle_m, (rel, aid), P.max_comfort_brake_mps2))
            continue
        # crossing / oncoming / vulnerable: gap acceptance on the occupancy window
        k_out = k_in
        while k_out + 1 <= PRED_STEPS and occ[k_out + 1]:
            k_out += 1
        t_in = k_in * PRED_DT_S
        t_out = np.inf if k_out == PRED_STEPS else (k_out + 1) * PRED_DT_S
        s_c_lo = float(np.min(s_back[k_in:k_out + 1]))
        s_c_hi = float(np.max(s_fwd[k_in:k_out + 1]))
        if s_c_lo < s_front - 0.5 and k_in == 0:
            # already overlapping our front zone: treat as an obstacle in the path
            sb = np.where(occ, np.maximum(s_back, s_front + 0.1), np.nan)
            leaders.append(_Leader(sb, np.minimum(v_along[a], 0.0) * 0.0, 1.0,
                                   ("crossing" if abs(float(dyaw[a, 0])) < 2.2 else "oncoming", aid),
                                   P.emergency_brake_mps2))
            continue
        vcap = max(nominal_cap, v0)
        t_clear = float(_time_to_travel(s_c_hi - s_rear + 0.5, v0, vcap))
        t_arrive = float(_time_to_travel(s_c_lo - s_front - 0.5, v0, vcap))
        m_before = P.clear_margin_vulnerable_s if is_vru[a] else P.clear_margin_vehicle_s
        if t_clear + m_before < t_in or t_out + P.after_margin_s < t_arrive:
            # pass before it arrives / it is gone before we arrive; still keep it as an in-path
            # obstacle at the times it is predicted there
            sb = np.where(occ, s_back, np.nan)
            leaders.append(_Leader(sb, np.zeros_like(sb), 1.0, ("crossing", aid), P.emergency_brake_mps2))
            continue
        relation = "oncoming" if abs(float(dyaw[a, k_in])) > 2 * np.pi / 3 and not is_vru[a] else "crossing"
        buf = P.yield_buffer_vulnerable_m if is_vru[a] else P.yield_buffer_vehicle_m
        s_stop = s_c_lo - buf
        for sp in ctx.spans:  # stop before the crosswalk that contains the conflict
            if sp.kind == "crosswalk" and sp.s0 - 3.0 <= s_c_lo <= sp.s1 + 3.0:
                s_stop = min(s_stop, sp.s0 - 1.0)
        for cn in ctx.controls:  # wait at the line rather than inside the intersection
            if s_front - 0.3 <= cn.s_line <= s_stop:
                s_stop = cn.s_line
                break
        if s_stop < s_front - 0.3:
            if s_c_lo > s_front + 0.5:
                s_stop = s_front + 0.2  # hold here
            else:
                continue
        sb = np.full(PRED_STEPS + 1, s_stop)
        leaders.append(_Leader(sb, np.zeros_like(sb), 0.5, ("yield", aid, relation, s_c_lo), P.emergency_brake_mps2))
        yield_info.append((aid, relation, s_c_lo))

    # -- controls ----------------------------------------------------------------------------------
    cap_extra = np.full(len(S), np.inf)
    signal_info = None
    stop_line_dist = None
    for cn in ctx.controls:
        dist = cn.s_line - s_front
        if dist < -3.0 or dist > P.lookahead_m:
            if dist < -3.0:
                mem.stopped_since_us.pop(cn.id, None)
            continue
        state = ws.signals.get(cn.light_id) if cn.kind == "light" else "stop_sign"
        if stop_line_dist is None and dist >= -0.5:
            stop_line_dist = float(dist)
        if cn.kind == "light" and signal_info is None and dist >= -0.5:
            signal_info = {"id": cn.light_id, "state": state}
        stop = False
        if state == "red":
            # overshooting the line a little on red: hold there rather than enter the junction
            stop = dist > -0.3 or (dist > -3.0 and v0 < 1.0)
        elif state == "yellow":
            choice = mem.yellow_choice.get(cn.light_id)
            if choice is None:
                need = v0 * v0 / (2 * max(dist - P.min_gap_stop_line_m, 0.1))
                nxt = ctx.lights[cn.light_id].program.next_change_us(t_now_us)
                t_left = np.inf if nxt is None else (nxt - t_now_us) * 1e-6
                t_reach = float(_time_to_travel(dist + front_m + rear_m, v0, max(v0, 1.0), 0.0001))
                can_clear = t_reach < t_left - 0.3
                choice = "stop" if need <= P.yellow_comfort_decel_mps2 or (not can_clear and need <= 7.0) else "go"
                mem.yellow_choice[cn.light_id] = choice
            stop = choice == "stop"
        elif state in ("dark", "flashing_red", "stop_sign"):
            if cn.id not in mem.released:
                stop = True
                at_line = dist < P.stop_line_zone_m
                if at_line and v0 < P.stopped_speed_mps:
                    since = mem.stopped_since_us.setdefault(cn.id, t_now_us)
                    if (t_now_us - since) * 1e-6 >= P.stop_sign_hold_s - 1e-9:
                        mem.released.add(cn.id)
                        stop = False
                else:
                    mem.stopped_since_us.pop(cn.id, None)
        elif state == "flashing_yellow":
            sel = (S > cn.s_line - 25.0 - front_m) & (S < cn.s_line + 10.0)
            cap_extra[sel] = np.minimum(cap_extra[sel], P.flashing_yellow_speed_mps)
        if cn.kind == "light" and state != "yellow":
            mem.yellow_choice.pop(cn.light_id, None)
        if stop:
            sb = np.full(PRED_STEPS + 1, max(cn.s_line, s_front + P.min_gap_stop_line_m * (dist < 0)))
            leaders.append(_Leader(sb, np.zeros_like(sb), P.min_gap_stop_line_m,
                                   ("stop", cn.id, cn.kind, cn.light_id, state), P.emergency_brake_mps2))

    # -- speed cap profile ---------------------------------------------------------------------
    lim = route.speed_limit[w_lo:w_hi]
    kap = np.abs(route.curvature[w_lo:w_hi])
    v_curve = np.minimum(np.sqrt(P.max_lat_accel_mps2 / np.maximum(kap, 1e-6)), P.max_yaw_rate_radps / np.maximum(kap, 1e-6))
    cap_zone = np.full(len(S), np.inf)
    zone = _work_zone(ids, kinds, sa, da, hl, hw, valid, s_rear, float(np.median(route.width[w_lo:w_hi])), P)
    if zone is not None:  # speed adaptation through a work zone (cones / barriers beside the path)
        cap_zone[(S >= zone[0] - front_m) & (S <= zone[1] + rear_m)] = P.work_zone_speed_mps
    cap = np.minimum(np.minimum(np.minimum(lim, v_curve), cap_extra), cap_zone)
    cap = np.maximum(cap, 1.0)
    cap_bwd = cap.copy()
    two_b_ds = 2 * P.anticipation_decel_mps2 * ROUTE_DS_M
    # backward pass (vectorised as a running min of sqrt(c_j² + 2b(s_j − s_i)))
    c2 = cap_bwd**2 + two_b_ds * np.arange(len(S))
    cap_bwd = np.sqrt(np.maximum(np.minimum.accumulate(c2[::-1])[::-1] - two_b_ds * np.arange(len(S)), 0.0))
    cap_src = np.where(np.minimum(lim, cap_extra) <= v_curve + 1e-9, "limit", "curve")
    cap_src = np.where(cap_zone <= np.minimum(np.minimum(lim, cap_extra), v_curve) + 1e-9, "zone", cap_src)
    # where the anticipation pass lowers the cap below the local one, the cause is downstream
    src_bwd = cap_src.copy()
    lower = cap_bwd < cap - 0.05
    if np.any(lower):
        # the sample whose cap the backward pass carries: the nearest later sample with cap ≈ cap_bwd
        nxt = np.full(len(S), -1)
        for i in np.flatnonzero(lower)[::-1]:
            j = nxt[i + 1] if i + 1 < len(S) and lower[i + 1] else i + 1
            nxt[i] = min(j, len(S) - 1)
        src_bwd[lower] = cap_src[nxt[lower]]
    cap_src = src_bwd

    # -- longitudinal rollout ------------------------------------------------------------------
    dt = PLAN_DT_US * 1e-6
    s, v = s_e, v0
    # the jerk limiter starts from the MEASURED acceleration: the previous plan's first sample is
    # not what the car did after a force-GT warm-up, a controller lag or a sudden decision
    a_prev = float(np.clip(float(ego.accel_mps2), -P.emergency_brake_mps2, P.max_accel_mps2))
    if v0 < P.stopped_speed_mps and a_prev < 0.0:
        a_prev = 0.0  # standing: the brake holds, no residual deceleration to unwind
    st_s = np.empty(PLAN_STEPS + 1)
    st_v = np.empty(PLAN_STEPS + 1)
    st_a = np.zeros(PLAN_STEPS + 1)
    tags = []
    st_s[0], st_v[0] = s, v
    if leaders:
        Lsb = np.stack([ld.s_back for ld in leaders])  # (M, K+1)
        Lv = np.stack([ld.v_along for ld in leaders])
        Ls0 = np.array([ld.s0_m for ld in leaders])
        Lbrk = np.array([ld.max_brake_mps2 for ld in leaders])
    sqrt_ab = math.sqrt(P.max_accel_mps2 * P.comfort_decel_mps2)
    for k in range(PLAN_STEPS):
        j = min(k // 2, PRED_STEPS)
        i = min(int(round((s - S[0]) / ROUTE_DS_M)), len(S) - 1)
        i = max(i, 0)
        vdes = float(cap_bwd[i])
        if v <= vdes:
            a_free = P.max_accel_mps2 * (1.0 - (v / vdes) ** 4)
        else:
            a_free = max(-P.max_comfort_brake_mps2 * 0.6, -2.0 * (v - vdes))
        a_cmd, tag, brake_lim = a_free, ("free", cap_src[i], vdes), P.max_comfort_brake_mps2
        if leaders:
            sb = Lsb[:, j]
            ok = np.isfinite(sb)
            if np.any(ok):
                gap = sb - (s + front_m)
                ok &= gap > -3.0
                if np.any(ok):
                    vl = Lv[:, j]
                    gap_e = np.maximum(gap, 0.1)
                    s_star = Ls0 + np.maximum(0.0, v * P.time_headway_s * (Ls0 >= P.min_gap_vehicle_m)
                                              + v * (v - vl) / (2 * sqrt_ab))
                    a_int = P.max_accel_mps2 * (1.0 - (v / vdes) ** 4 - (s_star / gap_e) ** 2)
                    a_int = np.where(ok, a_int, np.inf)
                    m = int(np.argmin(a_int))
                    if a_int[m] < a_cmd:
                        a_idm = float(a_int[m])
                        # the constraint names the decision only where it really shapes the plan
                        binds = a_idm < 0.0 or a_cmd - a_idm > P.binding_margin_mps2
                        # braking beyond comfort only as much as kinematics needs (IDM overreacts)
                        if a_idm < -P.max_comfort_brake_mps2:
                            dv = max(v - max(vl[m], 0.0), 0.0)
                            need = dv * dv / (2 * max(gap[m] - 0.5 * Ls0[m], 0.1)) if dv > 0 else 0.0
                            a_idm = max(a_idm, -max(P.max_comfort_brake_mps2, 1.3 * need))
                        a_cmd, brake_lim = a_idm, float(Lbrk[m])
                        if binds:
                            tag = leaders[m].tag
        # comfort: jerk limit (relaxed for braking beyond comfort), accel bounds
        lo_a = -brake_lim
        a_cmd = float(np.clip(a_cmd, lo_a, P.max_accel_mps2))
        if a_cmd >= -P.max_comfort_brake_mps2:
            jd = P.jerk_max_mps3 * dt
            # a comfortable stop releases the brake as the speed runs out (|a| <= sqrt(2 k j v),
            # k = 0.4 keeps the 10 Hz steps under the jerk bound), so the deceleration reaches 0
            # with the speed instead of jumping there at standstill
            a_cmd = max(a_cmd, -math.sqrt(0.8 * P.stop_release_jerk_mps3 * max(v, 0.0)))
            a_cmd = float(np.clip(a_cmd, a_prev - jd, a_prev + jd))
        if v <= 0.0 and a_cmd < 0:
            a_cmd = 0.0
        v_new = max(0.0, v + a_cmd * dt)
        if v_new == 0.0 and a_cmd < 0:
            ds = v * v / (2 * -a_cmd) if a_cmd < 0 else 0.0
            ds = min(ds, v * dt)
        else:
            ds = 0.5 * (v + v_new) * dt
        s += ds
        v = v_new
        a_prev = a_cmd
        st_s[k + 1], st_v[k + 1], st_a[k] = s, v, a_cmd
        tags.append(tag)
    st_a[-1] = st_a[-2]

    # -- geometry -> rig-frame poses ----------------------------------------------------------------
    Pxy = route.position(S, 0.0)
    h = route.heading[w_lo:w_hi]
    Pxy = Pxy + D[:, None] * np.stack([-np.sin(h), np.cos(h)], axis=1)
    gxy = np.gradient(Pxy, axis=0)
    ph = np.unwrap(np.arctan2(gxy[:, 1], gxy[:, 0]))
    xq = np.interp(st_s, S, Pxy[:, 0])
    yq = np.interp(st_s, S, Pxy[:, 1])
    hq = np.interp(st_s, S, ph)
    c, sn = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    dx, dy = xq - ego.x_m, yq - ego.y_m
    xr, yr = c * dx + sn * dy, -sn * dx + c * dy
    # anchor: pose 0 is exactly the current pose; remove the projection residual smoothly
    r0x, r0y = xr[0], yr[0]
    fade = np.clip(1.0 - (st_s - st_s[0]) / max(Lb, 1.0), 0.0, 1.0)
    xr, yr = xr - r0x * fade, yr - r0y * fade
    yaw = np.unwrap(_wrap(hq - ego.yaw_rad))
    yaw = yaw - 2 * np.pi * np.round(yaw[0] / (2 * np.pi))
    moved = np.abs(st_s - st_s[0]) > 0.05
    yaw = np.where(moved, yaw, 0.0)
    xr[0], yr[0], yaw[0] = 0.0, 0.0, 0.0
    xyz = np.stack([xr, yr, np.zeros_like(xr)], axis=1)
    t_us = t_now_us + PLAN_DT_US * np.arange(PLAN_STEPS + 1, dtype=np.int64)

    # lateral motion evidence: planned offsets along the plan, and the offsets driven in the last 1.5 s
    d_plan = np.interp(st_s, S, D)
    mem.d_hist = [(t, d) for t, d in mem.d_hist if t_now_us - t <= 1_500_000 and t < t_now_us] + [(t_now_us, d_e)]
    d_past = np.array([d for _, d in mem.d_hist])
    decisions = _decide(ctx, P, lat, tags, st_s, st_a, v0, s_e, s_front, ids, specs, sa, hl, leaders,
                        signal_info, stop_line_dist, ws, d_plan, d_past, float(yaw[-1]))
    return Plan(t_us=t_us, xyz_rig=xyz, yaw_rig=yaw, coc=None, decisions=decisions)


# ----------------------------------------------------------------------------------------------
# Lateral planning
# ----------------------------------------------------------------------------------------------
def _shift_length_m(c: float) -> float:
    """Shortest run [m] for a smooth lateral shift of ``c`` metres at ≤ 0.12 1/m curvature
    (smoothstep peak second derivative ≈ 5.8 c / L²)."""
    return max(8.0, math.sqrt(5.8 * abs(c) / 0.12))


def _ramp_profile(S: np.ndarray, a0: float, a1: float, b0: float, b1: float, c: float, d0: float = 0.0) -> np.ndarray:
    """d0 before a0, smooth move to c at a1, hold to b0, smooth return to 0 at b1."""
    up = _smoothstep((S - a0) / max(a1 - a0, 1e-3))
    down = 1.0 - _smoothstep((S - b0) / max(b1 - b0, 1e-3))
    rise = d0 + (c - d0) * up
    return np.where(S < b0, rise, c * down)


def _plan_lateral(ctx, mem, P, ids, is_static, sa, da, hl, hw, v_along, dyaw, valid, s_e, d_e, v0,
                  front_m, rear_m, ego_hw, S, w_lo):
    """Offset profile D(s) around static blockers; returns dict(D, kind, direction, causal)."""
    route = ctx.route
    out = {"D": np.zeros(len(S)), "kind": None, "direction": None, "causal": None, "pending": False}
    s_front, s_rear = s_e + front_m, s_e - rear_m
    clr = P.nudge_clearance_m
    # static obstacles near the route, as Frenet boxes at t=0
    obs = []
    for a in np.flatnonzero(is_static):
        if not valid[a, 0]:
            continue
        lo_s, hi_s = sa[a, 0] - hl[a, 0], sa[a, 0] + hl[a, 0]
        if hi_s < s_rear - 1.0 or lo_s > s_e + P.lookahead_m:
            continue
        obs.append((ids[a], float(lo_s), float(hi_s), float(da[a, 0] - hw[a, 0]), float(da[a, 0] + hw[a, 0])))
    movers = _slow_movers(ctx, P, ids, is_static, sa, da, hl, hw, v_along, dyaw, valid, s_e, s_front, s_rear, v0)
    mover_ids = {o[0] for o in movers}
    obs += movers
    band = ego_hw + clr
    blockers = [o for o in obs if o[4] > -band and o[3] < band]
    if not blockers:
        m = mem.maneuver
        if m is not None and s_e < m["b1"]:  # finish the return to the lane centre
            out["D"] = _ramp_profile(S, m["a0"], m["a1"], m["b0"], m["b1"], m["cand"][0], m["d0"])
            dr = m["cand"][2]
            if m["cand"][1] == "Lane Change":  # the way back into the original lane
                dr = {"left": "right", "right": "left"}[dr]
            out.update(kind=m["cand"][1], direction=dr, causal=m["key"][0], s_range=(m["a0"], m["b1"]),
                       overtake=m.get("overtake", False))
            return out
        mem.maneuver = None
        return out
    blockers.sort(key=lambda o: o[1])
    group = [blockers[0]]
    for o in blockers[1:]:
        if o[1] - max(g[2] for g in group) < 20.0:
            group.append(o)
    g_lo = min(o[1] for o in group)
    g_hi = max(o[2] for o in group)
    # every static obstacle overlapping the hold region constrains the candidates
    region = [o for o in obs if o[2] > g_lo - 8.0 and o[1] < g_hi + 8.0]
    ia, ib = int(route.index(g_lo - front_m - 10)), int(route.index(g_hi + rear_m + 10)) + 1
    lane_w = float(np.median(route.width[ia:ib]))
    left_av = float(np.min(ctx.left_avail[ia:ib]))
    right_av = float(np.min(ctx.right_avail[ia:ib]))
    left_nb = float(np.min(ctx.left_same_dir[ia:ib]))
    right_nb = float(np.min(ctx.right_same_dir[ia:ib]))
    d_left = max(o[4] for o in group) + band
    d_right = min(o[3] for o in group) - band

    def free(cand):
        return all(o[4] <= cand - band + 1e-6 or o[3] >= cand + band - 1e-6 for o in region)

    cands = []  # (offset, kind, direction)
    small = 0.5 * lane_w
    for c, dr in sorted(((d_left, "left"), (d_right, "right")), key=lambda x: abs(x[0])):
        if abs(c) <= small:
            cands.append((c, "Nudge", dr))
    if left_nb > 0:
        cands.append((max(left_nb * 0.5 + 0.5 * lane_w, d_left), "Lane Change", "left"))
    if right_nb > 0:
        cands.append((min(-(right_nb * 0.5 + 0.5 * lane_w), d_right), "Lane Change", "right"))
    for c, dr in ((d_left, "left"), (d_right, "right")):
        if abs(c) > small:
            cands.append((c, "Nudge", dr))
    if any(o[0] in mover_ids for o in group):
        # overtaking a slow moving vehicle: a full lane change into a same-direction lane only
        # (never a nudge past it, never through the oncoming lane)
        cands = [cd for cd in cands if cd[1] == "Lane Change"]
    key = tuple(sorted(o[0] for o in group))
    ramp_len = float(np.clip(3.0 * v0, 12.0, 45.0))
    chosen = None
    m = mem.maneuver
    if m is not None and (set(m["key"]) & set(key) or s_e < m["b1"]) and free(m["cand"][0]):
        # continue the committed manoeuvre (the group shrinks as obstacles fall behind us)
        chosen = m["cand"]
        a0, a1 = m["a0"], m["a1"]
        key = tuple(sorted(set(m["key"]) | set(key)))
        m["key"] = key
    else:
        pending = None
        for cand in cands:
            c, kind, dr = cand
            if not free(c):
                continue
            if c > 0 and c + ego_hw > left_av + 0.05 or c < 0 and -c + ego_hw > right_av + 0.05:
                continue
            if pending is None:
                pending = cand
            dep = (g_lo - ramp_len - 1.0, g_hi + rear_m + 2.0 + ramp_len + front_m)
            if _target_gap_safe(P, c, lane_w, ego_hw, ids, is_static, sa, da, hl, v_along, dyaw, valid,
                                s_e, s_front, s_rear, v0, g_hi, hw, dep):
                chosen = cand
                break
        if chosen is None:
            if all(o[0] in mover_ids for o in group):
                return out  # no safe gap to overtake: simply follow it (Keep Distance)
            if pending is not None:
                # wait far enough back to steer around the blocker from standstill
                out.update(kind=pending[1], direction=pending[2], causal=group[0][0], pending=True,
                           stop_gap_m=_shift_length_m(pending[0]) + 1.5)
            return out
        # the offset profile is fixed in space once chosen; a late start shortens the ramp-in
        a1 = g_lo - front_m - 1.0
        a0 = a1 - ramp_len
        d0 = 0.0
        if a0 < s_e:  # late start (e.g. from standstill behind the blocker): start from here
            a0, d0 = s_e, d_e
            a1 = max(a1, s_e + _shift_length_m(chosen[0] - d_e) + 0.5 * abs(chosen[0] - d_e) * max(v0, 2.0) / 2.0)
        mem.maneuver = {"key": key, "cand": chosen, "a0": a0, "a1": a1, "d0": d0,
                        "overtake": any(o[0] in mover_ids for o in group)}
    c, kind, dr = chosen
    b0 = max(g_hi + rear_m + 2.0, mem.maneuver.get("b0", -np.inf))
    b1 = b0 + ramp_len
    mem.maneuver.update(b0=b0, b1=b1)
    out["D"] = _ramp_profile(S, a0, a1, b0, b1, c, mem.maneuver["d0"])
    out.update(kind=kind, direction=dr, causal=group[0][0], s_range=(a0, b1), overtake=mem.maneuver.get("overtake", False))
    return out


def _slow_movers(ctx, P, ids, is_static, sa, da, hl, hw, v_along, dyaw, valid, s_e, s_front, s_rear, v0) -> list:
    """Slow moving vehicles in the own lane that the ego may overtake, as Frenet boxes
    (id, lo_s, hi_s, d_lo, d_hi) whose ``hi_s`` is where the vehicle's front will be when the ego
    has passed it (so the return starts ``overtake_margin_m`` ahead of it). Privileged: "slow" is
    the vehicle's own desired speed (a slow truck, a cyclist), not a momentary braking."""
    route = ctx.route
    i_e = int(route.index(s_e))
    lim = float(route.speed_limit[i_e])
    out = []
    for a in range(len(ids)):
        if is_static[a] or not valid[a, 0]:
            continue
        beh = ctx.specs[ids[a]].behavior
        if not isinstance(beh, IdmBehavior) or beh.lane_change_events or beh.brake_events:
            continue
        va = float(v_along[a, 0])
        if va < 0.5 or beh.params.desired_speed_mps >= P.overtake_speed_ratio * lim or abs(float(dyaw[a, 0])) > 0.35:
            continue
        lo_s, hi_s = float(sa[a, 0] - hl[a, 0]), float(sa[a, 0] + hl[a, 0])
        if abs(float(da[a, 0])) > 0.5 * float(route.width[i_e]) or lo_s > s_front + P.overtake_lookahead_m:
            continue
        # when is the ego's rear bumper margin ahead of its front (ego accelerating at 1 m/s² to the limit)?
        t = np.arange(0.0, 40.0, 0.1)
        v_e = np.minimum(max(v0, 0.0) + 1.0 * t, max(lim, v0))
        d_e = np.concatenate([[0.0], np.cumsum(0.5 * (v_e[1:] + v_e[:-1]) * 0.1)])
        ok = s_rear + d_e >= hi_s + va * t + P.overtake_margin_m
        if not np.any(ok):
            continue
        hi_pass = hi_s + va * float(t[int(np.argmax(ok))]) + P.overtake_margin_m - 2.0
        if hi_pass < s_rear - 1.0:
            continue
        # no overtaking across a controlled junction, a turn or a merge
        if any(s_e - 5.0 <= cn.s_line <= hi_pass + 30.0 for cn in ctx.controls):
            continue
        if any(sp.kind in ("turn", "merge", "split") and sp.s0 <= hi_pass + 30.0 and sp.s1 >= s_e for sp in ctx.spans):
            continue
        out.append((ids[a], lo_s, hi_pass, float(da[a, 0] - hw[a, 0]), float(da[a, 0] + hw[a, 0])))
    return out


def _work_zone(ids, kinds, sa, da, hl, hw, valid, s_rear, lane_w, P) -> tuple[float, float] | None:
    """Route-station span [lo, hi] of a work zone ahead: at least ``work_zone_min_objects`` cones /
    barriers within a lane width of the ego lane edge, grouped with gaps < 20 m; None if none."""
    objs = []
    for a, k in enumerate(kinds):
        if k not in ("cone", "barrier") or not valid[a, 0]:
            continue
        lo, hi = float(sa[a, 0] - hl[a, 0]), float(sa[a, 0] + hl[a, 0])
        near = abs(float(da[a, 0])) - float(hw[a, 0]) < 0.5 * lane_w + 1.0
        if near and hi > s_rear - 1.0 and lo < s_rear + P.lookahead_m:
            objs.append((lo, hi))
    if len(objs) < P.work_zone_min_objects:
        return None
    objs.sort()
    lo, hi, n = objs[0][0], objs[0][1], 1
    for o in objs[1:]:
        if o[0] - hi > 20.0:
            if n >= P.work_zone_min_objects:
                break
            lo, hi, n = o[0], o[1], 1
            continue
        hi, n = max(hi, o[1]), n + 1
    return (lo, hi) if n >= P.work_zone_min_objects else None


def _dist_profile(t: np.ndarray, v0: float, v_max: float, accel: float) -> np.ndarray:
    """Distance covered by times ``t`` from ``v0`` accelerating at ``accel`` up to ``v_max``."""
    v_max = max(v_max, v0)
    t_acc = (v_max - v0) / accel if accel > 0 else 0.0
    ta = np.minimum(t, t_acc)
    return v0 * ta + 0.5 * accel * ta * ta + v_max * np.maximum(t - t_acc, 0.0)


def _target_gap_safe(P, c, lane_w, ego_hw, ids, is_static, sa, da, hl, v_along, dyaw, valid,
                     s_e, s_front, s_rear, v0, g_hi, hw=None, dep=None) -> bool:
    """MOBIL-like safety for moving traffic in the neighbour band the ego moves into: enough gap
    ahead and behind (time-to-collision), nobody alongside, no oncoming vehicle about to meet us."""
    if abs(c) + ego_hw < 0.5 * lane_w - 0.1:
        return True  # the manoeuvre stays inside the own lane
    sgn = 1.0 if c > 0 else -1.0
    far = max(abs(c), 0.5 * lane_w) + 0.5 * lane_w + 0.5
    # stretch (front-bumper stations) where the ego is out of its lane
    dep_lo, dep_hi = dep if dep is not None else (s_front, g_hi + 40.0)
    for a in range(len(ids)):
        # beyond the projection window the Frenet coordinates are extrapolated along the last
        # tangent: good enough to see far oncoming traffic on the stretch we are about to borrow
        if is_static[a] or abs(float(da[a, 0])) > 25.0 or float(sa[a, 0]) < s_e - 80.0:
            continue
        d0 = sgn * float(da[a, 0])
        if d0 < 0.5 * lane_w - 0.3 or d0 > far:
            continue  # own-lane traffic (leader logic) or beyond the target band
        va = float(v_along[a, 0])
        s_back, s_fwd = float(sa[a, 0] - hl[a, 0]), float(sa[a, 0] + hl[a, 0])
        if abs(float(dyaw[a, 0])) > np.pi / 2:
            # oncoming in the band: we must be through the obstacle zone well before it gets there,
            # unless the departure leaves it room (its near edge stays clear of our far edge)
            if hw is not None and d0 - float(hw[a, 0]) > abs(c) + ego_hw + P.oncoming_clearance_m:
                continue
            if s_fwd < s_rear - 2.0:
                continue  # already behind us
            # where do we meet it? (between a slow and a brisk estimate of our own progress) — a
            # conflict only if that stretch overlaps the stretch where we are out of our lane
            t = np.arange(0.0, 40.0, 0.1)
            fast = _dist_profile(t, v0, max(v0, 8.0), 1.0)
            slow = _dist_profile(t, 0.7 * v0, max(0.7 * v0, 4.0), 0.5)
            onc = s_back - abs(va) * t
            if s_back <= s_front:
                return False  # alongside the departure already
            k_f = int(np.argmax(s_front + fast >= onc))
            k_s = int(np.argmax(s_front + slow >= onc)) if np.any(s_front + slow >= onc) else len(t) - 1
            meet_lo, meet_hi = s_front + float(slow[k_s]) - 10.0, s_front + float(fast[k_f]) + 10.0
            if meet_lo <= dep_hi and meet_hi >= dep_lo:
                return False
            continue
        if s_back > s_front:  # ahead in the target band
            if s_back - s_front < P.lane_change_min_gap_m + max(0.0, v0 - va) * P.lane_change_ttc_s:
                return False
        elif s_fwd < s_rear:  # behind
            if s_rear - s_fwd < P.lane_change_min_gap_m + max(0.0, va - v0) * P.lane_change_ttc_s + 0.5 * va:
                return False
        else:
            return False  # alongside
    return True


# ----------------------------------------------------------------------------------------------
# Decisions (CoC vocabulary)
# ----------------------------------------------------------------------------------------------
def _lateral_leg(d_plan: np.ndarray, d_past: np.ndarray, move_m: float, done_m: float) -> str | None:
    """Direction ("left"/"right") of the lateral leg the plan drives: the first planned move of more
    than ``move_m`` from the current offset, else a leg of at least ``done_m`` finished in the
    driven last 1.5 s; None when the ego holds its offset (a finished manoeuvre keeps the lane)."""
    rel = d_plan - d_plan[0]
    k = np.flatnonzero(np.abs(rel) > move_m)
    if k.size:
        return "left" if rel[k[0]] > 0 else "right"
    shift = d_past[-1] - d_past[0] if d_past.size else 0.0
    if abs(shift) >= done_m:
        return "left" if shift > 0 else "right"
    return None


def _decide(ctx, P, lat, tags, st_s, st_a, v0, s_e, s_front, ids, specs, sa, hl, leaders, signal_info,
            stop_line_dist, ws, d_plan, d_past, yaw_end_rad) -> dict:
    """The CoC decisions (spec/alpamayo_training_data.md §6.2) of this plan. The cause comes from
    the constraint that shapes the plan; the name must also describe the plan's motion: Stop only
    if the plan comes to rest, Yield only if it gives way (slows ≥ 1 m/s or is slow), Adapt Speed
    = slowing (not stopping) for curvature / a turn / a zone / a lower limit, Resume Speed = holds
    or regains speed, Pass/Overtake = accelerates past a slow moving vehicle; lateral manoeuvres are
    named by the leg the plan (or the last 1.5 s) actually drives."""
    # the constraint that shapes the plan: first non-free binding within 2 s, else step 0
    tag = tags[0]
    for tg in tags[:20]:
        if tg[0] != "free":
            tag = tg
            break
    spec_by_id = {s.id: s for s in specs}
    causal = None

    def obj(aid, relation):
        j = ids.index(aid)
        dist = float(max(0.0, sa[j, 0] - hl[j, 0] - s_front))
        return {"id": aid, "kind": spec_by_id[aid].kind, "relation": relation, "distance_m": round(dist, 2)}

    # what the plan does, in the interval speeds its 10 Hz poses show (as a checker measures them)
    st_v = np.concatenate([[v0], np.diff(st_s) / (PLAN_DT_US * 1e-6)])
    v_min = float(np.min(st_v))
    # moving off from (near) rest: once going (> 2x the rest speed) the plan never falls back — the
    # stop is over (a sign's stop done, a light turned green, a lead pulling away), it is not a Stop
    going = np.flatnonzero(st_v > 2.0 * P.rest_speed_mps)
    moving_off = v0 < 2.0 * P.rest_speed_mps and len(going) > 0 \
        and float(np.min(st_v[going[0]:])) > 2.0 * P.rest_speed_mps
    rest = v_min < P.rest_speed_mps and not moving_off  # comes to rest (or holds) within the horizon
    slows = v_min < v0 - 0.3
    gives_way = v_min <= v0 - 1.0 or v_min < 3.0
    speeds_up = float(np.max(st_v[:31])) > v0 + 0.5  # within 3 s
    holds = float(np.max(st_v[:21])) <= v0 + 0.3  # no gain within 2 s

    def not_stopping(cause_obj=None):
        """The plan does not stop for the constraint: name the speed change it does make."""
        if slows and not speeds_up:
            if v_min < 2.0 * P.rest_speed_mps and stop_line_dist is not None:
                return "Stop", cause_obj  # creeping up to a line
            return "Adapt Speed", cause_obj
        return "Resume Speed", None

    kind0 = tag[0]
    if kind0 == "stop":  # a control: at rest, or creeping to the line at the end of the horizon
        longitudinal = "Stop" if v_min < 2.0 * P.rest_speed_mps and not moving_off else not_stopping()[0]
    elif kind0 == "yield":
        if gives_way:
            longitudinal, causal = "Yield", obj(tag[1], tag[2])
        else:
            longitudinal, causal = not_stopping(obj(tag[1], tag[2]))
    elif kind0 == "blocking":
        if lat["pending"]:
            longitudinal, causal = "Gap-search", obj(tag[1], "blocking")
        elif rest:
            longitudinal, causal = "Stop", obj(tag[1], "blocking")
        else:
            longitudinal, causal = not_stopping(obj(tag[1], "blocking"))
    elif kind0 in ("lead", "cut_in", "merging", "crossing", "oncoming"):
        aid = tag[1]
        causal = obj(aid, kind0)
        if kind0 in ("crossing", "oncoming"):
            if gives_way:
                longitudinal = "Yield"
            else:
                longitudinal, causal = not_stopping(causal)
        elif kind0 in ("cut_in", "merging") and lat["kind"] in ("Lane Change", "Nudge") or kind0 == "merging":
            longitudinal = "Gap-search"
        elif rest:
            longitudinal = "Stop"  # path blocked by the lead vehicle (spec §6.2 Stop)
        else:
            longitudinal = "Keep Distance"
    else:  # free road: the speed cap or the limit shapes the plan
        src, vdes = tag[1], tag[2]
        lower_cap = src in ("curve", "zone") or (src == "limit" and vdes < float(np.max(ctx.route.speed_limit)) - 1.0)
        overtaking = (lat["kind"] == "Lane Change" and not lat["pending"] and lat.get("overtake", False))
        if overtaking and speeds_up:
            longitudinal = "Pass/Overtake"
        elif rest:
            longitudinal = "Stop"  # e.g. the end of the mapped route
        elif v_min < 2.0 * P.rest_speed_mps:  # creeping or moving off (not resting: that is above)
            longitudinal = "Resume Speed"
        elif not speeds_up and (slows or (lower_cap and holds and v0 > vdes - 0.5 and v0 > 1.0)):
            longitudinal = "Adapt Speed"
        else:
            longitudinal = "Resume Speed"
    if lat["pending"] and longitudinal in ("Stop", "Keep Distance", "Resume Speed"):
        longitudinal = "Gap-search"

    # lateral: lane change > nudge > turn > merge > split > keep lane, named by the leg driven
    lateral, direction = "Keep Lane", None
    if lat["kind"] is not None:
        if lat["pending"]:
            lateral, direction = lat["kind"], lat["direction"]
        else:
            lc = lat["kind"] == "Lane Change"
            leg = _lateral_leg(d_plan, d_past, 0.3 if lc else 0.15, 2.0 if lc else 0.3)
            if leg is not None:
                lateral, direction = lat["kind"], leg
        if lateral != "Keep Lane" and causal is None and lat["causal"] is not None and lat["causal"] in ids:
            causal = obj(lat["causal"], "lead" if lat.get("overtake", False) else "blocking")
    else:
        look = max(20.0, 3.0 * v0)
        for kind, name in (("turn", "Turn"), ("merge", "Merge"), ("split", "Split")):
            sp = next((x for x in ctx.spans if x.kind == kind and x.s0 - look <= s_e <= x.s1), None)
            if sp is not None:
                lateral, direction = name, sp.direction
                break
        if lateral == "Turn":
            sgn = 1.0 if direction == "left" else -1.0
            i_e = int(ctx.route.index(s_e))
            turning_now = sgn * float(ctx.route.curvature[i_e]) > 0.02
            if not (sgn * yaw_end_rad > np.deg2rad(15.0) or turning_now or longitudinal in ("Stop", "Yield", "Gap-search")):
                lateral, direction = "Keep Lane", None  # the turn lies beyond what this plan drives
        if lateral == "Turn" and longitudinal == "Resume Speed" and slows and not speeds_up \
                and v_min >= 2.0 * P.rest_speed_mps:
            longitudinal = "Adapt Speed"
    signal = None
    if signal_info is not None:
        signal = {"id": signal_info["id"], "state": signal_info["state"]}
    return {
        "longitudinal": longitudinal,
        "lateral": lateral,
        "lateral_direction": direction if lateral in ("Lane Change", "Nudge", "Turn", "Merge", "Split") else None,
        "causal_object": causal,
        "signal": signal,
        "stop_line_distance_m": None if stop_line_dist is None else round(float(stop_line_dist), 2),
    }


# ----------------------------------------------------------------------------------------------
# Unprivileged fallback: route following from the observation
# ----------------------------------------------------------------------------------------------
def route_following_plan(observation: Observation, t_now_us: int, max_lat_accel_mps2: float = 2.0) -> Plan:
    """Drive along ``observation.route_rig`` at the current speed (no actors, no signals)."""
    hist = observation.ego_history
    v = float(np.linalg.norm(hist.velocity_rig_mps[-1, :2])) if len(hist) else 0.0
    wp = np.asarray(observation.route_rig, dtype=np.float64)[:, :2]
    wp = wp[np.all(np.isfinite(wp), axis=1)]
    pts = np.concatenate([[[0.0, 0.0]], wp[wp[:, 0] > 0.5] if len(wp) else np.zeros((0, 2))])
    if len(pts) < 2:
        pts = np.array([[0.0, 0.0], [100.0, 0.0]])
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    hd = np.arctan2(np.diff(pts[:, 1]), np.diff(pts[:, 0]))
    if len(hd) > 1:
        kap = np.abs(np.diff(np.unwrap(hd))) / np.maximum(np.diff(cum)[1:], 1e-3)
        v = min(v, float(np.sqrt(max_lat_accel_mps2 / max(np.max(kap), 1e-6))))
    t = PLAN_DT_US * 1e-6 * np.arange(PLAN_STEPS + 1)
    s = np.minimum(v * t, cum[-1])
    x, y = np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])
    seg = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(hd) - 1)
    yaw = np.where(s > 0.05, np.unwrap(hd)[seg], 0.0)
    yaw[0] = 0.0
    return Plan(
        t_us=t_now_us + PLAN_DT_US * np.arange(PLAN_STEPS + 1, dtype=np.int64),
        xyz_rig=np.stack([x, y, np.zeros_like(x)], axis=1), yaw_rig=yaw,
        decisions={"longitudinal": "Resume Speed", "lateral": "Keep Lane", "lateral_direction": None,
                   "causal_object": None, "signal": None, "stop_line_distance_m": None},
    )


__all__ = [
    "LONGITUDINAL_DECISIONS", "LATERAL_DECISIONS", "RELATIONS", "ExpertParams", "RoutePath", "build_route_path",
    "ExpertPolicy", "plan_from_state", "route_following_plan",
]
