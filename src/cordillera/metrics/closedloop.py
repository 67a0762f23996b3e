"""Closed-loop metrics: per-timestep scorers over a ``Rollout`` (spec/alpasim.md §4.1–4.2).

Every scorer is a pure function of (rollout, scenario, ground truth) and returns named rows of the
AlpaSim long table — ``name, timestamps_us, values, valid, time_aggregation`` — highway-env style
(a dict of named terms). ``compute_metrics`` runs them all; ``metrics_to_frame`` turns the rows into
the polars frame written as ``metrics.parquet``.

Geometry (spec §4.1): every actor is an oriented box from its (length, width) at its box-centre pose
(the ego box centre is the rig origin moved ``rear_axle_to_center_m`` along the heading), shrunk by
``vehicle_shrink_factor`` (sides × 0.98) and corner-rounded with radius
``vehicle_corner_roundness · min(side) / 2`` via ``buffer(-r).buffer(+r)``. The front / rear bumper
is the segment between the two front / rear corners of the shrunk (unrounded) box — AlpaSim clips it
to the rounded outline; the difference only matters for contacts within r of a corner. Only
visible actors take part.

Deliberate choices where the original is vague or where our world differs (each one documented at
its scorer): the "last intersecting actor" quirk of the collision classes is kept; ``wrong_lane``
wraps the yaw difference by default (AlpaSim does not; ``wrong_lane_wrap_angle=False`` restores
it); the ground truth is the reference (expert) rollout's ego centroid path, or, without a
reference, a virtual ego that moves along the scenario route at the start speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.ops import unary_union

from cordillera.sim.types import Rollout
from cordillera.world.map import RoadMap
from cordillera.world.scenario import VULNERABLE_KINDS, AgentState, Scenario

# ----------------------------------------------------------------------------------------------
# Table columns and time aggregations (spec/alpasim.md §4.4)
# ----------------------------------------------------------------------------------------------
COL_NAME = "name"
COL_TIMESTAMPS = "timestamps_us"
COL_VALUES = "values"
COL_VALID = "valid"
COL_AGGREGATION = "time_aggregation"
COL_CLIP = "clipgt_id"
COL_ROLLOUT = "rollout_id"
COL_RUN_UUID = "run_uuid"
COL_RUN_NAME = "run_name"
METRICS_COLUMNS = (
    COL_NAME, COL_TIMESTAMPS, COL_VALUES, COL_VALID, COL_AGGREGATION, COL_CLIP, COL_ROLLOUT, COL_RUN_UUID, COL_RUN_NAME,
)

AGG_MEAN, AGG_MEDIAN, AGG_MAX, AGG_MIN, AGG_LAST = "mean", "median", "max", "min", "last"
TIME_AGGREGATIONS = (AGG_MEAN, AGG_MEDIAN, AGG_MAX, AGG_MIN, AGG_LAST)

EGO_ID = "EGO"
COMFORT_SIGNALS = ("lon_accel", "lat_accel", "jerk", "lon_jerk", "yaw_accel", "yaw_rate")
# (lower, upper), strict inequalities — spec/alpamayo_training_data.md §3.5 comfort_reward
COMFORT_BOUNDS = {
    "lon_accel": (-4.05, 2.40),  # [m/s²]
    "lat_accel": (-4.89, 4.89),  # [m/s²]
    "jerk": (-8.37, 8.37),  # [m/s³]
    "lon_jerk": (-4.13, 4.13),  # [m/s³]
    "yaw_accel": (-1.93, 1.93),  # [rad/s²]
    "yaw_rate": (-0.95, 0.95),  # [rad/s]
}


@dataclass(frozen=True)
class MetricsConfig:
    # -- geometry (spec/alpasim.md §5.1 eval defaults) --
    vehicle_shrink_factor: float = 0.02  # sides × (1 − 0.02)
    vehicle_corner_roundness: float = 0.5  # r = 0.5 · min(side) / 2
    # -- map metrics (spec §4.2 offroad.py) --
    lane_search_radius_m: float = 6.0  # trajdata get_current_lane max_dist
    road_edge_touch_m: float = 1e-3  # offroad iff polygon within this of the closest road edge
    lane_union_tolerance_m: float = 1e-4  # closes float slivers between adjacent lane polygons (ours)
    wrong_lane_yaw_rad: float = 2.0 * math.pi / 3.0
    wrong_lane_wrap_angle: bool = True  # AlpaSim compares raw yaws (False reproduces that)
    # Junction connector lanes of all directions overlap inside the junction box, so an ego
    # crossing it legally sits inside an opposing connector; only non-connector lanes count.
    wrong_lane_skip_connectors: bool = True
    # -- plans (spec §5.1 scorers) --
    min_ade_horizons_s: tuple[float, ...] = (0.5, 1.0, 2.5, 5.0)
    plan_deviation_decay: float = 0.1  # weights exp(−0.1·k)
    # -- image --
    black_camera: str = "camera_front_wide_120fov"
    black_threshold: int = 10  # all pixels <= 10
    # -- ours: traffic rules, encounters --
    stop_speed_mps: float = 0.5  # a "stop" at a stop sign: speed below this...
    stop_zone_m: float = 5.0  # ...with the front bumper within this distance before the line
    ttc_horizon_s: float = 1.5  # close encounter: time to collision below this
    vru_distance_m: float = 1.0  # close encounter: polygon distance to a pedestrian/cyclist/animal below this
    stop_rule_light_states: tuple[str, ...] = ("flashing_red", "dark")  # lights that act as a stop sign

    def __post_init__(self):
        if not 0.0 <= self.vehicle_shrink_factor < 1.0:
            raise ValueError(f"vehicle_shrink_factor must be in [0, 1), got {self.vehicle_shrink_factor}")
        if not 0.0 <= self.vehicle_corner_roundness <= 1.0:
            raise ValueError(f"vehicle_corner_roundness must be in [0, 1], got {self.vehicle_corner_roundness}")


@dataclass(frozen=True, eq=False)
class MetricRow:
    """One metric over time: the unit AlpaSim's scorers return (``MetricReturn``)."""

    name: str
    timestamps_us: np.ndarray  # (T,) int64
    values: np.ndarray  # (T,) float64
    valid: np.ndarray  # (T,) bool
    time_aggregation: str

    def __post_init__(self):
        t = np.asarray(self.timestamps_us, dtype=np.int64)
        v = np.asarray(self.values, dtype=np.float64)
        ok = np.asarray(self.valid, dtype=bool)
        if not (t.ndim == v.ndim == ok.ndim == 1 and len(t) == len(v) == len(ok)):
            raise ValueError(f"metric {self.name}: shapes disagree: t {t.shape}, values {v.shape}, valid {ok.shape}")
        if self.time_aggregation not in TIME_AGGREGATIONS:
            raise ValueError(f"metric {self.name}: unknown time aggregation {self.time_aggregation!r}")
        object.__setattr__(self, "timestamps_us", t)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "valid", ok)


