"""Non-ego traffic: IDM + MOBIL vehicles, scripted events, walkers, static objects, log replay.

After highway-env's ``behavior.py`` without its class hierarchy: the car-following and lane-change
models are pure functions over plain longitudinal states (:class:`LonState`), and
:func:`step_traffic` advances a :class:`TrafficState` in two phases — every actor decides from the
same snapshot (positions at ``t``, the ego at ``t + dt`` as AlpaSim's runtime sends it to its
traffic service, spec/alpasim.md §1.4 step 5), then all are integrated to ``t + dt``.

Conventions
- Actor poses are **box centres** in the local frame; the ego enters as its box (rig origin +
  ``rear_axle_to_center_m`` along its heading, EgoSpec length/width).
- A reactive vehicle lives on a lane: (lane id, arc length ``s_m`` of its box centre, lateral
  offset ``r_m``, left +). It follows ``route_lane_ids``; past the route (or after a lane change
  takes it off the route) it follows the first successor; past the last lane it keeps going
  straight along the lane's extension.
- Leads: the nearest visible object (vehicle, walker, static object, the EGO box) whose centre is
  ahead on the lanes the actor will drive (≤ ``LOOKAHEAD_M``) and whose box overlaps the lane
  corridor by more than ``CORRIDOR_OVERLAP_M``. Red lights (and yellow ones it can still stop for
  at ``safe_decel``), stop signs, dark and flashing-red lights (both treated as all-way stops) are
  virtual stopped leaders that make the front bumper stop ``STOP_LINE_MARGIN_M`` before the line.
- Scripts: ``BrakeEvent`` caps the acceleration at −decel until the target speed, holds that speed
  for ``hold_us``, then IDM resumes (IDM still brakes harder if it must). ``LaneChangeEvent`` and
  MOBIL move the actor to the target lane at once and blend its lateral offset to 0 with a cosine
  profile over the duration (a smooth cut-in); heading = lane heading + atan(ṙ / v).
- Walkers follow ``path_xy`` at ``speed_mps`` from ``start_us`` and stop at its end. With
  ``yield_to_ego`` they wait at the edge of the ego's lane while the ego approaches.
- Log replay interpolates a track linearly (xy, unwrapped yaw); outside the track's time range the
  actor is invisible (as AlpaSim's eval treats actors outside their trajectory range). With
  ``scenario.traffic_mode == "log"`` every actor that has a track in the reference rollout is
  replayed from it instead of being simulated (AlpaSim's default log-replay traffic).
- Actors whose ``appear_us`` is later than the time are frozen at their spec pose and invisible.
"""

from __future__ import annotations

import bisect
import math
import weakref
from dataclasses import dataclass, field, replace

import numpy as np

from cordillera.world.map import Lane
from cordillera.world.scenario import (
    ActorSpec,
    AgentState,
    IdmBehavior,
    IdmParams,
    LogBehavior,
    Scenario,
    StaticBehavior,
    WalkerBehavior,
)

__all__ = [
    "LonState",
    "gap_m",
    "desired_gap_m",
    "idm_accel_mps2",
    "mobil_should_change",
    "ActorTraffic",
    "Track",
    "TrafficState",
    "signal_states",
    "lane_frenet",
    "init_traffic",
    "step_traffic",
]

LOOKAHEAD_M = 100.0  # [m] lead / stop-line search distance along the actor's lanes
CORRIDOR_OVERLAP_M = 0.2  # [m] lateral overlap with the lane that makes an object a lead
STOP_LINE_MARGIN_M = 1.0  # [m] the front bumper stops this far before a stop line
STOP_SIGN_WAIT_US = 1_000_000  # [µs] full stop duration at a stop sign before proceeding
STOP_SIGN_STOPPED_MPS = 0.2  # [m/s] "stopped" at a stop sign
STOP_SIGN_NEAR_M = 3.0  # [m] front bumper within this of the line counts as "at the line"
MOBIL_PERIOD_US = 1_000_000  # [µs] how often a MOBIL actor reconsiders its lane
MOBIL_LANE_CHANGE_US = 3_000_000  # [µs] duration of a MOBIL lane change
MAX_DECEL_MPS2 = 9.0  # [m/s²] physical braking limit (AlpaSim accel input bound, spec §2.4)
WALKER_LOOKAHEAD_M = 1.0  # [m] a yielding walker checks this far ahead for the ego lane
WALKER_LANE_MARGIN_M = 0.3  # [m] ego lane edge + margin a yielding walker waits behind
CROSSABLE_MARKINGS = ("none", "dashed_white", "dashed_yellow")


# ----------------------------------------------------------------------------------------------
# Pure car-following and lane-change models
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LonState:
    """A vehicle on a lane, longitudinally: box-centre arc length, speed, length."""

    s_m: float
    speed_mps: float
    length_m: float = 4.6


def gap_m(ego: LonState, lead: LonState) -> float:
    """Bumper-to-bumper distance from ``ego`` to ``lead`` (negative when the boxes overlap)."""
    return lead.s_m - ego.s_m - 0.5 * (ego.length_m + lead.length_m)


def desired_gap_m(ego: LonState, lead: LonState | None, p: IdmParams) -> float:
    """IDM desired gap s* = s0 + max(0, v T + v Δv / (2 √(a b))), Δv = v − v_lead."""
    v = ego.speed_mps
    dv = v - (lead.speed_mps if lead is not None else v)
    dyn = v * p.time_headway_s + v * dv / (2.0 * math.sqrt(p.max_accel_mps2 * p.comfort_decel_mps2))
    return p.min_gap_m + max(0.0, dyn)


