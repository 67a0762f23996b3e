"""Pure helpers that build :class:`~cordillera.world.map.RoadMap` pieces.

Everything is in the scenario ``local`` frame (x east, y north, metres) and drives on the RIGHT.
By default the ego approaches along +x. The helpers return :class:`MapParts` (plain lists of map
objects) that families merge with :func:`merge_parts` and freeze with :meth:`MapParts.build`.

Lane ids of a road built with :func:`build_road` are ``f"{prefix}_f{i}"`` for lanes driven along the
reference line and ``f"{prefix}_b{i}"`` for the opposite direction; ``i = 0`` is the lane next to the
centre line and ``i`` grows towards the kerb. At a junction arm (:func:`four_way_intersection`) the
arm's ``f`` lanes drive towards the junction centre (incoming) and its ``b`` lanes away (outgoing).

Markings follow US practice: double yellow between the two directions, dashed white between lanes
of the same direction, solid white at the outer edge, and a kerb (``RoadEdge``) ``shoulder_m``
beyond it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from cordillera.world.map import Crosswalk, Intersection, Lane, RoadEdge, RoadMap, Sign, StopLine

LANE_WIDTH_M = 3.6  # [m] typical US urban lane
SHOULDER_M = 0.6  # [m] paved strip between the outer lane line and the kerb
SIGNAL_HEIGHT_M = 5.0  # [m] height of a signal head's centre on its pole
ARMS = ("E", "N", "W", "S")  # junction arms by compass direction of the arm from the centre
ARM_ANGLE_RAD = {"E": 0.0, "N": 0.5 * math.pi, "W": math.pi, "S": -0.5 * math.pi}


# ----------------------------------------------------------------------------------------------
# Polylines
# ----------------------------------------------------------------------------------------------
def reference_line(start_xy=(0.0, 0.0), heading_rad: float = 0.0, pieces=((100.0, 0.0, 0.0),),
                   step_m: float = 2.0) -> np.ndarray:
    """A centre line from a piecewise-linear curvature profile.

    ``pieces`` = ((length_m, k_start_1pm, k_end_1pm), ...): k constant 0 is a straight, k constant
    is a circular arc, k varying linearly is a clothoid (spiral). Curvature > 0 turns left.
    Returns (N, 2) points spaced ``<= step_m`` apart, exact start, end at the integrated end."""
    pieces = [(float(L), float(k0), float(k1)) for L, k0, k1 in pieces]
    if not pieces or any(L <= 0 for L, _, _ in pieces):
        raise ValueError(f"reference_line pieces need positive lengths, got {pieces}")
    if step_m <= 0:
        raise ValueError(f"step_m must be > 0, got {step_m}")
    total = sum(L for L, _, _ in pieces)
    n_out = max(1, int(math.ceil(total / step_m)))
    sub = 8  # fine integration steps per output step
    s = np.linspace(0.0, total, n_out * sub + 1)
    edges = np.cumsum([0.0] + [L for L, _, _ in pieces])
    k = np.empty_like(s)
    for (L, k0, k1), a in zip(pieces, edges[:-1]):
        m = (s >= a - 1e-9) & (s <= a + L + 1e-9)
        k[m] = k0 + (k1 - k0) * (s[m] - a) / L
    ds = np.diff(s)
    theta = heading_rad + np.concatenate([[0.0], np.cumsum(0.5 * (k[1:] + k[:-1]) * ds)])
    th_mid = 0.5 * (theta[1:] + theta[:-1])
    x = start_xy[0] + np.concatenate([[0.0], np.cumsum(np.cos(th_mid) * ds)])
    y = start_xy[1] + np.concatenate([[0.0], np.cumsum(np.sin(th_mid) * ds)])
    return np.stack([x, y], axis=1)[::sub].copy()


def straight_line(start_xy, end_xy, step_m: float = 2.0) -> np.ndarray:
    a, b = np.asarray(start_xy, float), np.asarray(end_xy, float)
    n = max(1, int(math.ceil(np.linalg.norm(b - a) / step_m)))
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    return a + t * (b - a)


def offset_polyline(xy, offset_m: float) -> np.ndarray:
    """Shift a polyline sideways by ``offset_m`` (left of its direction +), vertex by vertex along
    the bisector normal, scaled so each offset segment stays ``offset_m`` from the original."""
    p = np.asarray(xy, dtype=np.float64)
    d = np.diff(p, axis=0)
    t_seg = d / np.linalg.norm(d, axis=1, keepdims=True)
    t = np.concatenate([t_seg[:1], t_seg[:-1] + t_seg[1:], t_seg[-1:]])
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    n = np.stack([-t[:, 1], t[:, 0]], axis=1)
    # cos of the half angle between bisector and each adjacent segment normal
    cos_half = np.ones(len(p))
    cos_half[1:-1] = np.clip(np.sum(t[1:-1] * t_seg[:-1], axis=1), 0.3, 1.0)
    return p + (offset_m / cos_half)[:, None] * n


def bezier_connector(p0, heading0_rad: float, p1, heading1_rad: float, step_m: float = 1.0) -> np.ndarray:
    """Cubic Bézier from ``p0`` (leaving along heading0) to ``p1`` (arriving along heading1); for a
    90° turn the control length 0.39 × chord makes it within ~0.03 % of a circular arc."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    chord = float(np.linalg.norm(p1 - p0))
    if chord < 1e-6:
        raise ValueError("bezier_connector: start and end coincide")
    turn = abs(math.remainder(heading1_rad - heading0_rad, 2 * math.pi))
    c = chord * (0.39 if turn > 0.3 else 0.33)
    c0 = p0 + c * np.array([math.cos(heading0_rad), math.sin(heading0_rad)])
    c1 = p1 - c * np.array([math.cos(heading1_rad), math.sin(heading1_rad)])
    n = max(4, int(math.ceil(1.3 * chord / step_m)))
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c0 + 3 * (1 - t) * t**2 * c1 + t**3 * p1