MetricTable = list[MetricRow]


def _row(name: str, t_us, values, agg: str, valid=None) -> MetricRow:
    values = np.asarray(values, dtype=np.float64)
    if valid is None:
        valid = np.ones(len(values), dtype=bool)
    return MetricRow(name, np.asarray(t_us, dtype=np.int64), values, np.asarray(valid, dtype=bool), agg)


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------
def _box_corners(cx: float, cy: float, yaw: float, length_m: float, width_m: float) -> np.ndarray:
    """(4, 2) corners front-left, front-right, rear-right, rear-left."""
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = 0.5 * length_m, 0.5 * width_m
    local = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
    return np.stack([cx + c * local[:, 0] - s * local[:, 1], cy + s * local[:, 0] + c * local[:, 1]], axis=1)


@lru_cache(maxsize=256)
def _rounded_box_outline(length_m: float, width_m: float, shrink: float, roundness: float) -> np.ndarray:
    """(N, 2) outline of the shrunk, rounded box in its own frame (computed once per size)."""
    l, w = length_m * (1.0 - shrink), width_m * (1.0 - shrink)
    poly = Polygon(_box_corners(0.0, 0.0, 0.0, l, w))
    r = roundness * min(l, w) / 2.0
    if r > 0:
        poly = poly.buffer(-r).buffer(r)
    out = np.asarray(poly.exterior.coords, dtype=np.float64)
    out.setflags(write=False)
    return out


def box_polygon(cx: float, cy: float, yaw: float, length_m: float, width_m: float,
                shrink: float = 0.02, roundness: float = 0.5) -> Polygon:
    """Shrunk, corner-rounded oriented box (spec/alpasim.md §4.1) centred at (cx, cy): the outline of
    ``buffer(-r).buffer(+r)`` of the axis-aligned box, rotated and moved into place."""
    base = _rounded_box_outline(float(length_m), float(width_m), float(shrink), float(roundness))
    c, s = math.cos(yaw), math.sin(yaw)
    return Polygon(np.stack([cx + c * base[:, 0] - s * base[:, 1], cy + s * base[:, 0] + c * base[:, 1]], axis=1))


def bumper_segments(cx: float, cy: float, yaw: float, length_m: float, width_m: float,
                    shrink: float = 0.02) -> tuple[LineString, LineString]:
    """(front, rear) bumper segments between the corners of the shrunk box."""
    corners = _box_corners(cx, cy, yaw, length_m * (1.0 - shrink), width_m * (1.0 - shrink))
    return LineString(corners[[0, 1]]), LineString(corners[[3, 2]])


def ego_box_centre_xy(ego: AgentState, rear_axle_to_center_m: float) -> np.ndarray:
    return np.array([ego.x_m + rear_axle_to_center_m * math.cos(ego.yaw_rad),
                     ego.y_m + rear_axle_to_center_m * math.sin(ego.yaw_rad)])


@dataclass(frozen=True, eq=False)
class _ActorAt:
    id: str
    kind: str
    state: AgentState
    polygon: Polygon
    gap_m: float  # polygon distance to the ego


@dataclass(frozen=True, eq=False)
class _Frame:
    """All polygons of one timestep."""

    t_us: int
    ego: AgentState
    centre_xy: np.ndarray
    polygon: Polygon
    front_bumper: LineString
    rear_bumper: LineString
    actors: tuple[_ActorAt, ...]


