"""Top-down (bird's-eye view) raster, ego-centred and rotated so the ego points up.

Pixel mapping (``bev_pixels``): a rig-frame point (x forward, y left) lands at
``u = W/2 − y·s``, ``v = H/2 − x·s`` with ``s = (min(W, H)/2) / radius_m`` pixels per metre.
Draws the map (lanes, markings, road edges, crosswalks, stop lines, signal states), actors with
their ids, the ego box, the plan (rig frame) and its alternatives, the route and a GT path.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from cordillera.world.scenario import AgentState, Scenario, WorldState

__all__ = ["render_bev", "bev_pixels", "local_to_rig_xy"]

_BG = (38, 40, 44)
_LANE = (88, 90, 96)
_JUNCTION = (82, 84, 90)
_KIND_COLOURS = {
    "car": (70, 130, 220), "parked_car": (110, 120, 140), "truck": (60, 100, 190), "bus": (60, 100, 190),
    "pedestrian": (240, 90, 60), "cyclist": (240, 150, 40), "animal": (200, 120, 60), "cone": (255, 140, 0),
    "barrier": (230, 60, 60), "debris": (160, 120, 80),
}
_SIGNAL_RGB = {"red": (230, 40, 40), "yellow": (240, 200, 30), "green": (40, 210, 90), "dark": (90, 90, 90),
               "flashing_yellow": (240, 200, 30), "flashing_red": (230, 40, 40)}


def local_to_rig_xy(xy_local, ego: AgentState) -> np.ndarray:
    """Local (..., 2) points -> rig-frame (x forward, y left) of ``ego``."""
    d = np.asarray(xy_local, float) - np.array([ego.x_m, ego.y_m])
    c, s = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def bev_pixels(xy_rig, size_px: tuple[int, int], radius_m: float) -> np.ndarray:
    """Rig-frame (..., 2) points -> BEV pixel coordinates (..., 2) (u right, v down)."""
    h, w = size_px
    s = 0.5 * min(w, h) / radius_m
    p = np.asarray(xy_rig, float)
    return np.stack([0.5 * w - p[..., 1] * s, 0.5 * h - p[..., 0] * s], axis=-1)


def _pts(xy_local, ego, size, radius):
    return np.round(bev_pixels(local_to_rig_xy(xy_local, ego), size, radius) * 16).astype(np.int32)


def _poly(img, xy_local, ego, size, radius, colour, closed=True, thickness=1, fill=False):
    p = _pts(xy_local, ego, size, radius)
    if fill:
        cv2.fillPoly(img, [p], colour, cv2.LINE_AA, shift=4)
    else:
        cv2.polylines(img, [p], closed, colour, thickness, cv2.LINE_AA, shift=4)


def _box_corners(x, y, yaw, length, width) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [0.5 * length, 0.5 * width]
    return np.array([x, y]) + half @ np.array([[c, s], [-s, c]])


def render_bev(
    scenario: Scenario,
    world_state: WorldState,
    plan_rig=None,
    alternatives_rig=(),
    route_xy=None,
    gt_xy=None,
    radius_m: float = 30.0,
    size_px: int | tuple[int, int] = 400,
    show_ids: bool = True,
) -> np.ndarray:
    """HxWx3 uint8 RGB top view around the ego. ``plan_rig`` / ``alternatives_rig``: (T, ≥2)
    rig-frame points; ``route_xy`` / ``gt_xy``: (N, 2) local-frame polylines."""
    if radius_m <= 0:
        raise ValueError(f"radius_m must be > 0, got {radius_m}")
    h, w = (size_px, size_px) if isinstance(size_px, int) else size_px
    size = (h, w)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _BG
    ego = world_state.ego
    rm = scenario.map
    args = (ego, size, radius_m)
    for inter in rm.intersections:
        _poly(img, inter.polygon_xy, *args, _JUNCTION, fill=True)
    for lane in rm.lanes.values():
        _poly(img, lane.polygon_xy(), *args, _JUNCTION if lane.is_intersection else _LANE, fill=True)
    for lane in rm.lanes.values():
        if lane.is_intersection:
            continue
        for side, kind in (("left", lane.left_marking), ("right", lane.right_marking)):
            if kind == "none":
                continue
            col = (220, 180, 40) if "yellow" in kind else (200, 200, 200)
            _poly(img, lane.boundary(side, 2.0), *args, col, closed=False)
    for edge in rm.road_edges:
        _poly(img, edge.polyline_xy, *args, (235, 235, 235), closed=False, thickness=2)
    for cw in rm.crosswalks:
        _poly(img, cw.polygon_xy, *args, (150, 150, 150), fill=True)
    for sl in rm.stop_lines:
        _poly(img, sl.segment_xy, *args, (255, 255, 255), closed=False, thickness=2)
    if route_xy is not None and len(route_xy) >= 2:
        _poly(img, np.asarray(route_xy)[:, :2], *args, (200, 80, 200), closed=False, thickness=1)
    if gt_xy is not None and len(gt_xy) >= 2:
        _poly(img, np.asarray(gt_xy)[:, :2], *args, (240, 220, 60), closed=False, thickness=2)
    for tl in scenario.traffic_lights:
        state = world_state.signals.get(tl.id, "dark")
        u, v = bev_pixels(local_to_rig_xy([tl.x_m, tl.y_m], ego), size, radius_m)
        cv2.circle(img, (int(round(u)), int(round(v))), 5, _SIGNAL_RGB.get(state, (90, 90, 90)), -1, cv2.LINE_AA)
    specs = {a.id: a for a in scenario.actors}
    for aid, st in world_state.actors.items():
        a = specs.get(aid)
        if a is None or not st.visible:
            continue
        corners = _box_corners(st.x_m, st.y_m, st.yaw_rad, a.length_m, a.width_m)
        col = _KIND_COLOURS.get(a.kind, (180, 180, 180))
        _poly(img, corners, *args, col, fill=True)
        _poly(img, corners[:2], *args, (255, 255, 255), closed=False)  # front edge
        if show_ids:
            u, v = bev_pixels(local_to_rig_xy([st.x_m, st.y_m], ego), size, radius_m)
            if 0 <= u < w and 0 <= v < h:
                cv2.putText(img, aid, (int(u) + 4, int(v) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (235, 235, 235), 1,
                            cv2.LINE_AA)
    e = scenario.ego
    cx_local = ego.x_m + e.rear_axle_to_center_m * math.cos(ego.yaw_rad)
    cy_local = ego.y_m + e.rear_axle_to_center_m * math.sin(ego.yaw_rad)
    ego_box = _box_corners(cx_local, cy_local, ego.yaw_rad, e.length_m, e.width_m)
    _poly(img, ego_box, *args, (40, 200, 230), fill=True)
    _poly(img, ego_box[:2], *args, (255, 255, 255), closed=False, thickness=2)
    for alt in alternatives_rig or ():
        p = np.round(bev_pixels(np.asarray(alt)[:, :2], size, radius_m) * 16).astype(np.int32)
        cv2.polylines(img, [p], False, (120, 200, 140), 1, cv2.LINE_AA, shift=4)
    if plan_rig is not None and len(plan_rig) >= 2:
        p = np.round(bev_pixels(np.asarray(plan_rig)[:, :2], size, radius_m) * 16).astype(np.int32)
        cv2.polylines(img, [p], False, (60, 255, 120), 2, cv2.LINE_AA, shift=4)
    return img
