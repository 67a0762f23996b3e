"""Fallback renderer: numpy projection + OpenCV painter's algorithm (no GL needed), bound to one
scenario, drawing the same scene description as the GL renderer.

Per camera pass (spec/environment.md §5 (a) and its pitfalls):
1. clear to the sky colour;
2. ground layers in HEIGHT order (grass < sidewalk < road < paint), never by depth, each
   non-overlapping group in one ``cv2.fillPoly`` call; then night darkening, headlights and fog
   for the ground come from per-pixel maps (the ground is fixed in the rig frame);
3. objects: back faces culled in 3-D (consistent winding from ``scene``), clipped against the
   near plane (Sutherland–Hodgman), sorted far to near, one ``cv2.fillConvexPoly`` each, with the
   same lighting/fog model evaluated at the face centre.
"""

from __future__ import annotations

import numpy as np
import cv2

from cordillera.render.raster import (
    NEAR_M, PinholePass, tile_view, finish, ground_look_maps, ground_maps, make_passes, rain_streaks,
)
from cordillera.render.rig import Rig, default_rig
from cordillera.render.scene import LAYER_GRASS, DynamicScene, Mesh, build_static, headlight_factor, look_for
from cordillera.world.scenario import Scenario, WorldState

__all__ = ["CvRenderer", "clip_near"]

_SHIFT = 4  # fillPoly fractional bits (1/16 px)
DECAL_M = 0.3  # [m] painter's sort bias for decals


def clip_near(poly_cam: np.ndarray, near: float = NEAR_M) -> np.ndarray:
    """Sutherland–Hodgman clip of a planar polygon (K, 3) (optical frame) to z >= near."""
    out = []
    k = len(poly_cam)
    for i in range(k):
        a, b = poly_cam[i], poly_cam[(i + 1) % k]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if out else np.zeros((0, 3))