def _frames(rollout: Rollout, scenario: Scenario, cfg: MetricsConfig) -> list[_Frame]:
    e = scenario.ego
    dims = {a.id: (a.kind, a.length_m, a.width_m) for a in scenario.actors}
    out = []
    for step in rollout.steps:
        cxy = ego_box_centre_xy(step.ego, e.rear_axle_to_center_m)
        ego_poly = box_polygon(cxy[0], cxy[1], step.ego.yaw_rad, e.length_m, e.width_m,
                               cfg.vehicle_shrink_factor, cfg.vehicle_corner_roundness)
        front, rear = bumper_segments(cxy[0], cxy[1], step.ego.yaw_rad, e.length_m, e.width_m,
                                      cfg.vehicle_shrink_factor)
        actors = []
        for aid, st in step.actors.items():
            if not st.visible:
                continue
            if aid not in dims:
                raise ValueError(f"rollout step {step.t_us}: actor {aid!r} is not in scenario {scenario.id}")
            kind, length, width = dims[aid]
            poly = box_polygon(st.x_m, st.y_m, st.yaw_rad, length, width,
                               cfg.vehicle_shrink_factor, cfg.vehicle_corner_roundness)
            actors.append((aid, kind, st, poly))
        gaps = shapely.distance(ego_poly, np.array([a[3] for a in actors], dtype=object)) if actors else []
        actors = [_ActorAt(*a, float(g)) for a, g in zip(actors, gaps)]
        out.append(_Frame(int(step.t_us), step.ego, cxy, ego_poly, front, rear, tuple(actors)))
    return out


# ----------------------------------------------------------------------------------------------
# Collisions and obstacle distance
# ----------------------------------------------------------------------------------------------
def score_collisions(frames: list[_Frame]) -> dict[str, MetricRow]:
    """collision_front / rear / lateral / any (spec §4.2 collision.py).

    An intersecting actor is *front* if it touches the ego front bumper, else *rear* if it touches
    the rear bumper, else *lateral*. As in AlpaSim's collision.py the three class flags of a
    timestep reflect only the **last** intersecting actor (scenario actor order): an ego hit in
    front by one actor and on the side by a later one reports lateral only. ``collision_any`` is
    set whenever any actor intersects."""
    t = [f.t_us for f in frames]
    front, rear, lateral = np.zeros(len(frames)), np.zeros(len(frames)), np.zeros(len(frames))
    for i, f in enumerate(frames):
        for a in f.actors:
            if not f.polygon.intersects(a.polygon):
                continue
            fr = a.polygon.intersects(f.front_bumper)
            re = (not fr) and a.polygon.intersects(f.rear_bumper)
            front[i], rear[i], lateral[i] = float(fr), float(re), float(not fr and not re)
    any_ = np.maximum.reduce([front, rear, lateral])
    return {
        "collision_front": _row("collision_front", t, front, AGG_MAX),
        "collision_rear": _row("collision_rear", t, rear, AGG_MAX),
        "collision_lateral": _row("collision_lateral", t, lateral, AGG_MAX),
        "collision_any": _row("collision_any", t, any_, AGG_MAX),
    }


def score_obstacle_distance(frames: list[_Frame]) -> dict[str, MetricRow]:
    """min_distance_to_obstacle_m: polygon distance to the nearest visible actor (invalid if none)."""
    t = [f.t_us for f in frames]
    d = np.zeros(len(frames))
    ok = np.zeros(len(frames), dtype=bool)
    for i, f in enumerate(frames):
        if f.actors:
            d[i] = min(a.gap_m for a in f.actors)
            ok[i] = True
    return {"min_distance_to_obstacle_m": _row("min_distance_to_obstacle_m", t, d, AGG_MIN, ok)}


# ----------------------------------------------------------------------------------------------
# Map: offroad, wrong lane, distance to the lane boundary
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _MapGeometry:
    lane_ids: tuple[str, ...]
    lane_polygons: tuple[Polygon, ...]
    centerlines: tuple[LineString, ...]
    centerline_tree: shapely.STRtree
    road_edges: tuple[LineString, ...]