def resample_polyline(xy, step_m: float) -> np.ndarray:
    p = np.asarray(xy, dtype=np.float64)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    n = max(1, int(math.ceil(s[-1] / step_m)))
    si = np.linspace(0.0, s[-1], n + 1)
    return np.stack([np.interp(si, s, p[:, 0]), np.interp(si, s, p[:, 1])], axis=1)


# ----------------------------------------------------------------------------------------------
# Parts
# ----------------------------------------------------------------------------------------------
@dataclass
class MapParts:
    """Map objects being assembled (mutable on purpose: families add to it, then build once)."""

    lanes: dict[str, Lane] = field(default_factory=dict)
    crosswalks: list[Crosswalk] = field(default_factory=list)
    stop_lines: list[StopLine] = field(default_factory=list)
    road_edges: list[RoadEdge] = field(default_factory=list)
    intersections: list[Intersection] = field(default_factory=list)
    signs: list[Sign] = field(default_factory=list)

    def build(self) -> RoadMap:
        return RoadMap(
            lanes=dict(self.lanes),
            crosswalks=tuple(self.crosswalks),
            stop_lines=tuple(self.stop_lines),
            road_edges=tuple(self.road_edges),
            intersections=tuple(self.intersections),
            signs=tuple(self.signs),
        )


def merge_parts(*parts: MapParts) -> MapParts:
    out = MapParts()
    for p in parts:
        dup = set(out.lanes) & set(p.lanes)
        if dup:
            raise ValueError(f"merge_parts: duplicate lane ids {sorted(dup)}")
        out.lanes.update(p.lanes)
        out.crosswalks += p.crosswalks
        out.stop_lines += p.stop_lines
        out.road_edges += p.road_edges
        out.intersections += p.intersections
        out.signs += p.signs
    return out


def link(lanes: dict[str, Lane], from_id: str, to_id: str) -> None:
    """Make ``to_id`` a successor of ``from_id`` (and the reverse predecessor), in place."""
    a, b = lanes[from_id], lanes[to_id]
    if to_id not in a.successors:
        lanes[from_id] = replace(a, successors=a.successors + (to_id,))
    if from_id not in b.predecessors:
        lanes[to_id] = replace(b, predecessors=b.predecessors + (from_id,))


@dataclass(frozen=True)
class Road:
    """Result of :func:`build_road`: the parts plus the lane ids (inner → kerb) per direction."""

    parts: MapParts
    fwd_ids: tuple[str, ...]
    bwd_ids: tuple[str, ...]
    ref_xy: np.ndarray