class CvRenderer:
    """``Renderer`` protocol implementation (sim/runtime.py) with numpy + OpenCV."""

    backend = "cv"

    def __init__(self, scenario: Scenario, rig: Rig | None = None, pass_scale: float = 1.0,
                 tile_half_angle_deg: float = 25.0):
        self.tile_half_angle_deg = tile_half_angle_deg
        self.scenario = scenario
        self.rig = rig if rig is not None else default_rig()
        self.look = look_for(scenario.conditions)
        self.pass_scale = pass_scale
        static = build_static(scenario)
        self.ground = static.sorted_ground()
        self.objects = static.take(np.flatnonzero(static.layer < 0))
        self.dynamic = DynamicScene(scenario)
        # Ground groups in draw order: (indices, colour 0..255 BGR-agnostic RGB tuple).
        g = self.ground
        grass = g.layer == LAYER_GRASS
        self._grass_rgb = tuple(g.color[np.flatnonzero(grass)[0]]) if grass.any() else None
        g = self.ground = g.take(np.flatnonzero(~grass))
        bounds = np.flatnonzero(np.diff(g.group) != 0) + 1
        self._ground_groups = [(idx, tuple(float(v) for v in g.color[idx[0]] * 255))
                               for idx in np.split(np.arange(len(g)), bounds) if len(idx)]
        self._passes: dict[str, list[tuple[PinholePass, tuple]]] = {}
        self._static_normals = self.objects.normals()
        self._static_centres = self.objects.quads.mean(axis=1)
        self._dyn_key = None
        self._objects_now = (Mesh.empty(), np.zeros((0, 3)), np.zeros((0, 3)))

    # -- Renderer protocol ---------------------------------------------------------------------
    def cameras(self) -> list[str]:
        return self.rig.names

    def render(self, world_state: WorldState, camera: str, t_start_us: int, t_end_us: int) -> np.ndarray:
        cam = self.rig.camera(camera)
        entry = self._passes.get(camera)
        if entry is None:
            entry = self._passes[camera] = [(p, self._tile_look(p))
                                            for p in make_passes(cam, self.pass_scale, self.tile_half_angle_deg)]
        key = (id(world_state), world_state.t_us, int(t_end_us))
        if key != self._dyn_key:  # the dynamic mesh is shared by every camera of one frame
            dyn = self.dynamic.mesh(world_state, t_end_us)
            m = Mesh.concat([self.objects, dyn])
            self._objects_now = (m, np.concatenate([self._static_normals, dyn.normals()]),
                                 np.concatenate([self._static_centres, dyn.quads.mean(axis=1)]))
            self._dyn_key = key
        out = finish([p for p, _ in entry], [self._draw(p, gm, world_state) for p, gm in entry])
        if self.look.rain:
            out = rain_streaks(out, t_end_us, camera, brightness=self.look.light_scale)
        return out

    def close(self) -> None:
        pass

    # -- internals -----------------------------------------------------------------------------
    def _tile_look(self, p: PinholePass):
        """Per tile: the sky background, the first row that sees ground, and the ground-look
        gain/offset (H - row0, W, 3) float32 maps below it."""
        gm = ground_maps(p)
        gain, offset = ground_look_maps(gm, self.look)
        rows = np.flatnonzero(gm.hits.any(axis=1))
        row0 = int(rows[0]) if len(rows) else p.height
        bg = np.empty((p.height, p.width, 3), np.uint8)
        bg[:] = np.round(np.asarray(self.look.sky_rgb) * 255).astype(np.uint8)
        # The grass layer is the whole ground plane (2 km beyond the map, < 0.2 px short of the
        # horizon), so it is baked into the background instead of filled every frame.
        if self._grass_rgb is not None:
            bg[gm.hits] = np.round(np.asarray(self._grass_rgb) * 255).astype(np.uint8)
        gain3 = np.ascontiguousarray(np.repeat(gain[row0:], 3, axis=2))
        return bg, row0, gain3, np.ascontiguousarray(offset[row0:])

    def _draw(self, p: PinholePass, gm: tuple, ws: WorldState) -> np.ndarray:
        R, t, cam_pos = tile_view(ws.ego, p)
        W, H = p.width, p.height
        K = np.array([p.fx, p.fy])
        c = np.array([p.cx, p.cy])
        bg, row0, gain3, offset = gm
        img = bg.copy()

        # Ground, in layer order.
        g = self.ground
        qc = g.quads @ R.T + t  # (Q, 4, 3) optical frame
        front = qc[..., 2] >= NEAR_M
        any_front = front.any(axis=1)
        all_front = front.all(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = qc[..., :2] / qc[..., 2:3] * K + c
        off = np.zeros(len(g), bool)
        for ax, lim in ((0, W), (1, H)):
            v = uv[..., ax]
            off |= all_front & ((v < -1).all(axis=1) | (v > lim).all(axis=1))
        drawable = any_front & ~off
        for idx, colour in self._ground_groups:
            sel = idx[drawable[idx]]
            if not len(sel):
                continue
            full = sel[all_front[sel]]
            polys = list(np.round(uv[full] * (1 << _SHIFT)).astype(np.int32))
            for i in sel[~all_front[sel]]:
                poly = clip_near(qc[i])
                if len(poly) >= 3:
                    polys.append(np.round((poly[:, :2] / poly[:, 2:3] * K + c) * (1 << _SHIFT)).astype(np.int32))
            if polys:
                cv2.fillPoly(img, polys, colour, lineType=cv2.LINE_8, shift=_SHIFT)
        if row0 < H:  # night darkening, headlights and fog of the ground (round + saturate to uint8)
            img[row0:] = cv2.convertScaleAbs(cv2.add(cv2.multiply(img[row0:], gain3, dtype=cv2.CV_32F), offset))

        # Objects, far to near.
        m, normals, centre = self._objects_now
        if not len(m):
            return img
        to_face = centre - cam_pos
        keep = np.einsum("ij,ij->i", normals, to_face) < 0  # front faces only (same winding as GL culling)
        idx = np.flatnonzero(keep)
        qc = m.quads[idx] @ R.T + t
        front = qc[..., 2] >= NEAR_M
        all_front = front.all(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = qc[..., :2] / qc[..., 2:3] * K + c
        vis = front.any(axis=1)
        for ax, lim in ((0, W), (1, H)):
            v = uv[..., ax]
            vis &= ~(all_front & ((v < -1).all(axis=1) | (v > lim).all(axis=1)))
        idx, qc, uv, all_front = idx[vis], qc[vis], uv[vis], all_front[vis]
        if not len(idx):
            return img
        dist = np.linalg.norm(to_face[idx], axis=1)
        col = self._lit_colors(m, idx, centre[idx], dist, ws)
        pts_all = np.zeros(uv.shape, np.int32)
        pts_all[all_front] = np.round(uv[all_front] * (1 << _SHIFT))
        # Decals (lamps, windows, sign faces) lie on another face: sort them as if DECAL_M nearer.
        for j in np.argsort(-(dist - DECAL_M * m.decal[idx]), kind="stable"):
            if all_front[j]:
                pts = pts_all[j]
            else:
                poly = clip_near(qc[j])
                if len(poly) < 3:
                    continue
                pts = np.round((poly[:, :2] / poly[:, 2:3] * K + c) * (1 << _SHIFT)).astype(np.int32)
            cv2.fillConvexPoly(img, pts, col[j], lineType=cv2.LINE_8, shift=_SHIFT)
        return img

    def _lit_colors(self, m: Mesh, idx, centre, dist, ws: WorldState) -> list[tuple]:
        look = self.look
        col = m.color[idx].copy()
        emis = m.emissive[idx]
        if look.headlight_gain > 0:
            e = ws.ego
            cz, sz = np.cos(e.yaw_rad), np.sin(e.yaw_rad)
            d = centre - np.array([e.x_m, e.y_m, e.z_m])
            rig = np.column_stack([cz * d[:, 0] + sz * d[:, 1], -sz * d[:, 0] + cz * d[:, 1], d[:, 2]])
            light = look.light_scale + look.headlight_gain * headlight_factor(rig)
        else:
            light = np.full(len(idx), look.light_scale)
        col = np.where(emis[:, None], col, col * light[:, None])
        fog = 1.0 - np.exp(-dist / np.where(emis, 3.0 * look.fog_distance_m, look.fog_distance_m))
        col = col * (1 - fog[:, None]) + np.asarray(look.fog_rgb) * fog[:, None]
        return np.clip(np.round(col * 255), 0, 255).tolist()