@lru_cache(maxsize=16)
def _map_geometry(road_map: RoadMap) -> _MapGeometry:
    ids, polys, lines = [], [], []
    for lane in road_map.lanes.values():
        poly = Polygon(lane.polygon_xy())
        if not poly.is_valid:  # a tight curve can fold the inner boundary
            poly = shapely.make_valid(poly).buffer(0)
        ids.append(lane.id)
        polys.append(poly)
        lines.append(LineString(lane.centerline_xy))
    edges = tuple(LineString(e.polyline_xy) for e in road_map.road_edges)
    return _MapGeometry(tuple(ids), tuple(polys), tuple(lines), shapely.STRtree(lines), edges)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def score_map(frames: list[_Frame], road_map: RoadMap, cfg: MetricsConfig) -> dict[str, MetricRow]:
    """offroad, wrong_lane, min_distance_to_lane_boundary_m (spec §4.2 offroad.py).

    Nearby lanes = lanes whose centreline passes within 6 m of the ego centroid, any heading.
    offroad = 0 if one nearby lane polygon (left boundary + reversed right boundary) contains the
    ego polygon, or ≥ 2 nearby lanes do together; otherwise 1 iff the ego polygon is within 1 mm of
    the road-edge polyline closest to the ego centroid. As in AlpaSim an ego entirely beyond the
    kerb, not touching it, is *not* offroad, and a map without road edges never reports offroad.
    wrong_lane = some nearby lane polygon contains the ego centroid and its centreline heading at
    the projection differs from the ego yaw by more than 2π/3 (wrapped; see MetricsConfig).
    Junction connector lanes are skipped for wrong_lane (they overlap in every direction)."""
    geo = _map_geometry(road_map)
    t = [f.t_us for f in frames]
    offroad, wrong, bdist = np.zeros(len(frames)), np.zeros(len(frames)), np.zeros(len(frames))
    for i, f in enumerate(frames):
        c = Point(f.centre_xy)
        near = geo.centerline_tree.query(c, predicate="dwithin", distance=cfg.lane_search_radius_m)
        near = sorted(int(k) for k in near)
        for k in near:
            if geo.lane_polygons[k].contains(c):
                lane = road_map.lanes[geo.lane_ids[k]]
                if lane.is_intersection and cfg.wrong_lane_skip_connectors:
                    continue
                s, _ = lane.to_frenet(f.centre_xy)
                d = float(lane.heading_at(s)) - f.ego.yaw_rad
                if cfg.wrong_lane_wrap_angle:
                    d = _wrap(d)
                if abs(d) > cfg.wrong_lane_yaw_rad:
                    wrong[i] = 1.0
        union = None
        if near:
            union = unary_union([geo.lane_polygons[k].buffer(cfg.lane_union_tolerance_m) for k in near])
        contained_single = any(geo.lane_polygons[k].contains(f.polygon) for k in near)
        contained_union = len(near) > 1 and union is not None and union.contains(f.polygon)
        if union is not None and (contained_single or union.contains(f.polygon)):
            bdist[i] = union.boundary.distance(f.polygon)
        if contained_single or contained_union:
            continue
        if geo.road_edges:
            closest = min(geo.road_edges, key=lambda e: e.distance(c))
            offroad[i] = float(closest.distance(f.polygon) < cfg.road_edge_touch_m)
    return {
        "offroad": _row("offroad", t, offroad, AGG_MAX),
        "wrong_lane": _row("wrong_lane", t, wrong, AGG_MAX),
        "min_distance_to_lane_boundary_m": _row("min_distance_to_lane_boundary_m", t, bdist, AGG_MIN),
    }


# ----------------------------------------------------------------------------------------------
# Ground truth: progress and distances (spec §4.2 ground_truth.py)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The GT ego path: rig origin and box centroid in local over time."""

    t_us: np.ndarray  # (N,) int64, increasing
    rig_xy: np.ndarray  # (N, 2)
    centre_xy: np.ndarray  # (N, 2)
    source: str  # "reference" | "route"

    def centre_at(self, t_us) -> np.ndarray:
        t = np.asarray(t_us, dtype=np.float64)
        return np.stack([np.interp(t, self.t_us, self.centre_xy[:, 0]), np.interp(t, self.t_us, self.centre_xy[:, 1])], -1)

    def rig_at(self, t_us) -> np.ndarray:
        t = np.asarray(t_us, dtype=np.float64)
        return np.stack([np.interp(t, self.t_us, self.rig_xy[:, 0]), np.interp(t, self.t_us, self.rig_xy[:, 1])], -1)


def ground_truth(scenario: Scenario, reference: Rollout | None, t_us: np.ndarray) -> GroundTruth:
    """GT from the reference (expert) rollout, or — without one — a virtual ego that starts at the
    ego start, moves along the scenario route polyline at the start speed and stops at the route's
    end (the same rule the runtime uses for force-GT without a reference). In the latter case the
    "full GT polyline" is that virtual ego's path over the rollout's time span, not the whole route."""
    rac = scenario.ego.rear_axle_to_center_m
    if reference is not None and not reference.failed and len(reference.steps) >= 2:
        xyy = reference.ego_xy_yaw()
        rig = xyy[:, :2]
        centre = rig + rac * np.stack([np.cos(xyy[:, 2]), np.sin(xyy[:, 2])], -1)
        return GroundTruth(reference.t_us(), rig, centre, "reference")
    route = LineString(scenario.route_polyline_xy())
    t = np.asarray(t_us, dtype=np.int64)
    if len(t) == 0:
        raise ValueError("cannot build a route ground truth for an empty rollout")
    s0 = route.project(Point(scenario.ego.x_m, scenario.ego.y_m))
    s = np.clip(s0 + scenario.ego.speed_mps * (t - t[0]) / 1e6, 0.0, route.length)
    rig = np.array([route.interpolate(v).coords[0] for v in s])
    ahead = np.array([route.interpolate(min(v + 0.5, route.length)).coords[0] for v in s])
    behind = np.array([route.interpolate(max(v - 0.5, 0.0)).coords[0] for v in s])
    d = ahead - behind
    yaw = np.arctan2(d[:, 1], d[:, 0])
    centre = rig + rac * np.stack([np.cos(yaw), np.sin(yaw)], -1)
    return GroundTruth(t, rig, centre, "route")


def _linestring(xy: np.ndarray) -> LineString | None:
    keep = np.concatenate([[True], np.linalg.norm(np.diff(xy, axis=0), axis=1) > 1e-9])
    pts = xy[keep]
    return LineString(pts) if len(pts) >= 2 else None


def _project(line: LineString | None, p: Point, normalized: bool) -> float:
    if line is None or line.length <= 1e-9:
        return 1.0 if normalized else 0.0  # nothing to progress along
    return float(line.project(p, normalized=normalized))