def build_road(ref_xy, n_fwd: int = 1, n_bwd: int = 1, prefix: str = "R", lane_width_m: float = LANE_WIDTH_M,
               speed_limit_mps: float = 13.9, shoulder_m: float = SHOULDER_M, right_shoulder_m: float | None = None,
               edges: bool = True) -> Road:
    """A straight or curved road along ``ref_xy`` (the centre line between the two directions).

    ``n_fwd`` lanes are driven along ``ref_xy`` on its right, ``n_bwd`` against it on its left. A
    one-way road (``n_bwd = 0``) has its left kerb on the reference line. ``right_shoulder_m``
    widens the kerb-side strip of the forward direction (parking / sidewalk clearance)."""
    ref = np.asarray(ref_xy, dtype=np.float64)
    if n_fwd < 1 or n_bwd < 0:
        raise ValueError(f"build_road needs n_fwd >= 1 and n_bwd >= 0, got {n_fwd}, {n_bwd}")
    w = lane_width_m
    parts = MapParts()
    fwd_ids = tuple(f"{prefix}_f{i}" for i in range(n_fwd))
    bwd_ids = tuple(f"{prefix}_b{i}" for i in range(n_bwd))
    inner_marking = "double_yellow" if n_bwd else "road_edge"
    for i, lid in enumerate(fwd_ids):
        parts.lanes[lid] = Lane(
            id=lid,
            centerline_xy=offset_polyline(ref, -(i + 0.5) * w),
            width_m=w,
            speed_limit_mps=speed_limit_mps,
            left_marking=inner_marking if i == 0 else "dashed_white",
            right_marking="solid_white" if i == n_fwd - 1 else "dashed_white",
            left_neighbor=fwd_ids[i - 1] if i > 0 else None,
            right_neighbor=fwd_ids[i + 1] if i < n_fwd - 1 else None,
        )
    for i, lid in enumerate(bwd_ids):
        parts.lanes[lid] = Lane(
            id=lid,
            centerline_xy=offset_polyline(ref, (i + 0.5) * w)[::-1].copy(),
            width_m=w,
            speed_limit_mps=speed_limit_mps,
            left_marking="double_yellow" if i == 0 else "dashed_white",
            right_marking="solid_white" if i == n_bwd - 1 else "dashed_white",
            left_neighbor=bwd_ids[i - 1] if i > 0 else None,
            right_neighbor=bwd_ids[i + 1] if i < n_bwd - 1 else None,
        )
    if edges:
        rs = shoulder_m if right_shoulder_m is None else right_shoulder_m
        parts.road_edges.append(RoadEdge(f"{prefix}_edge_r", offset_polyline(ref, -(n_fwd * w + rs))))
        left_off = n_bwd * w + shoulder_m if n_bwd else 0.0
        parts.road_edges.append(RoadEdge(f"{prefix}_edge_l", offset_polyline(ref, left_off)))
    return Road(parts, fwd_ids, bwd_ids, ref)


def chain_roads(*roads: Road) -> MapParts:
    """Merge consecutive road sections (each starting where the previous ends) and link lane i of
    each direction to lane i of the next section (backward lanes in reverse order)."""
    parts = merge_parts(*(r.parts for r in roads))
    for a, b in zip(roads[:-1], roads[1:]):
        for fa, fb in zip(a.fwd_ids, b.fwd_ids):
            link(parts.lanes, fa, fb)
        for ba, bb in zip(a.bwd_ids, b.bwd_ids):
            link(parts.lanes, bb, ba)
    return parts


def roadside_sign(sign_id: str, kind: str, lane: Lane, s_m: float, value: float | None = None,
                  lateral_m: float | None = None, lane_ids: tuple[str, ...] = (), height_m: float = 2.2) -> Sign:
    """A sign on the right of ``lane`` at arc length ``s_m`` facing the lane's traffic.
    ``lateral_m`` is the distance right of the lane centre (default: beyond the kerb)."""
    lat = 0.5 * lane.width_m + SHOULDER_M + 1.2 if lateral_m is None else lateral_m
    x, y = lane.position(s_m, -lat)
    return Sign(sign_id, kind, float(x), float(y), float(lane.heading_at(s_m)) + math.pi, value,
                lane_ids or (lane.id,), height_m)


def speed_limit_sign(sign_id: str, lane: Lane, s_m: float, limit_kmh: float, lateral_m: float | None = None) -> Sign:
    return roadside_sign(sign_id, "speed_limit", lane, s_m, value=float(limit_kmh), lateral_m=lateral_m)


def kmh(v_kmh: float) -> float:
    return v_kmh / 3.6


