"""Road map: lanes as centreline polylines with a four-method interface (after highway-env's
``AbstractLane``), plus crosswalks, stop lines, road edges, intersections and signs.

All coordinates are in the scenario's ``local`` frame (x east, y north), metres. A lane's lateral
coordinate ``r_m`` is positive to the LEFT of its driving direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

# Lane boundary marking types; the renderer draws them, the expert and MOBIL respect "solid".
MARKINGS = (
    "none",
    "solid_white",
    "dashed_white",
    "solid_yellow",
    "dashed_yellow",
    "double_yellow",
    "road_edge",  # kerb / edge of the drivable surface
)


def _as_polyline(xy, name: str) -> np.ndarray:
    a = np.asarray(xy, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 2:
        raise ValueError(f"{name} must be an (N>=2, 2) polyline, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    seg = np.linalg.norm(np.diff(a, axis=0), axis=1)
    if np.any(seg < 1e-9):
        raise ValueError(f"{name} has repeated consecutive points")
    return a


@dataclass(frozen=True, eq=False)
class Lane:
    """One driving lane: a centreline polyline in the local frame, driven in point order."""

    id: str
    centerline_xy: np.ndarray  # (N, 2) [m] local
    width_m: float = 3.6
    speed_limit_mps: float = 13.9
    left_marking: str = "dashed_white"
    right_marking: str = "solid_white"
    successors: tuple[str, ...] = ()
    predecessors: tuple[str, ...] = ()
    left_neighbor: str | None = None  # same-direction lane to the left (lane change target)
    right_neighbor: str | None = None
    is_intersection: bool = False  # a connector lane inside an intersection box
    turn: str = "straight"  # "straight" | "left" | "right" for intersection connectors

    def __post_init__(self):
        object.__setattr__(self, "centerline_xy", _as_polyline(self.centerline_xy, f"lane {self.id} centerline"))
        if not self.width_m > 0:
            raise ValueError(f"lane {self.id}: width_m must be > 0, got {self.width_m}")
        for m in (self.left_marking, self.right_marking):
            if m not in MARKINGS:
                raise ValueError(f"lane {self.id}: unknown marking {m!r}; expected one of {MARKINGS}")

    # -- cached geometry ----------------------------------------------------------------------
    @cached_property
    def _s(self) -> np.ndarray:
        seg = np.linalg.norm(np.diff(self.centerline_xy, axis=0), axis=1)
        return np.concatenate([[0.0], np.cumsum(seg)])

    @cached_property
    def _seg_heading(self) -> np.ndarray:
        d = np.diff(self.centerline_xy, axis=0)
        return np.arctan2(d[:, 1], d[:, 0])

    @property
    def length_m(self) -> float:
        return float(self._s[-1])

    # -- the four-method interface ------------------------------------------------------------
    def position(self, s_m, r_m=0.0) -> np.ndarray:
        """Local xy of the point at arc length ``s_m`` and lateral offset ``r_m`` (left +).

        Beyond either end the first/last segment is extended linearly."""
        s = np.asarray(s_m, dtype=np.float64)
        r = np.asarray(r_m, dtype=np.float64)
        i = np.clip(np.searchsorted(self._s, s, side="right") - 1, 0, len(self._s) - 2)
        h = self._seg_heading[i]
        ds = s - self._s[i]
        p0 = self.centerline_xy[i]
        x = p0[..., 0] + ds * np.cos(h) - r * np.sin(h)
        y = p0[..., 1] + ds * np.sin(h) + r * np.cos(h)
        return np.stack([x, y], axis=-1)

    def to_frenet(self, xy) -> tuple[np.ndarray, np.ndarray]:
        """Project local points (..., 2) onto the centreline -> (s_m, r_m), r positive left."""
        p = np.asarray(xy, dtype=np.float64)
        flat = p.reshape(-1, 2)
        a = self.centerline_xy[:-1]
        d = np.diff(self.centerline_xy, axis=0)
        seg_len2 = np.sum(d * d, axis=1)
        rel = flat[:, None, :] - a[None, :, :]  # (M, S, 2)
        u = np.sum(rel * d[None], axis=2) / seg_len2[None]
        n_seg = len(a)
        # Allow extension beyond the ends so points before/after the lane get negative / > length s.
        lo = np.where(np.arange(n_seg) == 0, -np.inf, 0.0)
        hi = np.where(np.arange(n_seg) == n_seg - 1, np.inf, 1.0)
        u_c = np.clip(u, lo[None], hi[None])
        proj = a[None] + u_c[..., None] * d[None]
        dist2 = np.sum((flat[:, None, :] - proj) ** 2, axis=2)
        k = np.argmin(dist2, axis=1)
        rows = np.arange(len(flat))
        seg_len = np.sqrt(seg_len2[k])
        s = self._s[k] + u_c[rows, k] * seg_len
        cross = d[k, 0] * rel[rows, k, 1] - d[k, 1] * rel[rows, k, 0]
        r = cross / seg_len
        return s.reshape(p.shape[:-1]), r.reshape(p.shape[:-1])

    def heading_at(self, s_m) -> np.ndarray:
        s = np.asarray(s_m, dtype=np.float64)
        i = np.clip(np.searchsorted(self._s, s, side="right") - 1, 0, len(self._s) - 2)
        return self._seg_heading[i]

    def width_at(self, s_m) -> np.ndarray:
        return np.full(np.shape(s_m), self.width_m, dtype=np.float64)

    # -- derived ------------------------------------------------------------------------------
    def boundary(self, side: str, step_m: float = 1.0) -> np.ndarray:
        """Left or right boundary polyline, sampled every ``step_m`` plus the vertices."""
        sign = {"left": 1.0, "right": -1.0}[side]
        s = np.unique(np.concatenate([np.arange(0.0, self.length_m, step_m), self._s]))
        return self.position(s, sign * 0.5 * self.width_at(s))

    def polygon_xy(self) -> np.ndarray:
        """Closed lane polygon: left boundary then reversed right boundary (as AlpaSim builds it)."""
        return np.concatenate([self.boundary("left"), self.boundary("right")[::-1]])

    def on_lane(self, xy, margin_m: float = 0.0) -> np.ndarray:
        s, r = self.to_frenet(xy)
        return (s >= 0) & (s <= self.length_m) & (np.abs(r) <= 0.5 * self.width_at(s) + margin_m)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "centerline_xy": self.centerline_xy.round(4).tolist(),
            "width_m": self.width_m,
            "speed_limit_mps": self.speed_limit_mps,
            "left_marking": self.left_marking,
            "right_marking": self.right_marking,
            "successors": list(self.successors),
            "predecessors": list(self.predecessors),
            "left_neighbor": self.left_neighbor,
            "right_neighbor": self.right_neighbor,
            "is_intersection": self.is_intersection,
            "turn": self.turn,
        }

    @staticmethod
    def from_dict(d: dict) -> "Lane":
        d = dict(d)
        d["centerline_xy"] = np.asarray(d["centerline_xy"], dtype=np.float64)
        d["successors"] = tuple(d.get("successors", ()))
        d["predecessors"] = tuple(d.get("predecessors", ()))
        return Lane(**d)


@dataclass(frozen=True, eq=False)
class Crosswalk:
    id: str
    polygon_xy: np.ndarray  # (4, 2) [m] local, zebra stripes run across the short side

    def __post_init__(self):
        p = np.asarray(self.polygon_xy, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3:
            raise ValueError(f"crosswalk {self.id}: polygon must be (N>=3, 2), got {p.shape}")
        object.__setattr__(self, "polygon_xy", p)

    def to_dict(self) -> dict:
        return {"id": self.id, "polygon_xy": self.polygon_xy.round(4).tolist()}

    @staticmethod
    def from_dict(d: dict) -> "Crosswalk":
        return Crosswalk(d["id"], np.asarray(d["polygon_xy"]))


@dataclass(frozen=True, eq=False)
class StopLine:
    """A painted stop / wait line across ``lane_id`` at arc length ``s_m``."""

    id: str
    lane_id: str
    s_m: float
    segment_xy: np.ndarray  # (2, 2) [m] local end points

    def __post_init__(self):
        object.__setattr__(self, "segment_xy", _as_polyline(self.segment_xy, f"stop line {self.id}"))

    def to_dict(self) -> dict:
        return {"id": self.id, "lane_id": self.lane_id, "s_m": self.s_m, "segment_xy": self.segment_xy.round(4).tolist()}

    @staticmethod
    def from_dict(d: dict) -> "StopLine":
        return StopLine(d["id"], d["lane_id"], float(d["s_m"]), np.asarray(d["segment_xy"]))


@dataclass(frozen=True, eq=False)
class RoadEdge:
    """Edge of the drivable surface (kerb). Offroad is measured against these polylines."""

    id: str
    polyline_xy: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "polyline_xy", _as_polyline(self.polyline_xy, f"road edge {self.id}"))

    def to_dict(self) -> dict:
        return {"id": self.id, "polyline_xy": self.polyline_xy.round(4).tolist()}

    @staticmethod
    def from_dict(d: dict) -> "RoadEdge":
        return RoadEdge(d["id"], np.asarray(d["polyline_xy"]))


@dataclass(frozen=True, eq=False)
class Intersection:
    id: str
    polygon_xy: np.ndarray

    def to_dict(self) -> dict:
        return {"id": self.id, "polygon_xy": np.asarray(self.polygon_xy).round(4).tolist()}

    @staticmethod
    def from_dict(d: dict) -> "Intersection":
        return Intersection(d["id"], np.asarray(d["polygon_xy"], dtype=np.float64))


SIGN_KINDS = ("stop", "yield", "speed_limit", "construction", "pedestrian_crossing", "no_entry")


@dataclass(frozen=True)
class Sign:
    id: str
    kind: str
    x_m: float
    y_m: float
    heading_rad: float  # direction the sign face points to (towards the traffic it applies to)
    value: float | None = None  # e.g. the speed limit in km/h for "speed_limit"
    lane_ids: tuple[str, ...] = ()  # lanes the sign governs
    height_m: float = 2.2

    def __post_init__(self):
        if self.kind not in SIGN_KINDS:
            raise ValueError(f"sign {self.id}: unknown kind {self.kind!r}; expected one of {SIGN_KINDS}")

    def to_dict(self) -> dict:
        return {**self.__dict__, "lane_ids": list(self.lane_ids)}

    @staticmethod
    def from_dict(d: dict) -> "Sign":
        return Sign(**{**d, "lane_ids": tuple(d.get("lane_ids", ()))})


@dataclass(frozen=True, eq=False)
class RoadMap:
    lanes: dict[str, Lane]
    crosswalks: tuple[Crosswalk, ...] = ()
    stop_lines: tuple[StopLine, ...] = ()
    road_edges: tuple[RoadEdge, ...] = ()
    intersections: tuple[Intersection, ...] = ()
    signs: tuple[Sign, ...] = ()

    def __post_init__(self):
        for lid, lane in self.lanes.items():
            if lid != lane.id:
                raise ValueError(f"lane key {lid!r} does not match lane id {lane.id!r}")
            for ref in (*lane.successors, *lane.predecessors, lane.left_neighbor, lane.right_neighbor):
                if ref is not None and ref not in self.lanes:
                    raise ValueError(f"lane {lid} references unknown lane {ref!r}")
        for sl in self.stop_lines:
            if sl.lane_id not in self.lanes:
                raise ValueError(f"stop line {sl.id} references unknown lane {sl.lane_id!r}")

    def lane(self, lane_id: str) -> Lane:
        try:
            return self.lanes[lane_id]
        except KeyError:
            raise ValueError(f"unknown lane {lane_id!r}") from None

    def nearest_lanes(self, xy, max_dist_m: float = 6.0) -> list[tuple[str, float, float, float]]:
        """Lanes whose centreline passes within ``max_dist_m`` of ``xy``, nearest first:
        [(lane_id, s_m, r_m, |r| distance)]. Points beyond the lane ends are excluded."""
        out = []
        for lane in self.lanes.values():
            s, r = lane.to_frenet(np.asarray(xy, dtype=np.float64))
            s, r = float(s), float(r)
            if -0.5 <= s <= lane.length_m + 0.5 and abs(r) <= max_dist_m:
                out.append((lane.id, s, r, abs(r)))
        return sorted(out, key=lambda e: e[3])

    def stop_lines_on(self, lane_id: str) -> list[StopLine]:
        return sorted((sl for sl in self.stop_lines if sl.lane_id == lane_id), key=lambda sl: sl.s_m)

    def to_dict(self) -> dict:
        return {
            "lanes": [lane.to_dict() for lane in self.lanes.values()],
            "crosswalks": [c.to_dict() for c in self.crosswalks],
            "stop_lines": [s.to_dict() for s in self.stop_lines],
            "road_edges": [e.to_dict() for e in self.road_edges],
            "intersections": [i.to_dict() for i in self.intersections],
            "signs": [s.to_dict() for s in self.signs],
        }

    @staticmethod
    def from_dict(d: dict) -> "RoadMap":
        lanes = [Lane.from_dict(x) for x in d["lanes"]]
        return RoadMap(
            lanes={lane.id: lane for lane in lanes},
            crosswalks=tuple(Crosswalk.from_dict(x) for x in d.get("crosswalks", [])),
            stop_lines=tuple(StopLine.from_dict(x) for x in d.get("stop_lines", [])),
            road_edges=tuple(RoadEdge.from_dict(x) for x in d.get("road_edges", [])),
            intersections=tuple(Intersection.from_dict(x) for x in d.get("intersections", [])),
            signs=tuple(Sign.from_dict(x) for x in d.get("signs", [])),
        )


__all__ = ["MARKINGS", "SIGN_KINDS", "Lane", "Crosswalk", "StopLine", "RoadEdge", "Intersection", "Sign", "RoadMap"]