def idm_accel_mps2(ego: LonState, lead: LonState | None, p: IdmParams, desired_speed_mps: float | None = None) -> float:
    """IDM acceleration (Treiber 2000): a [1 − (v/v0)^δ − (s*/s)²], s the gap to ``lead``.

    Works for any vehicle given its lead, so one vehicle can predict another (MOBIL does).
    The result is limited below by the physical braking limit (−9 m/s²)."""
    v0 = p.desired_speed_mps if desired_speed_mps is None else desired_speed_mps
    v = max(ego.speed_mps, 0.0)
    free = 1.0 - (v / v0) ** p.delta if v0 > 1e-3 else -1.0
    acc = p.max_accel_mps2 * free
    if lead is not None:
        s = max(gap_m(ego, lead), 1e-2)
        acc -= p.max_accel_mps2 * (desired_gap_m(ego, lead, p) / s) ** 2
    return max(acc, -MAX_DECEL_MPS2)


def mobil_should_change(
    ego: LonState,
    old_lead: LonState | None,
    old_follower: LonState | None,
    new_lead: LonState | None,
    new_follower: LonState | None,
    p: IdmParams,
    desired_speed_mps: float | None = None,
    follower_params: IdmParams | None = None,
) -> bool:
    """MOBIL (Kesting 2007): change lanes iff it is safe, then iff it pays off.

    All states share one longitudinal coordinate (the ego's position projected onto both lanes).
    Safety: the boxes do not overlap in the target lane, and neither the ego nor the new follower
    would have to brake harder than ``p.safe_decel_mps2``.
    Incentive: ã_ego − a_ego + politeness · (ã_new_follower − a_new_follower + ã_old_follower −
    a_old_follower) > ``p.lane_change_threshold_mps2``."""
    fp = follower_params or p
    # -- safety criterion first ----------------------------------------------------------------
    if new_lead is not None and gap_m(ego, new_lead) <= 0.0:
        return False
    if new_follower is not None and gap_m(new_follower, ego) <= 0.0:
        return False
    a_ego_new = idm_accel_mps2(ego, new_lead, p, desired_speed_mps)
    if a_ego_new < -p.safe_decel_mps2:
        return False
    if new_follower is not None:
        a_nf_new = idm_accel_mps2(new_follower, ego, fp)
        if a_nf_new < -p.safe_decel_mps2:
            return False
    # -- incentive criterion -------------------------------------------------------------------
    a_ego_old = idm_accel_mps2(ego, old_lead, p, desired_speed_mps)
    gain_others = 0.0
    if new_follower is not None:
        gain_others += a_nf_new - idm_accel_mps2(new_follower, new_lead, fp)
    if old_follower is not None:
        gain_others += idm_accel_mps2(old_follower, old_lead, fp) - idm_accel_mps2(old_follower, ego, fp)
    return a_ego_new - a_ego_old + p.politeness * gain_others > p.lane_change_threshold_mps2


# ----------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActorTraffic:
    """Per-actor simulation memory (what is not visible in its AgentState)."""

    lane_id: str | None = None  # reactive vehicles: current lane
    s_m: float = 0.0  # along the lane (vehicles) or along path_xy (walkers)
    r_m: float = 0.0  # lateral offset on the lane, left +
    lc_from_r_m: float = 0.0  # lateral offset in the target lane when the lane change started
    lc_start_us: int | None = None
    lc_duration_us: int = 0
    lc_events_done: tuple[int, ...] = ()  # indices of LaneChangeEvents already started
    brake_reached_us: tuple[int | None, ...] = ()  # per BrakeEvent: when its target speed was reached
    stops_done: tuple[tuple[str, float], ...] = ()  # (lane, s) of stop signs already served
    stop_since_us: int | None = None  # standing at a stop sign since
    waiting: bool = False  # walker yielding to the ego


@dataclass(frozen=True, eq=False)
class Track:
    """A replay track: box-centre poses over time (linear interpolation, unwrapped yaw)."""

    t_us: np.ndarray  # (N,) int64, strictly increasing
    x_m: np.ndarray
    y_m: np.ndarray
    yaw_rad: np.ndarray  # unwrapped
    visible: np.ndarray  # (N,) bool

    def state_at(self, t_us: int, base: AgentState) -> AgentState:
        t = self.t_us
        if len(t) == 0 or t_us < t[0] or t_us > t[-1]:
            return replace(base, speed_mps=0.0, accel_mps2=0.0, yaw_rate_radps=0.0, visible=False)
        if len(t) == 1:
            return replace(base, x_m=float(self.x_m[0]), y_m=float(self.y_m[0]), yaw_rad=float(self.yaw_rad[0]),
                           speed_mps=0.0, visible=bool(self.visible[0]))
        i = min(int(np.searchsorted(t, t_us, side="right")) - 1, len(t) - 2)
        dt = (t[i + 1] - t[i]) * 1e-6
        u = (t_us - t[i]) / (t[i + 1] - t[i])
        x = self.x_m[i] + u * (self.x_m[i + 1] - self.x_m[i])
        y = self.y_m[i] + u * (self.y_m[i + 1] - self.y_m[i])
        yaw = self.yaw_rad[i] + u * (self.yaw_rad[i + 1] - self.yaw_rad[i])
        vx, vy = (self.x_m[i + 1] - self.x_m[i]) / dt, (self.y_m[i + 1] - self.y_m[i]) / dt
        vis = bool(self.visible[i]) if u < 1.0 else bool(self.visible[i + 1])
        return replace(base, x_m=float(x), y_m=float(y), yaw_rad=_wrap(float(yaw)), speed_mps=math.hypot(vx, vy),
                       accel_mps2=0.0, yaw_rate_radps=float(self.yaw_rad[i + 1] - self.yaw_rad[i]) / dt, visible=vis)


@dataclass(frozen=True, eq=False)
class TrafficState:
    t_us: int
    actors: dict[str, ActorTraffic]
    states: dict[str, AgentState]  # committed actor states at t_us (box centres)
    tracks: dict[str, Track] = field(default_factory=dict)  # actors replayed from a log