# ----------------------------------------------------------------------------------------------
# Four-way junction
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Junction:
    """Result of :func:`four_way_intersection`.

    ``incoming[arm]`` / ``outgoing[arm]``: lane ids inner → kerb; ``connectors[(arm, i, turn)]``:
    connector lane id from incoming lane i of ``arm`` for turn "straight" | "left" | "right";
    ``stop_lines[arm]``: stop line ids per incoming lane; ``exit_arm[(arm, turn)]``; ``signal_pose[arm]``
    = (x, y, z, heading) for the head governing ``arm``'s incoming lanes; ``half_size_m`` of the box."""

    parts: MapParts
    incoming: dict[str, tuple[str, ...]]
    outgoing: dict[str, tuple[str, ...]]
    connectors: dict[tuple[str, int, str], str]
    stop_lines: dict[str, tuple[str, ...]]
    exit_arm: dict[tuple[str, str], str]
    signal_pose: dict[str, tuple[float, float, float, float]]
    crosswalks: dict[str, str]
    half_size_m: float
    center_xy: tuple[float, float]
    stop_setback_m: float  # stop line distance before the end of each incoming lane

    def route(self, arm: str, lane_index: int, turn: str, exit_index: int | None = None) -> tuple[str, str, str]:
        """(incoming, connector, outgoing) lane ids of a path through the junction."""
        cid = self.connectors.get((arm, lane_index, turn))
        if cid is None:
            raise ValueError(f"no {turn} connector from {arm} lane {lane_index}; have {sorted(self.connectors)}")
        return (self.incoming[arm][lane_index], cid, self.parts.lanes[cid].successors[0])

    def stop_line_s(self, arm: str, lane_index: int) -> float:
        """Arc length of the stop line (or, on an arm without one, of the place it would be:
        the junction entry point) on incoming lane ``lane_index`` of ``arm``."""
        lane = self.parts.lanes[self.incoming[arm][lane_index]]
        return lane.length_m - self.stop_setback_m


def _rot(theta: float) -> np.ndarray:
    return np.array([math.cos(theta), math.sin(theta)])