def score_ground_truth(frames: list[_Frame], gt: GroundTruth) -> dict[str, MetricRow]:
    """progress, progress_rel_to_total, progress_rel, dist_to_gt_trajectory, dist_to_gt_location,
    dist_traveled_m, gt_dist_traveled_m.

    As in AlpaSim the first two timestamps are set heuristically (progress interpolated from 0,
    progress_rel 1.0, distances 0) and ``progress_rel_to_total`` rescales progress by the GT length
    reachable by the last rollout timestamp (≈ 1 when the GT covers the rollout's time span). A GT
    that never moves gives progress 1.0 (there is nothing to progress along)."""
    t = np.array([f.t_us for f in frames], dtype=np.int64)
    n = len(frames)
    full = _linestring(gt.centre_xy)
    gt_len = 0.0 if full is None else float(full.length)
    ego_path = _linestring(np.array([f.centre_xy for f in frames])) if n >= 2 else None
    progress_full: list[float] = []
    progress_cur = [1.0, 1.0][:n]
    d_traj, d_loc, travelled = [0.0, 0.0][:n], [0.0, 0.0][:n], [0.0, 0.0][:n]
    for i in range(2, n):
        c = Point(frames[i].centre_xy)
        progress_full.append(_project(full, c, True))
        cur = _linestring(gt.centre_at(t[: i + 1]))
        progress_cur.append(_project(cur, c, True))
        travelled.append(_project(ego_path, c, False))
        d_loc.append(float(np.linalg.norm(gt.centre_at(t[i]) - frames[i].centre_xy)))
        d_traj.append(float(full.distance(c)) if full is not None else float(np.linalg.norm(gt.centre_xy[0] - frames[i].centre_xy)))
    if progress_full:
        progress_full = list(np.linspace(0.0, progress_full[0], 3)[:2]) + progress_full
    else:
        progress_full = [0.0] * n
    scale = 1.0
    if n and full is not None and gt_len > 0:
        reach = float(full.project(Point(gt.centre_at(t[-1]))))
        if reach > 0:
            scale = gt_len / reach
    rows = {
        "progress": (progress_full, AGG_LAST),
        "progress_rel_to_total": ([p * scale for p in progress_full], AGG_LAST),
        "progress_rel": (progress_cur, AGG_MIN),
        "dist_to_gt_trajectory": (d_traj, AGG_MAX),
        "dist_to_gt_location": (d_loc, AGG_MAX),
        "dist_traveled_m": (travelled, AGG_LAST),
        "gt_dist_traveled_m": ([gt_len] * n, AGG_LAST),
    }
    return {k: _row(k, t, v, agg) for k, (v, agg) in rows.items()}


# ----------------------------------------------------------------------------------------------
# Plans: deviation between consecutive plans, minADE of sampled alternatives
# ----------------------------------------------------------------------------------------------
def _plan_to_local(xy_rig: np.ndarray, ego: AgentState) -> np.ndarray:
    c, s = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    return np.stack([ego.x_m + c * xy_rig[:, 0] - s * xy_rig[:, 1], ego.y_m + s * xy_rig[:, 0] + c * xy_rig[:, 1]], -1)


def _interp_xy(t_src: np.ndarray, xy: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(t, t_src, xy[:, 0]), np.interp(t, t_src, xy[:, 1])], -1)


def score_plan_deviation(rollout: Rollout, cfg: MetricsConfig) -> dict[str, MetricRow]:
    """plan_deviation (spec §4.2 plan_deviation.py): for consecutive plans, the XY distance between
    the current plan (in local, from the ego pose it was planned at) and the previous plan linearly
    interpolated at the current plan's timestamps after its first pose that are ≤ the previous
    plan's last timestamp, averaged with weights exp(−0.1·k), k = 0, 1, ... Skipped without
    overlap. Timestamped at the current plan's t_now."""
    ts, vals = [], []
    prev = None
    for step in rollout.steps:
        p = step.plan
        if p is None or p.warming_up:
            continue
        t = np.asarray(p.t_us, dtype=np.int64)
        xy = _plan_to_local(np.asarray(p.xyz_rig, dtype=np.float64)[:, :2], step.ego)
        if prev is not None:
            pt, pxy = prev
            mask = (t > t[0]) & (t <= pt[-1])
            if mask.any():
                d = np.linalg.norm(xy[mask] - _interp_xy(pt, pxy, t[mask]), axis=1)
                w = np.exp(-cfg.plan_deviation_decay * np.arange(len(d)))
                ts.append(int(step.t_us))
                vals.append(float(np.sum(w * d) / np.sum(w)))
        prev = (t, xy)
    if not ts:
        return {}
    return {"plan_deviation": _row("plan_deviation", ts, vals, AGG_MEAN)}


def _horizon_name(h_s: float) -> str:
    return f"min_ade@{h_s:.1f}s(gt)"