# ----------------------------------------------------------------------------------------------
# Cached geometry (pure functions of immutable map objects)
# ----------------------------------------------------------------------------------------------
def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def _nearest_segment(rx, ry, dx, dy, inv_l2, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Segment parameter u = clamp((p − a)·d / |d|², lo, hi) of every point-segment pair (segments
    on the last axis, ``rx, ry`` = p − a) and the index of the nearest segment (first on ties)."""
    u = rx * dx
    u += ry * dy
    u *= inv_l2
    np.maximum(u, lo, out=u)
    np.minimum(u, hi, out=u)
    ex = u * dx
    np.subtract(rx, ex, out=ex)
    ey = u * dy
    np.subtract(ry, ey, out=ey)
    ex *= ex
    ey *= ey
    ex += ey
    return u, ex.argmin(axis=-1)


class _LaneGeom:
    """Scalar fast path for a lane's position/heading (bisect on Python lists, no numpy)."""

    def __init__(self, lane: Lane):
        xy = lane.centerline_xy
        self.s = [float(v) for v in lane._s]
        self.x = [float(v) for v in xy[:, 0]]
        self.y = [float(v) for v in xy[:, 1]]
        self.h = [float(v) for v in lane._seg_heading]
        self.c = [math.cos(v) for v in self.h]
        self.sn = [math.sin(v) for v in self.h]
        self.length = self.s[-1]
        self.width = float(lane.width_m)
        # numpy arrays for batched projections (Lane.to_frenet recomputes them on every call),
        # each coordinate contiguous so that a projection is a handful of whole-array ufuncs
        self.ax = np.ascontiguousarray(xy[:-1, 0])
        self.ay = np.ascontiguousarray(xy[:-1, 1])
        d = np.diff(xy, axis=0)
        self.dx = np.ascontiguousarray(d[:, 0])
        self.dy = np.ascontiguousarray(d[:, 1])
        self.inv_l2 = 1.0 / np.einsum("ij,ij->i", d, d)
        self.s0 = np.asarray(lane._s[:-1])
        self.seg_len = np.sqrt(np.einsum("ij,ij->i", d, d))
        self.heading = np.asarray(lane._seg_heading)
        n = len(self.ax)
        # the first and last segments extend the lane beyond its ends (u unbounded there)
        self.lo = np.where(np.arange(n) == 0, -np.inf, 0.0)
        self.hi = np.where(np.arange(n) == n - 1, np.inf, 1.0)

    def frenet(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, r, segment heading) of points (M, 2); same answer as ``Lane.to_frenet``.

        All M × S point-segment pairs at once: u = clamp((p − a)·d / |d|²), nearest segment by
        the squared distance to a + u d (first on ties), then s = s0 + u |d|, r = d × (p − a) / |d|."""
        n_seg = len(self.ax)
        rx = pts[:, 0:1] - self.ax  # (M, S)
        ry = pts[:, 1:2] - self.ay
        u, k = _nearest_segment(rx, ry, self.dx, self.dy, self.inv_l2, self.lo, self.hi)
        flat = np.arange(0, len(pts) * n_seg, n_seg) + k
        dxk, dyk, seg_len = self.dx[k], self.dy[k], self.seg_len[k]
        s = self.s0[k] + u.ravel()[flat] * seg_len
        r = (dxk * ry.ravel()[flat] - dyk * rx.ravel()[flat]) / seg_len
        return s, r, self.heading[k]

    def seg(self, s: float) -> int:
        return min(max(bisect.bisect_right(self.s, s) - 1, 0), len(self.s) - 2)

    def position(self, s: float, r: float) -> tuple[float, float, float]:
        i = self.seg(s)
        ds = s - self.s[i]
        c, sn = self.c[i], self.sn[i]
        return self.x[i] + ds * c - r * sn, self.y[i] + ds * sn + r * c, self.h[i]


_GEOM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def lane_frenet(lane: Lane, xy) -> tuple[np.ndarray, np.ndarray]:
    """``Lane.to_frenet`` with the lane's segment arrays cached (for per-step queries)."""
    s, r, _ = _geom(lane).frenet(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
    return s, r


def _geoms_by_id(scenario: Scenario) -> dict[str, _LaneGeom]:
    """lane id -> geometry for every lane of the scenario's map (built once per scenario)."""
    d = _GEOM_BY_ID.get(scenario)
    if d is None:
        d = _GEOM_BY_ID[scenario] = {lid: _geom(lane) for lid, lane in scenario.map.lanes.items()}
    return d


_GEOM_BY_ID: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _geom(lane: Lane) -> _LaneGeom:
    g = _GEOM.get(lane)
    if g is None:
        g = _GEOM[lane] = _LaneGeom(lane)
    return g


class _LaneBatch:
    """Every lane of a map padded to one segment count, to project points on all lanes at once.

    A lane with fewer segments repeats its last segment: the copies are at the same distance as
    the original, and ``argmin`` takes the first, so each lane's answer is its own
    ``_LaneGeom.frenet``, bit for bit."""

    def __init__(self, geoms: dict[str, _LaneGeom], widths: dict[str, float]):
        self.ids = list(geoms)
        self.row = {lid: i for i, lid in enumerate(self.ids)}
        n_seg = max(len(g.ax) for g in geoms.values())
        self.n_seg = n_seg

        def pad(name):
            return np.stack([np.concatenate([a := getattr(g, name), np.repeat(a[-1:], n_seg - len(a))])
                             for g in geoms.values()])

        self.ax, self.ay, self.dx, self.dy = pad("ax"), pad("ay"), pad("dx"), pad("dy")
        self.inv_l2, self.lo, self.hi = pad("inv_l2")[:, None, :], pad("lo")[:, None, :], pad("hi")[:, None, :]
        self.s0, self.seg_len, self.heading = pad("s0").ravel(), pad("seg_len").ravel(), pad("heading").ravel()
        self.half_width = 0.5 * np.array([widths[lid] for lid in self.ids])[:, None]

    def frenet(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, r, segment heading), each (lanes, M), of points (M, 2): _LaneGeom.frenet per lane."""
        n_lane, n_pts, n_seg = len(self.ids), len(pts), self.n_seg
        rx = pts[None, :, 0:1] - self.ax[:, None, :]  # (L, M, S)
        ry = pts[None, :, 1:2] - self.ay[:, None, :]
        u, k = _nearest_segment(rx, ry, self.dx[:, None, :], self.dy[:, None, :], self.inv_l2, self.lo, self.hi)
        seg = (k + (np.arange(n_lane) * n_seg)[:, None]).ravel()  # into the (L, S) tables
        flat = np.arange(0, n_lane * n_pts * n_seg, n_seg) + k.ravel()  # into the (L, M, S) arrays
        dxk, dyk, seg_len = self.dx.ravel()[seg], self.dy.ravel()[seg], self.seg_len[seg]
        s = self.s0[seg] + u.ravel()[flat] * seg_len
        r = (dxk * ry.ravel()[flat] - dyk * rx.ravel()[flat]) / seg_len
        shape = (n_lane, n_pts)
        return s.reshape(shape), r.reshape(shape), self.heading[seg].reshape(shape)


BATCH_MAX_ELEMENTS = 6000  # lanes × segments × objects up to which one projection serves all lanes


def _lane_batch(scenario: Scenario) -> _LaneBatch:
    b = _BATCH.get(scenario)
    if b is None:
        b = _BATCH[scenario] = _LaneBatch(_geoms_by_id(scenario),
                                          {lid: lane.width_m for lid, lane in scenario.map.lanes.items()})
    return b


_BATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _corridor(s, r, h, half_lane_width, yaw, speed, length, width):
    """(half length along the lane, speed along the lane, overlaps the lane corridor) of objects."""
    d = yaw - h
    cd, sd = np.abs(np.cos(d)), np.abs(np.sin(d))
    half_long = 0.5 * (length * cd + width * sd)
    half_lat = 0.5 * (length * sd + width * cd)
    v_along = np.maximum(np.cos(d) * speed, 0.0)
    return half_long, v_along, np.abs(r) < half_lane_width + half_lat - CORRIDOR_OVERLAP_M


def _stop_points(scenario: Scenario) -> dict[str, list[tuple[float, str | None]]]:
    """lane id -> [(stop-line arc length, traffic light id or None for a stop sign)], sorted."""
    out = _STOPS.get(scenario)
    if out is not None:
        return out
    m = scenario.map
    out = {}
    stop_by_id = {sl.id: sl for sl in m.stop_lines}
    light_lines = set()
    for light in scenario.traffic_lights:
        sl = stop_by_id.get(light.stop_line_id) if light.stop_line_id else None
        for lid in light.lane_ids:
            if lid not in m.lanes:
                continue
            lane = m.lanes[lid]
            if sl is None:
                s = lane.length_m
            elif sl.lane_id == lid:
                s = sl.s_m
                light_lines.add(sl.id)
            else:
                s = float(lane.to_frenet(sl.segment_xy.mean(axis=0))[0])
            out.setdefault(lid, []).append((s, light.id))
    for sign in m.signs:
        if sign.kind != "stop":
            continue
        for lid in sign.lane_ids:
            if lid not in m.lanes:
                continue
            lines = [sl for sl in m.stop_lines_on(lid) if sl.id not in light_lines]
            s = lines[0].s_m if lines else m.lanes[lid].length_m
            out.setdefault(lid, []).append((s, None))
    for v in out.values():
        v.sort(key=lambda e: e[0])
    _STOPS[scenario] = out
    return out


def signal_states(scenario: Scenario, t_us: int) -> dict[str, str]:
    """Traffic light id -> state at ``t_us``."""
    return {tl.id: tl.program.state_at(t_us) for tl in scenario.traffic_lights}


def _next_lane(scenario: Scenario, lane_id: str, route: tuple[str, ...]) -> str | None:
    if lane_id in route:
        i = route.index(lane_id)
        if i + 1 < len(route):
            return route[i + 1]
    succ = scenario.map.lanes[lane_id].successors
    for s in succ:
        if s in route:
            return s
    return succ[0] if succ else None


# ----------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------
def _spec_state(a: ActorSpec, t_us: int) -> AgentState:
    return AgentState(x_m=a.x_m, y_m=a.y_m, yaw_rad=a.yaw_rad, speed_mps=a.speed_mps if not a.is_static else 0.0,
                      visible=t_us >= a.appear_us)


def _log_track(b: LogBehavior) -> Track:
    t = np.asarray(b.t_us, dtype=np.int64)
    xy = np.asarray(b.xy, dtype=np.float64).reshape(-1, 2)
    if np.any(np.diff(t) <= 0):
        raise ValueError("LogBehavior.t_us must be strictly increasing")
    return Track(t, xy[:, 0].copy(), xy[:, 1].copy(), np.unwrap(np.asarray(b.yaw_rad, dtype=np.float64)),
                 np.ones(len(t), dtype=bool))


def _reference_track(reference, actor_id: str) -> Track | None:
    rows = [(s.t_us, s.actors[actor_id]) for s in reference.steps if actor_id in s.actors]
    if len(rows) < 2:
        return None
    t = np.array([r[0] for r in rows], dtype=np.int64)
    st = [r[1] for r in rows]
    return Track(t, np.array([s.x_m for s in st]), np.array([s.y_m for s in st]),
                 np.unwrap(np.array([s.yaw_rad for s in st])), np.array([s.visible for s in st], dtype=bool))


def init_traffic(scenario: Scenario, reference=None) -> TrafficState:
    """Traffic at t = 0. ``reference`` (a Rollout) supplies replay tracks in ``traffic_mode="log"``."""
    actors, states, tracks = {}, {}, {}
    for a in scenario.actors:
        b = a.behavior
        states[a.id] = _spec_state(a, 0)
        if isinstance(b, LogBehavior):
            tracks[a.id] = _log_track(b)
        elif scenario.traffic_mode == "log" and reference is not None:
            tr = _reference_track(reference, a.id)
            if tr is not None:
                tracks[a.id] = tr
        if a.id in tracks:
            states[a.id] = tracks[a.id].state_at(0, states[a.id])
            if not a.appear_us <= 0:
                states[a.id] = replace(states[a.id], visible=False)
            actors[a.id] = ActorTraffic()
        elif isinstance(b, IdmBehavior):
            lane_id, s, r = _locate_on_route(scenario, a, b.route_lane_ids)
            actors[a.id] = ActorTraffic(lane_id=lane_id, s_m=s, r_m=r,
                                        brake_reached_us=(None,) * len(b.brake_events))
        else:
            actors[a.id] = ActorTraffic()
    return TrafficState(0, actors, states, tracks)


def _locate_on_route(scenario: Scenario, a: ActorSpec, route: tuple[str, ...]) -> tuple[str, float, float]:
    if not route:
        raise ValueError(f"actor {a.id}: IdmBehavior.route_lane_ids is empty")
    best = None
    for lid in route:
        lane = scenario.map.lane(lid)
        s, r = (float(v) for v in lane.to_frenet(np.array([a.x_m, a.y_m])))
        inside = -0.5 <= s <= lane.length_m + 0.5
        key = (not inside, abs(r))
        if best is None or key < best[0]:
            best = (key, lid, s, r)
    return best[1], best[2], best[3]


# ----------------------------------------------------------------------------------------------
# One traffic step
# ----------------------------------------------------------------------------------------------
@dataclass
class _Snapshot:
    """Every collidable object at decision time, as arrays, plus lazily cached lane projections."""

    ids: list[str]
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray
    length: np.ndarray
    width: np.ndarray
    scenario: Scenario
    xy: np.ndarray | None = None  # (N, 2) box centres, the points every lane projection uses
    _lane_objects: dict = field(default_factory=dict)
    _frenet: dict = field(default_factory=dict)
    _row: dict = field(default_factory=dict)
    _batch: tuple | None = None  # (_LaneBatch, s, r, h, half_long, v_along, inside), each (lanes, N)

    def _batched(self) -> tuple | None:
        """All lanes projected and classified at once, when the map is small enough (else None)."""
        if self._batch is None:
            lb = _lane_batch(self.scenario)
            if len(lb.ids) * lb.n_seg * len(self.ids) > BATCH_MAX_ELEMENTS:
                self._batch = ()
            else:
                s, r, h = lb.frenet(self.xy)
                self._batch = (lb, s, r, h, *_corridor(s, r, h, lb.half_width, self.yaw, self.speed, self.length,
                                                       self.width))
        return self._batch or None

    def frenet(self, lane_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, r, segment heading) of every object on ``lane_id``; once per lane and step."""
        out = self._frenet.get(lane_id)
        if out is None:
            batch = self._batched()
            if batch is not None:
                i = batch[0].row[lane_id]
                out = (batch[1][i], batch[2][i], batch[3][i])
            else:
                out = _geom(self.scenario.map.lanes[lane_id]).frenet(self.xy)
            self._frenet[lane_id] = out
        return out

    def s_on(self, lane_id: str, oid: str, xy: tuple[float, float]) -> float:
        """Arc length of object ``oid`` (at ``xy``) on ``lane_id``, from the step's projections."""
        if not self._row:
            self._row.update((k, i) for i, k in enumerate(self.ids))
        i = self._row.get(oid)
        if i is None:
            return float(lane_frenet(self.scenario.map.lanes[lane_id], xy)[0][0])
        return float(self.frenet(lane_id)[0][i])

    def lane_objects(self, lane_id: str) -> tuple[list[float], list[tuple[float, float, float, str]]]:
        """Objects overlapping ``lane_id``'s corridor, sorted by arc length: (s list, [(s, half
        length along the lane, speed along the lane, id)]). Computed once per lane and step."""
        out = self._lane_objects.get(lane_id)
        if out is None:
            batch = self._batched()
            if batch is not None:
                i = batch[0].row[lane_id]
                s, half_long, v_along, inside = batch[1][i], batch[4][i], batch[5][i], batch[6][i]
            else:
                s, r, h = self.frenet(lane_id)
                half_long, v_along, inside = _corridor(s, r, h, 0.5 * self.scenario.map.lanes[lane_id].width_m,
                                                       self.yaw, self.speed, self.length, self.width)
            s_l, hl_l, v_l, ids = s.tolist(), half_long.tolist(), v_along.tolist(), self.ids
            rows = sorted([(s_l[i], hl_l[i], v_l[i], ids[i]) for i in np.flatnonzero(inside).tolist()])
            out = self._lane_objects[lane_id] = ([row[0] for row in rows], rows)
        return out


def _snapshot(scenario: Scenario, states: dict[str, AgentState], ego: AgentState) -> _Snapshot:
    ids, rows = [], []
    for a in scenario.actors:
        st = states[a.id]
        if not st.visible:
            continue
        ids.append(a.id)
        rows.append((st.x_m, st.y_m, st.yaw_rad, st.speed_mps, a.length_m, a.width_m))
    e = scenario.ego
    c, s = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    ids.append("EGO")
    rows.append((ego.x_m + e.rear_axle_to_center_m * c, ego.y_m + e.rear_axle_to_center_m * s, ego.yaw_rad,
                 ego.speed_mps, e.length_m, e.width_m))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return _Snapshot(ids, *(arr[:, i].copy() for i in range(6)), scenario=scenario, xy=arr[:, :2].copy())


def _path_lanes(scenario: Scenario, lane_id: str, s_m: float, route: tuple[str, ...]) -> list[tuple[str, float]]:
    """[(lane id, offset of its start relative to the current lane's start)] up to LOOKAHEAD_M."""
    geoms = _geoms_by_id(scenario)
    off = geoms[lane_id].length
    out = [(lane_id, 0.0)]
    cur = lane_id
    while off - s_m < LOOKAHEAD_M:
        nxt = _next_lane(scenario, cur, route)
        if nxt is None or any(nxt == l for l, _ in out):
            break
        out.append((nxt, off))
        off += geoms[nxt].length
        cur = nxt
    return out


def _find_lead(snap: _Snapshot, path, s_self: float, exclude: set[str]) -> LonState | None:
    """Nearest object ahead on the path, as a LonState in the current lane's arc length."""
    best, best_back = None, math.inf
    geoms = _geoms_by_id(snap.scenario)
    last = len(path) - 1
    for k, (lane_id, off) in enumerate(path):
        if off - s_self - 1.0 > min(best_back, LOOKAHEAD_M):
            break  # the rest of the path is farther than what we already found
        # the last lane of the path is extended straight ahead (where the lanes run out)
        upper = math.inf if k == last else geoms[lane_id].length + 1.0
        lower = s_self - off if k == 0 else -1.0
        keys, rows = snap.lane_objects(lane_id)
        for j in range(bisect.bisect_right(keys, lower), len(rows)):
            si, half_long, v_along, oid = rows[j]
            if si > upper or off + si - s_self > LOOKAHEAD_M:
                break
            if oid in exclude:
                continue
            back = off + si - half_long
            if back < best_back:
                best_back, best = back, (off + si, v_along, half_long)
    return None if best is None else LonState(best[0], best[1], 2.0 * best[2])


def _find_follower(snap: _Snapshot, lane_id: str, s_self: float, exclude: set[str]) -> LonState | None:
    keys, rows = snap.lane_objects(lane_id)
    for si, half_long, v_along, oid in reversed(rows[: bisect.bisect_left(keys, s_self)]):
        if s_self - si > LOOKAHEAD_M:
            break
        if oid not in exclude:
            return LonState(si, v_along, 2.0 * half_long)
    return None


def _stop_lead(scenario, at: ActorTraffic, spec: ActorSpec, b: IdmBehavior, path, signals, t_us, speed):
    """Virtual stopped leader for the first stop line the actor must stop at, and the stop sign
    (lane, s) it is currently standing at (or None)."""
    p = b.params
    stops = _stop_points(scenario)
    if not stops:
        return None, None
    front = at.s_m + 0.5 * spec.length_m
    for lane_id, off in path:
        for s_stop, light_id in stops.get(lane_id, ()):
            d_front = off + s_stop - front
            if d_front < -0.5 or d_front > LOOKAHEAD_M:
                continue
            state = signals.get(light_id) if light_id is not None else "stop_sign"
            if state in ("green", "flashing_yellow"):
                continue
            if state == "yellow" and d_front < speed * speed / (2.0 * p.safe_decel_mps2):
                continue  # too close to stop comfortably: go through
            if state in ("stop_sign", "dark", "flashing_red") and (lane_id, s_stop) in at.stops_done:
                continue
            gap = d_front - STOP_LINE_MARGIN_M + p.min_gap_m
            lead = LonState(at.s_m + 0.5 * spec.length_m + gap, 0.0, 0.0)
            is_sign = state in ("stop_sign", "dark", "flashing_red")
            return lead, ((lane_id, s_stop) if is_sign and d_front < STOP_SIGN_NEAR_M else None)
    return None, None


def _decide_vehicle(scenario, spec: ActorSpec, b: IdmBehavior, at: ActorTraffic, st: AgentState, snap: _Snapshot,
                    signals, t_us: int, dt_us: int) -> tuple[float, ActorTraffic]:
    """Acceleration for the next step and the updated memory (lane changes, scripts, stops)."""
    p = b.params
    v = st.speed_mps
    exclude = {spec.id} if b.yield_to_ego else {spec.id, "EGO"}
    # -- scripted lane changes, then MOBIL ---------------------------------------------------------
    if at.lc_start_us is not None and t_us >= at.lc_start_us + at.lc_duration_us:
        at = replace(at, lc_start_us=None, lc_from_r_m=0.0, r_m=0.0)
    if at.lc_start_us is None:
        for k, ev in enumerate(b.lane_change_events):
            if k not in at.lc_events_done and t_us >= ev.t_us:
                at = _start_lane_change(scenario, at, st, ev.target_lane_id, ev.duration_us, t_us)
                at = replace(at, lc_events_done=at.lc_events_done + (k,))
                break
    if b.allow_lane_change and at.lc_start_us is None and t_us % MOBIL_PERIOD_US == 0 and t_us > 0:
        target = _mobil_target(scenario, spec, b, at, st, snap, exclude)
        if target is not None:
            at = _start_lane_change(scenario, at, st, target, MOBIL_LANE_CHANGE_US, t_us)
    # -- IDM on the lead and stop lines --------------------------------------------------------------
    path = _path_lanes(scenario, at.lane_id, at.s_m, b.route_lane_ids)
    me = LonState(at.s_m, v, spec.length_m)
    lead = _find_lead(snap, path, at.s_m, exclude)
    acc = idm_accel_mps2(me, lead, p)
    if b.obey_signals:
        stop, standing_at = _stop_lead(scenario, at, spec, b, path, signals, t_us, v)
        if stop is not None:
            acc = min(acc, idm_accel_mps2(me, stop, p))
        if standing_at is not None and v < STOP_SIGN_STOPPED_MPS:
            since = at.stop_since_us if at.stop_since_us is not None else t_us
            if t_us - since >= STOP_SIGN_WAIT_US:
                at = replace(at, stops_done=at.stops_done + (standing_at,), stop_since_us=None)
            else:
                at = replace(at, stop_since_us=since)
        elif at.stop_since_us is not None:
            at = replace(at, stop_since_us=None)
    # -- scripted braking ----------------------------------------------------------------------------
    reached = list(at.brake_reached_us)
    dt = dt_us * 1e-6
    for k, ev in enumerate(b.brake_events):
        if t_us < ev.t_us or (reached[k] is not None and t_us >= reached[k] + ev.hold_us):
            continue
        if reached[k] is None and v <= ev.target_speed_mps + 1e-3:
            reached[k] = t_us
        if reached[k] is None:
            a_script = -ev.decel_mps2
        else:
            a_script = min(max((ev.target_speed_mps - v) / dt, -ev.decel_mps2), p.max_accel_mps2)
        acc = min(acc, a_script)
    if tuple(reached) != at.brake_reached_us:
        at = replace(at, brake_reached_us=tuple(reached))
    return acc, at


def _start_lane_change(scenario, at: ActorTraffic, st: AgentState, target: str, duration_us: int, t_us: int):
    lane = scenario.map.lane(target)
    s, r = (float(v) for v in lane.to_frenet(np.array([st.x_m, st.y_m])))
    return replace(at, lane_id=target, s_m=s, r_m=r, lc_from_r_m=r, lc_start_us=t_us,
                   lc_duration_us=max(int(duration_us), 1))


def _mobil_target(scenario, spec, b: IdmBehavior, at: ActorTraffic, st: AgentState, snap: _Snapshot, exclude):
    lane = scenario.map.lanes[at.lane_id]
    p = b.params
    me = LonState(at.s_m, st.speed_mps, spec.length_m)
    old_path = _path_lanes(scenario, at.lane_id, at.s_m, b.route_lane_ids)
    old_lead = _find_lead(snap, old_path, at.s_m, exclude)
    old_follower = _find_follower(snap, at.lane_id, at.s_m, exclude)
    for side, nb, marking in (("left", lane.left_neighbor, lane.left_marking),
                              ("right", lane.right_neighbor, lane.right_marking)):
        if nb is None or marking not in CROSSABLE_MARKINGS:
            continue
        s_nb = snap.s_on(nb, spec.id, (st.x_m, st.y_m))
        new_path = _path_lanes(scenario, nb, s_nb, b.route_lane_ids)
        # self is excluded; so is the ego when not yielding (it is not simulated by MOBIL then)
        new_lead = _find_lead(snap, new_path, s_nb, exclude)
        new_follower = _find_follower(snap, nb, s_nb, exclude)
        shift = s_nb - at.s_m  # express the target lane's states in the current arc length
        nl = replace(new_lead, s_m=new_lead.s_m - shift) if new_lead else None
        nf = replace(new_follower, s_m=new_follower.s_m - shift) if new_follower else None
        if mobil_should_change(me, old_lead, old_follower, nl, nf, p):
            return nb
    return None


def _integrate_vehicle(scenario, spec: ActorSpec, b: IdmBehavior, at: ActorTraffic, st: AgentState, acc: float,
                       t_next_us: int, dt_us: int, geoms: dict[str, _LaneGeom]) -> tuple[ActorTraffic, AgentState]:
    dt = dt_us * 1e-6
    v0 = st.speed_mps
    v1 = v0 + acc * dt
    if v1 < 0.0:
        ds = 0.5 * v0 * v0 / -acc if acc < 0 else 0.0
        v1, acc = 0.0, 0.0
    else:
        ds = 0.5 * (v0 + v1) * dt
    lane_id, s = at.lane_id, at.s_m + ds
    while True:  # hand over to the next lane(s)
        g = geoms[lane_id]
        if s <= g.length:
            break
        nxt = _next_lane(scenario, lane_id, b.route_lane_ids)
        if nxt is None:
            break
        s -= g.length
        lane_id = nxt
    r, dr_dt = at.r_m, 0.0
    if at.lc_start_us is not None:
        u = min(max((t_next_us - at.lc_start_us) / at.lc_duration_us, 0.0), 1.0)
        r = at.lc_from_r_m * 0.5 * (1.0 + math.cos(math.pi * u))
        dr_dt = -at.lc_from_r_m * 0.5 * math.pi * math.sin(math.pi * u) / (at.lc_duration_us * 1e-6)
    g = geoms[lane_id]
    x, y, h = g.position(s, r)
    yaw = h + (math.atan2(dr_dt, v1) if v1 > 0.1 else 0.0)
    yaw = st.yaw_rad + _wrap(yaw - st.yaw_rad)  # continuous with the previous heading
    new_at = ActorTraffic(lane_id, s, r, at.lc_from_r_m, at.lc_start_us, at.lc_duration_us, at.lc_events_done,
                          at.brake_reached_us, at.stops_done, at.stop_since_us, at.waiting)
    new_st = AgentState(x_m=x, y_m=y, yaw_rad=_wrap(yaw), speed_mps=v1, accel_mps2=acc,
                        yaw_rate_radps=(yaw - st.yaw_rad) / dt, z_m=st.z_m, visible=True)
    return new_at, new_st


def _ego_lane(scenario: Scenario, ego: AgentState) -> tuple[str, float, float] | None:
    best = None
    for lid in scenario.ego.route_lane_ids:
        lane = scenario.map.lanes[lid]
        s, r = (float(v) for v in lane.to_frenet(np.array([ego.x_m, ego.y_m])))
        if -0.5 <= s <= lane.length_m + 0.5 and (best is None or abs(r) < abs(best[2])):
            best = (lid, s, r)
    return best


def _walker_path(b: WalkerBehavior) -> _LaneGeom:
    key = b.path_xy
    g = _WALKER_PATHS.get(key)
    if g is None:
        g = _WALKER_PATHS[key] = _LaneGeom(Lane("walker", np.asarray(b.path_xy, dtype=np.float64)))
    return g


_WALKER_PATHS: dict = {}


def _step_walker(scenario, spec: ActorSpec, b: WalkerBehavior, at: ActorTraffic, st: AgentState, ego: AgentState,
                 ego_lane, t_us: int, t_next_us: int) -> tuple[ActorTraffic, AgentState]:
    g = _walker_path(b)
    dt = (t_next_us - t_us) * 1e-6
    moving_from = max(t_us, b.start_us)
    d = at.s_m
    waiting = False
    if t_next_us > b.start_us and d < g.length:
        if b.yield_to_ego and ego_lane is not None:
            waiting = _walker_should_wait(scenario, g, d, ego, ego_lane)
        if not waiting:
            d = min(d + b.speed_mps * (t_next_us - moving_from) * 1e-6, g.length)
    x, y, h = g.position(min(d, g.length), 0.0)
    if t_next_us <= b.start_us:
        x, y, h = st.x_m, st.y_m, st.yaw_rad
    speed = (d - at.s_m) / dt if dt > 0 else 0.0
    yaw = st.yaw_rad + _wrap(h - st.yaw_rad)
    new_st = replace(st, x_m=x, y_m=y, yaw_rad=_wrap(yaw), speed_mps=speed, accel_mps2=(speed - st.speed_mps) / dt,
                     yaw_rate_radps=(yaw - st.yaw_rad) / dt, visible=t_next_us >= spec.appear_us)
    return replace(at, s_m=d, waiting=waiting), new_st


def _walker_should_wait(scenario, g: _LaneGeom, d: float, ego: AgentState, ego_lane) -> bool:
    lane_id, s_ego, _ = ego_lane
    lane = scenario.map.lanes[lane_id]
    here = g.position(d, 0.0)
    ahead = g.position(min(d + WALKER_LOOKAHEAD_M, g.length), 0.0)
    (s0, s1), (r0, r1) = lane.to_frenet(np.array([here[:2], ahead[:2]]))
    edge = 0.5 * lane.width_m + WALKER_LANE_MARGIN_M
    if abs(r0) < edge or abs(r1) >= edge:
        return False  # already on the lane (keep going) or not about to enter it
    e = scenario.ego
    ds = float(s1) - (s_ego + e.rear_axle_to_center_m + 0.5 * e.length_m)
    return ego.speed_mps > 0.5 and -1.0 < ds < max(12.0, 4.0 * ego.speed_mps)


def step_traffic(state: TrafficState, scenario: Scenario, ego_state: AgentState, t_us: int, dt_us: int
                 ) -> tuple[TrafficState, dict[str, AgentState]]:
    """Advance all non-ego actors from ``t_us`` to ``t_us + dt_us`` (pure).

    ``ego_state`` is the ego (rig origin) the actors react to — the runtime passes the ego at
    ``t + dt``, as AlpaSim sends it with the traffic request. Returns the new state and the actor
    states (box centres) at ``t + dt``."""
    if t_us != state.t_us:
        raise ValueError(f"traffic state is at t={state.t_us} µs, asked to step from t={t_us} µs")
    if dt_us <= 0:
        raise ValueError(f"dt_us must be > 0, got {dt_us}")
    t_next = t_us + dt_us
    signals = signal_states(scenario, t_us)
    snap = _snapshot(scenario, state.states, ego_state)
    # -- phase 1: every actor decides from the same snapshot ------------------------------------------
    decisions: dict[str, tuple[float, ActorTraffic]] = {}
    for spec in scenario.actors:
        b = spec.behavior
        if isinstance(b, IdmBehavior) and spec.id not in state.tracks and t_us >= spec.appear_us:
            decisions[spec.id] = _decide_vehicle(scenario, spec, b, state.actors[spec.id], state.states[spec.id],
                                                 snap, signals, t_us, dt_us)
    # -- phase 2: integrate everyone ---------------------------------------------------------------
    ego_lane = None
    geoms = _geoms_by_id(scenario)
    actors, states = {}, {}
    for spec in scenario.actors:
        b, at, st = spec.behavior, state.actors[spec.id], state.states[spec.id]
        if spec.id in state.tracks:
            new_st = state.tracks[spec.id].state_at(t_next, st)
            if t_next < spec.appear_us:
                new_st = replace(new_st, visible=False)
            actors[spec.id], states[spec.id] = at, new_st
        elif t_us < spec.appear_us:  # not there yet: frozen at the spec pose
            actors[spec.id], states[spec.id] = at, replace(st, visible=t_next >= spec.appear_us)
        elif isinstance(b, IdmBehavior):
            acc, at2 = decisions[spec.id]
            actors[spec.id], states[spec.id] = _integrate_vehicle(scenario, spec, b, at2, st, acc, t_next, dt_us,
                                                                  geoms)
        elif isinstance(b, WalkerBehavior):
            if ego_lane is None and b.yield_to_ego:
                ego_lane = _ego_lane(scenario, ego_state)
            actors[spec.id], states[spec.id] = _step_walker(scenario, spec, b, at, st, ego_state, ego_lane,
                                                            t_us, t_next)
        else:  # StaticBehavior (and anything without motion)
            assert isinstance(b, (StaticBehavior, LogBehavior))
            actors[spec.id], states[spec.id] = at, replace(st, speed_mps=0.0, accel_mps2=0.0, yaw_rate_radps=0.0,
                                                           visible=t_next >= spec.appear_us)
    return TrafficState(t_next, actors, states, state.tracks), states