def four_way_intersection(center_xy=(0.0, 0.0), n_lanes: int = 1, arm_length_m=150.0,
                          lane_width_m: float = LANE_WIDTH_M, speed_limit_mps: float = 13.9,
                          control: str = "signal", stop_arms: tuple[str, ...] = ("W", "E"),
                          crosswalks: bool = True, corner_radius_m: float = 4.0, prefix: str = "") -> Junction:
    """A 4-way junction of two-way roads with ``n_lanes`` per direction on every arm.

    ``arm_length_m`` is a float or a dict arm -> length. ``control``: "signal" (signal poses are
    returned; programs are the caller's), "stop" (stop signs on ``stop_arms``) or "none". Each
    incoming lane gets a stop line (behind the crosswalk when there is one). Connector lanes
    (``is_intersection=True``) join every incoming lane straight across, the inner lane to the left
    and the kerb lane to the right. Stop lines are painted on every incoming lane of a signalised
    junction, only on ``stop_arms`` of a stop-controlled one, and nowhere on an uncontrolled one."""
    if control not in ("signal", "stop", "none"):
        raise ValueError(f"control must be signal/stop/none, got {control!r}")
    c = np.asarray(center_xy, dtype=np.float64)
    w = lane_width_m
    road_half = n_lanes * w + SHOULDER_M
    h = road_half + corner_radius_m  # half size of the junction box
    lengths = arm_length_m if isinstance(arm_length_m, dict) else {a: float(arm_length_m) for a in ARMS}
    parts = MapParts()
    incoming, outgoing, stop_ids, signal_pose, cw_ids = {}, {}, {}, {}, {}
    setback = 5.0 if crosswalks else 1.0  # [m] stop line before the box edge
    for arm in ARMS:
        th = ARM_ANGLE_RAD[arm]
        u = _rot(th)
        far, near = c + u * (h + lengths[arm]), c + u * h
        road = build_road(straight_line(far, near, 2.0), n_lanes, n_lanes, prefix=f"{prefix}{arm}",
                          lane_width_m=w, speed_limit_mps=speed_limit_mps)
        parts = merge_parts(parts, road.parts)
        incoming[arm], outgoing[arm] = road.fwd_ids, road.bwd_ids
        ids = []
        painted = control == "signal" or (control == "stop" and arm in stop_arms)
        for i, lid in enumerate(road.fwd_ids if painted else ()):
            lane = parts.lanes[lid]
            s = lane.length_m - setback
            seg = lane.position(np.array([s, s]), np.array([0.5 * w, -0.5 * w]))
            sid = f"{lid}_stop"
            parts.stop_lines.append(StopLine(sid, lid, float(s), seg))
            ids.append(sid)
        stop_ids[arm] = tuple(ids)
        n = _rot(th + 0.5 * math.pi)  # left of the outward direction
        if crosswalks:
            d1, d2 = h + 0.5, h + 3.5
            poly = np.array([c + u * d1 - n * road_half, c + u * d2 - n * road_half,
                             c + u * d2 + n * road_half, c + u * d1 + n * road_half])
            cid = f"{prefix}{arm}_crosswalk"
            parts.crosswalks.append(Crosswalk(cid, poly))
            cw_ids[arm] = cid
        # Signal head on a pole at the far-right corner for traffic arriving from this arm.
        phi = th + math.pi  # heading of incoming traffic
        right = _rot(phi - 0.5 * math.pi)
        p = c + _rot(phi) * (h + 1.0) + right * (road_half + 1.0)
        signal_pose[arm] = (float(p[0]), float(p[1]), SIGNAL_HEIGHT_M, float(th))
        if control == "stop" and arm in stop_arms:
            lane = parts.lanes[road.fwd_ids[-1]]
            s_stop = lane.length_m - setback
            parts.signs.append(roadside_sign(f"{prefix}{arm}_stop_sign", "stop", lane, s_stop + 0.5,
                                             lateral_m=0.5 * w + SHOULDER_M + 1.0, lane_ids=road.fwd_ids))
    # Kerb corners: quarter circles around each box corner, joining an arm's left kerb (seen from
    # outside) to the right kerb of the next arm counter-clockwise.
    for k, arm in enumerate(ARMS):
        th = ARM_ANGLE_RAD[arm]
        corner_c = c + _rot(th) * h + _rot(th + 0.5 * math.pi) * h
        angles = np.linspace(th + math.pi, th + 1.5 * math.pi, 9)
        arc = corner_c + corner_radius_m * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        parts.road_edges.append(RoadEdge(f"{prefix}corner_{arm}{ARMS[(k + 1) % 4]}", arc))
    # Connectors
    connectors, exit_arm = {}, {}
    for k, arm in enumerate(ARMS):
        th = ARM_ANGLE_RAD[arm]
        targets = {"straight": ARMS[(k + 2) % 4], "left": ARMS[(k + 3) % 4], "right": ARMS[(k + 1) % 4]}
        for turn, to_arm in targets.items():
            exit_arm[(arm, turn)] = to_arm
            if turn == "straight":
                pairs = [(i, i) for i in range(n_lanes)]
            elif turn == "left":
                pairs = [(0, 0)]
            else:
                pairs = [(n_lanes - 1, n_lanes - 1)]
            for i, j in pairs:
                a = parts.lanes[incoming[arm][i]]
                b = parts.lanes[outgoing[to_arm][j]]
                p0, h0 = a.centerline_xy[-1], float(a.heading_at(a.length_m))
                p1, h1 = b.centerline_xy[0], float(b.heading_at(0.0))
                xy = straight_line(p0, p1, 1.0) if turn == "straight" else bezier_connector(p0, h0, p1, h1, 1.0)
                cid = f"{prefix}X_{arm}{i}_{turn}"
                parts.lanes[cid] = Lane(
                    id=cid, centerline_xy=xy, width_m=w, speed_limit_mps=speed_limit_mps,
                    left_marking="none", right_marking="none", is_intersection=True, turn=turn,
                )
                link(parts.lanes, a.id, cid)
                link(parts.lanes, cid, b.id)
                connectors[(arm, i, turn)] = cid
    box = np.array([c + (-h, -h), c + (h, -h), c + (h, h), c + (-h, h)])
    parts.intersections.append(Intersection(f"{prefix}junction", box))
    return Junction(parts, incoming, outgoing, connectors, stop_ids, exit_arm, signal_pose, cw_ids, h,
                    (float(c[0]), float(c[1])), setback)