def score_min_ade(rollout: Rollout, gt: GroundTruth, cfg: MetricsConfig) -> dict[str, MetricRow]:
    """min_ade@{h}s(gt): per plan with sampled alternatives, the minimum over alternatives of the
    mean XY error (rig origin, local frame) to the GT over (t_now, t_now + h]. Emitted only when
    some plan carries alternatives; a step is invalid when the GT does not cover the horizon."""
    steps = [s for s in rollout.steps if s.plan is not None and not s.plan.warming_up and s.plan.alternatives]
    if not steps:
        return {}
    out = {}
    for h in cfg.min_ade_horizons_s:
        ts, vals, ok = [], [], []
        for step in steps:
            p = step.plan
            t = np.asarray(p.t_us, dtype=np.int64)
            mask = (t > step.t_us) & (t <= step.t_us + int(round(h * 1e6)))
            good = mask.any() and t[mask][-1] <= gt.t_us[-1] and t[mask][-1] - step.t_us >= int(round(h * 1e6)) - 1
            ts.append(int(step.t_us))
            if not good:
                vals.append(0.0)
                ok.append(False)
                continue
            target = gt.rig_at(t[mask])
            ades = [float(np.mean(np.linalg.norm(_plan_to_local(np.asarray(xyz)[mask, :2], step.ego) - target, axis=1)))
                    for xyz, _yaw in p.alternatives]
            vals.append(min(ades))
            ok.append(True)
        name = _horizon_name(h)
        out[name] = _row(name, ts, vals, AGG_MEAN, ok)
    return out


# ----------------------------------------------------------------------------------------------
# Bookkeeping: eval_relevant, img_is_black
# ----------------------------------------------------------------------------------------------
def score_eval_relevant(rollout: Rollout) -> dict[str, MetricRow]:
    """eval_relevant = 1 from the end of the force-GT warm-up on (spec §4.2)."""
    t = rollout.t_us()
    return {"eval_relevant": _row("eval_relevant", t, (t >= rollout.force_gt_end_us).astype(float), AGG_MAX)}


def score_img_is_black(rollout: Rollout, cfg: MetricsConfig) -> dict[str, MetricRow]:
    """img_is_black: every pixel ≤ 10 in the front-wide frame; invalid where no frame was kept."""
    t = rollout.t_us()
    vals, ok = np.zeros(len(t)), np.zeros(len(t), dtype=bool)
    for i, step in enumerate(rollout.steps):
        frame = (step.frames or {}).get(cfg.black_camera)
        if frame is not None:
            vals[i] = float(np.all(np.asarray(frame.image) <= cfg.black_threshold))
            ok[i] = True
    return {"img_is_black": _row("img_is_black", t, vals, AGG_MAX, ok)}


# ----------------------------------------------------------------------------------------------
# Ours: traffic rules
# ----------------------------------------------------------------------------------------------
def _front_point(ego: AgentState, scenario: Scenario) -> np.ndarray:
    off = scenario.ego.rear_axle_to_center_m + 0.5 * scenario.ego.length_m
    return np.array([ego.x_m + off * math.cos(ego.yaw_rad), ego.y_m + off * math.sin(ego.yaw_rad)])


def score_traffic_rules(rollout: Rollout, scenario: Scenario, cfg: MetricsConfig) -> dict[str, MetricRow]:
    """red_light_violation and stop_sign_violation (ours; not in AlpaSim).

    A *crossing* of stop line L at step i: the ego front-bumper midpoint is strictly before L (arc
    length along L's lane) at step i−1 and on or past it at step i, passing within L's segment, while
    the ego heads along the lane (yaw within ±90° of the lane heading at the line). red_light_violation = 1 at a crossing when a light governing L (its
    ``stop_line_id``) showed ``red`` at step i−1, the last instant the ego could still stop; yellow,
    flashing and dark states are not red-light violations. stop_sign_violation = 1 at a crossing of
    a line that acts as a stop (a ``stop`` sign governing L's lane, or a governing light in
    ``flashing_red`` or ``dark`` — an all-way stop) unless at some earlier step the ego was slower
    than 0.5 m/s with its front bumper within 5 m before the line."""
    t = rollout.t_us()
    red, stop = np.zeros(len(t)), np.zeros(len(t))
    rm = scenario.map
    if not rm.stop_lines or len(t) < 2:
        return {"red_light_violation": _row("red_light_violation", t, red, AGG_MAX),
                "stop_sign_violation": _row("stop_sign_violation", t, stop, AGG_MAX)}
    front = np.array([_front_point(s.ego, scenario) for s in rollout.steps])
    speed = rollout.ego_speed_mps()
    lights_by_line: dict[str, list[str]] = {}
    for tl in scenario.traffic_lights:
        if tl.stop_line_id is not None:
            lights_by_line.setdefault(tl.stop_line_id, []).append(tl.id)
    stop_sign_lanes = {lid for sg in rm.signs if sg.kind == "stop" for lid in sg.lane_ids}
    for sl in rm.stop_lines:
        lane = rm.lane(sl.lane_id)
        half_len = 0.5 * float(np.linalg.norm(sl.segment_xy[1] - sl.segment_xy[0]))
        lane_yaw = float(lane.heading_at(sl.s_m))
        s_front, r_front = lane.to_frenet(front)
        near_before = (s_front >= sl.s_m - cfg.stop_zone_m) & (s_front <= sl.s_m) & (np.abs(r_front) <= 0.5 * lane.width_m + 1.0)
        stopped = near_before & (speed < cfg.stop_speed_mps)
        for i in range(1, len(t)):
            # half-open: strictly before the line at i−1, on or past it at i (counted once)
            if not (s_front[i - 1] < sl.s_m <= s_front[i]):
                continue
            u = (sl.s_m - s_front[i - 1]) / (s_front[i] - s_front[i - 1])
            if abs(r_front[i - 1] + u * (r_front[i] - r_front[i - 1])) > half_len:
                continue  # passed beside the line (another lane, another road)
            if abs(_wrap(rollout.steps[i].ego.yaw_rad - lane_yaw)) > math.pi / 2:
                continue
            states = [rollout.steps[i - 1].signals.get(lid, "dark") for lid in lights_by_line.get(sl.id, [])]
            if "red" in states:
                red[i] = 1.0
            acts_as_stop = sl.lane_id in stop_sign_lanes or any(s in cfg.stop_rule_light_states for s in states)
            if acts_as_stop and not stopped[:i].any():
                stop[i] = 1.0
    return {"red_light_violation": _row("red_light_violation", t, red, AGG_MAX),
            "stop_sign_violation": _row("stop_sign_violation", t, stop, AGG_MAX)}