# ----------------------------------------------------------------------------------------------
# On-ramp merge
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnRamp:
    """Result of :func:`on_ramp_merge`. Main road sections M0 (before the ramp), M1 (alongside the
    acceleration lane), M2 (after the merge point at x = 0); ``approach_id`` is the curved ramp,
    its successor ``ramp_id`` the parallel acceleration section + taper, whose successor is the kerb
    lane of M2."""

    parts: MapParts
    main: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # fwd ids of M0, M1, M2
    ramp_id: str
    approach_id: str
    merge_x_m: float
    acc_start_x_m: float


def on_ramp_merge(n_main: int = 2, lane_width_m: float = LANE_WIDTH_M, main_speed_limit_mps: float = 22.2,
                  ramp_speed_limit_mps: float = 16.7, pre_m: float = 300.0, post_m: float = 300.0,
                  acc_len_m: float = 90.0, taper_m: float = 50.0, ramp_len_m: float = 120.0,
                  ramp_curvature_1pm: float = 1.0 / 250.0) -> OnRamp:
    """A one-way main carriageway along +x with ``n_main`` lanes and an on-ramp joining from the
    right; the ramp lane's taper ends on the main kerb lane centre at x = 0."""
    w = lane_width_m
    acc_start = -(acc_len_m + taper_m)
    m0 = build_road(straight_line((-pre_m, 0.0), (acc_start, 0.0)), n_main, 0, "M0", w, main_speed_limit_mps)
    m1 = build_road(straight_line((acc_start, 0.0), (0.0, 0.0)), n_main, 0, "M1", w, main_speed_limit_mps,
                    edges=False)
    m2 = build_road(straight_line((0.0, 0.0), (post_m, 0.0)), n_main, 0, "M2", w, main_speed_limit_mps)
    parts = chain_roads(m0, m1, m2)
    kerb_y = -(n_main - 0.5) * w  # main kerb-lane centre
    ramp_y = kerb_y - w
    # Approach built backwards from the acceleration-lane start, bending right (south-west).
    back = reference_line((acc_start, ramp_y), math.pi, ((ramp_len_m, ramp_curvature_1pm, ramp_curvature_1pm),), 2.0)
    approach = back[::-1]
    acc = straight_line((acc_start, ramp_y), (-taper_m, ramp_y), 2.0)
    xs = np.linspace(-taper_m, 0.0, int(math.ceil(taper_m / 2.0)) + 1)
    ys = ramp_y + (kerb_y - ramp_y) * 0.5 * (1 - np.cos(math.pi * (xs + taper_m) / taper_m))
    taper = np.stack([xs, ys], axis=1)
    ramp_xy = np.concatenate([acc, taper[1:]])
    rid, aid = "RAMP", "RAMP_approach"
    kerb_m1 = m1.fwd_ids[-1]
    parts.lanes[aid] = Lane(aid, approach, w, ramp_speed_limit_mps, left_marking="solid_white",
                            right_marking="solid_white")
    parts.lanes[rid] = Lane(rid, ramp_xy, w, ramp_speed_limit_mps, left_marking="dashed_white",
                            right_marking="solid_white", left_neighbor=kerb_m1)
    parts.lanes[kerb_m1] = replace(parts.lanes[kerb_m1], right_marking="dashed_white")
    link(parts.lanes, aid, rid)
    link(parts.lanes, rid, m2.fwd_ids[-1])
    ramp_xy = np.concatenate([approach, ramp_xy[1:]])
    # Kerbs: right of the ramp all along, left of the ramp only on the approach (up to the gore),
    # the main road's left kerb over M1 (M1 was built without edges).
    parts.road_edges.append(RoadEdge("RAMP_edge_r", offset_polyline(ramp_xy, -(0.5 * w + SHOULDER_M))))
    parts.road_edges.append(RoadEdge("RAMP_edge_l", offset_polyline(approach, 0.5 * w + SHOULDER_M)))
    parts.road_edges.append(RoadEdge("M1_edge_l", m1.ref_xy.copy()))
    return OnRamp(parts, (m0.fwd_ids, m1.fwd_ids, m2.fwd_ids), rid, aid, 0.0, acc_start)


__all__ = [
    "LANE_WIDTH_M", "SHOULDER_M", "SIGNAL_HEIGHT_M", "ARMS", "ARM_ANGLE_RAD", "reference_line", "straight_line",
    "offset_polyline", "bezier_connector", "resample_polyline", "MapParts", "merge_parts", "link", "Road",
    "build_road", "chain_roads", "roadside_sign", "speed_limit_sign", "kmh", "Junction", "four_way_intersection",
    "OnRamp", "on_ramp_merge",
]