# ----------------------------------------------------------------------------------------------
# Ours: close encounters (time to collision, vulnerable road users)
# ----------------------------------------------------------------------------------------------
def _velocity(st: AgentState) -> np.ndarray:
    return st.speed_mps * np.array([math.cos(st.yaw_rad), math.sin(st.yaw_rad)])


def time_to_collision_s(ego_poly: Polygon, ego_v: np.ndarray, other: Polygon, other_v: np.ndarray,
                        horizon_s: float, tol_s: float = 1e-3) -> float | None:
    """First time in [0, horizon] at which two convex polygons moving at constant velocities touch,
    or None. The swept area of a convex polygon under translation is the convex hull of its start
    and end copies, so "collides within T" is one intersection test; the time is then bisected."""
    rel = np.asarray(other_v, dtype=np.float64) - np.asarray(ego_v, dtype=np.float64)
    if ego_poly.intersects(other):
        return 0.0

    coords = np.asarray(other.exterior.coords, dtype=np.float64)

    def hits(T: float) -> bool:
        swept = shapely.convex_hull(shapely.multipoints(np.vstack([coords, coords + rel * T])))
        return ego_poly.intersects(swept)

    if np.linalg.norm(rel) < 1e-9 or not hits(horizon_s):
        return None
    lo, hi = 0.0, horizon_s
    while hi - lo > tol_s:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if hits(mid) else (mid, hi)
    return hi


def score_close_encounters(frames: list[_Frame], cfg: MetricsConfig) -> dict[str, MetricRow]:
    """close_encounter (ours) = 1 when the time to collision with any visible actor, both keeping
    their current headings and speeds, is below 1.5 s (0 when already overlapping), or when a
    pedestrian / cyclist / animal is closer than 1 m. min_time_to_collision_s reports the TTC where
    one exists within the horizon (invalid elsewhere)."""
    t = [f.t_us for f in frames]
    enc, ttc, ttc_ok = np.zeros(len(frames)), np.zeros(len(frames)), np.zeros(len(frames), dtype=bool)
    for i, f in enumerate(frames):
        ev = _velocity(f.ego)
        best = None
        for a in f.actors:
            gap = a.gap_m
            if a.kind in VULNERABLE_KINDS and gap < cfg.vru_distance_m:
                enc[i] = 1.0
            av = _velocity(a.state)
            if gap > np.linalg.norm(av - ev) * cfg.ttc_horizon_s + 1e-6:
                continue  # cannot close the gap within the horizon
            tc = time_to_collision_s(f.polygon, ev, a.polygon, av, cfg.ttc_horizon_s)
            if tc is not None and (best is None or tc < best):
                best = tc
        if best is not None:
            ttc[i], ttc_ok[i] = best, True
            if best < cfg.ttc_horizon_s:
                enc[i] = 1.0
    return {"close_encounter": _row("close_encounter", t, enc, AGG_MAX),
            "min_time_to_collision_s": _row("min_time_to_collision_s", t, ttc, AGG_MIN, ttc_ok)}


# ----------------------------------------------------------------------------------------------
# Ours: comfort (the six bounds of the RL comfort reward on the executed trajectory)
# ----------------------------------------------------------------------------------------------
def comfort_signals(t_us: np.ndarray, xy: np.ndarray, yaw: np.ndarray) -> dict[str, np.ndarray]:
    """The six comfort signals of spec/alpamayo_training_data.md §3.5 from executed rig poses,
    with backward differences placed at the later sample (so a value at step i uses poses ≤ i);
    NaN where not enough poses exist yet (speeds from i ≥ 1, accelerations ≥ 2, jerks ≥ 3)."""
    t = np.asarray(t_us, dtype=np.float64) / 1e6
    n = len(t)
    nan = np.full(n, np.nan)
    out = {k: nan.copy() for k in COMFORT_SIGNALS}
    if n < 2:
        return out
    dt = np.diff(t)
    if np.any(dt <= 0):
        raise ValueError("comfort_signals: timestamps must be strictly increasing")
    vx, vy = nan.copy(), nan.copy()
    vx[1:], vy[1:] = np.diff(xy[:, 0]) / dt, np.diff(xy[:, 1]) / dt
    h = np.asarray(yaw, dtype=np.float64)
    lon = vx * np.cos(h) + vy * np.sin(h)
    lat = -vx * np.sin(h) + vy * np.cos(h)
    v = np.hypot(vx, vy)
    yaw_rate = nan.copy()
    yaw_rate[1:] = np.array([_wrap(d) for d in np.diff(h)]) / dt

    def d_dt(x: np.ndarray) -> np.ndarray:
        y = nan.copy()
        y[1:] = np.diff(x) / dt
        return y

    out["lon_accel"] = d_dt(lon)
    out["lat_accel"] = d_dt(lat)
    out["jerk"] = d_dt(d_dt(v))
    out["lon_jerk"] = d_dt(d_dt(lon))
    out["yaw_accel"] = d_dt(yaw_rate)
    out["yaw_rate"] = yaw_rate
    return out


def score_comfort(rollout: Rollout, cfg: MetricsConfig) -> dict[str, MetricRow]:
    """comfort_<signal> for the six signals and ``comfort`` (their mean), ours.

    Per signal, the value at step i is 1 while every defined sample of the signal from the end of
    the force-GT warm-up up to step i lies strictly inside its bounds, and 0 from the first
    violation on (a running "all steps pass", the RL reward's rule applied to the whole closed-loop
    rollout instead of a 6.4 s plan). Aggregated with LAST, a rollout scores 1 iff the signal stayed
    in bounds until its last kept row (aggregation may cut rows after an incident)."""
    t = rollout.t_us()
    if len(t) == 0:
        return {}
    xyy = rollout.ego_xy_yaw()
    sig = comfort_signals(t, xyy[:, :2], xyy[:, 2])
    closed = t >= rollout.force_gt_end_us
    out, per = {}, []
    for k in COMFORT_SIGNALS:
        lo, hi = COMFORT_BOUNDS[k]
        x = sig[k]
        ok = np.isnan(x) | ((x > lo) & (x < hi)) | ~closed
        running = np.minimum.accumulate(ok.astype(float))
        per.append(running)
        out[f"comfort_{k}"] = _row(f"comfort_{k}", t, running, AGG_LAST)
    out["comfort"] = _row("comfort", t, np.mean(per, axis=0), AGG_LAST)
    return out


# ----------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------
def compute_metrics(rollout: Rollout, scenario: Scenario, reference: Rollout | None = None,
                    config: MetricsConfig = MetricsConfig()) -> MetricTable:
    """All per-timestep metrics of one rollout, AlpaSim's and ours, as a list of ``MetricRow``."""
    if rollout.failed:
        raise ValueError(f"rollout {rollout.rollout_id} failed ({rollout.error}); failed rollouts have no metrics")
    if rollout.scenario_id != scenario.id:
        raise ValueError(f"rollout is for scenario {rollout.scenario_id!r}, got scenario {scenario.id!r}")
    if len(rollout.steps) == 0:
        raise ValueError(f"rollout {rollout.rollout_id} has no steps")
    t = rollout.t_us()
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"rollout {rollout.rollout_id}: step timestamps are not strictly increasing")
    frames = _frames(rollout, scenario, config)
    gt = ground_truth(scenario, reference, t)
    rows: dict[str, MetricRow] = {}
    rows.update(score_collisions(frames))
    rows.update(score_map(frames, scenario.map, config))
    rows.update(score_obstacle_distance(frames))
    rows.update(score_ground_truth(frames, gt))
    rows.update(score_plan_deviation(rollout, config))
    rows.update(score_min_ade(rollout, gt, config))
    rows.update(score_eval_relevant(rollout))
    rows.update(score_img_is_black(rollout, config))
    rows.update(score_traffic_rules(rollout, scenario, config))
    rows.update(score_close_encounters(frames, config))
    rows.update(score_comfort(rollout, config))
    return list(rows.values())


def metrics_to_frame(rows: MetricTable, clipgt_id: str, rollout_id: str, run_uuid: str, run_name: str):
    """Long polars frame with the AlpaSim ``metrics.parquet`` columns, one row per metric × time."""
    import polars as pl

    n = [len(r.timestamps_us) for r in rows]
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt))
    return pl.DataFrame({
        COL_NAME: pl.Series([r.name for r, k in zip(rows, n) for _ in range(k)], dtype=pl.Utf8),
        COL_TIMESTAMPS: pl.Series(cat([r.timestamps_us for r in rows], np.int64), dtype=pl.Int64),
        COL_VALUES: pl.Series(cat([r.values for r in rows], np.float64), dtype=pl.Float64),
        COL_VALID: pl.Series(cat([r.valid for r in rows], bool), dtype=pl.Boolean),
        COL_AGGREGATION: pl.Series([r.time_aggregation for r, k in zip(rows, n) for _ in range(k)], dtype=pl.Utf8),
        COL_CLIP: pl.Series([clipgt_id] * sum(n), dtype=pl.Utf8),
        COL_ROLLOUT: pl.Series([rollout_id] * sum(n), dtype=pl.Utf8),
        COL_RUN_UUID: pl.Series([run_uuid] * sum(n), dtype=pl.Utf8),
        COL_RUN_NAME: pl.Series([run_name] * sum(n), dtype=pl.Utf8),
    })


__all__ = [
    "METRICS_COLUMNS", "TIME_AGGREGATIONS", "AGG_MEAN", "AGG_MEDIAN", "AGG_MAX", "AGG_MIN", "AGG_LAST",
    "COMFORT_SIGNALS", "COMFORT_BOUNDS", "MetricsConfig", "MetricRow", "MetricTable", "GroundTruth",
    "box_polygon", "bumper_segments", "ego_box_centre_xy", "ground_truth", "time_to_collision_s", "comfort_signals",
    "score_collisions", "score_obstacle_distance", "score_map", "score_ground_truth", "score_plan_deviation",
    "score_min_ade", "score_eval_relevant", "score_img_is_black", "score_traffic_rules", "score_close_encounters",
    "score_comfort", "compute_metrics", "metrics_to_frame",
]
