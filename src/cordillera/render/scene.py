"""Scenario + WorldState -> coloured quad meshes (numpy), shared by the GL and the OpenCV renderers.

A :class:`Mesh` is a list of quads (a triangle is a quad whose last two vertices coincide) in the
scenario ``local`` frame, one flat colour per quad, wound counter-clockwise seen from the front
(outside) so both renderers can cull back faces. Quads with ``layer >= 0`` are flat ground paint
(grass < sidewalk < road < markings) that the renderers draw first, in layer order and without a
depth test; quads with ``layer == -1`` are 3-D objects (depth-tested / depth-sorted).

- :func:`build_static` turns the map into the ground layers and the static objects (signs, signal
  poles and housings), shaded by a fixed sun.
- :class:`DynamicScene` holds per-actor templates built once per scenario and, per frame,
  :meth:`DynamicScene.mesh` places visible actors and the traffic-light lamps lit with the state
  colour (dark = all off; flashing blinks at 1 Hz on ``t_end_us``).
- :func:`look_for` maps ``Conditions`` (day/dusk/night, clear/rain/fog) to sky, fog and
  headlight parameters that both renderers apply identically.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from cordillera.world.map import RoadMap
from cordillera.world.scenario import ActorSpec, Conditions, Scenario, TrafficLight, WorldState

__all__ = [
    "LAYER_OBJECT", "LAYER_GRASS", "LAYER_SIDEWALK", "LAYER_ROAD", "LAYER_PAINT",
    "Mesh", "Look", "look_for", "shade", "build_static", "actor_template", "DynamicScene",
    "HEADLIGHT_RIG_M", "HEADLIGHT_OUTER_DEG", "HEADLIGHT_INNER_DEG", "HEADLIGHT_PEAK",
    "HEADLIGHT_FALLOFF_M", "headlight_factor", "lamp_color",
]

LAYER_OBJECT, LAYER_GRASS, LAYER_SIDEWALK, LAYER_ROAD, LAYER_PAINT = -1, 0, 1, 2, 3

SUN_DIR = np.array([0.45, 0.30, 0.84]) / np.linalg.norm([0.45, 0.30, 0.84])  # towards the sun, local
AMBIENT, DIFFUSE = 0.55, 0.45
HEADLIGHT_RIG_M = np.array([3.6, 0.0, 0.7])  # [m] ego headlight source in the rig frame

# Colours (linear-ish RGB in 0..1)
C = {
    "grass": (0.34, 0.48, 0.26), "sidewalk": (0.60, 0.60, 0.58), "road": (0.30, 0.30, 0.32),
    "junction": (0.31, 0.31, 0.33), "white": (0.90, 0.90, 0.88), "yellow": (0.93, 0.74, 0.12),
    "kerb": (0.74, 0.74, 0.72), "pole": (0.45, 0.46, 0.48), "housing": (0.10, 0.10, 0.09),
    "stop_red": (0.78, 0.06, 0.06), "sign_white": (0.93, 0.93, 0.93), "orange": (1.00, 0.45, 0.02),
    "sign_back": (0.55, 0.55, 0.57), "sign_blue": (0.10, 0.30, 0.75), "sign_yellow": (0.98, 0.84, 0.10),
    "glass": (0.10, 0.13, 0.17), "tyre": (0.06, 0.06, 0.06), "headlamp": (0.95, 0.95, 0.82),
    "taillamp": (0.85, 0.04, 0.04), "skin": (0.86, 0.66, 0.52), "trousers": (0.12, 0.14, 0.25),
    "cone_white": (0.95, 0.95, 0.95), "debris": (0.42, 0.34, 0.26), "animal": (0.45, 0.30, 0.18),
    "trunk": (0.35, 0.24, 0.14), "crown": (0.16, 0.36, 0.14),
}
CAR_PALETTE = [(0.75, 0.10, 0.10), (0.85, 0.85, 0.85), (0.15, 0.18, 0.30), (0.10, 0.10, 0.11),
               (0.55, 0.57, 0.60), (0.20, 0.35, 0.65), (0.85, 0.70, 0.20), (0.25, 0.45, 0.30)]
SHIRT_PALETTE = [(0.80, 0.20, 0.20), (0.20, 0.45, 0.80), (0.95, 0.75, 0.10), (0.25, 0.60, 0.30),
                 (0.90, 0.90, 0.90), (0.55, 0.20, 0.60)]
LAMP_UNLIT = {"red": (0.22, 0.05, 0.04), "yellow": (0.24, 0.19, 0.03), "green": (0.03, 0.17, 0.08)}
LAMP_LIT = {"red": (1.00, 0.10, 0.06), "yellow": (1.00, 0.72, 0.04), "green": (0.08, 1.00, 0.45)}


# ----------------------------------------------------------------------------------------------
# Mesh
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Mesh:
    quads: np.ndarray  # (Q, 4, 3) [m] local (or template) frame, CCW seen from the front
    color: np.ndarray  # (Q, 3) RGB 0..1 (already sun-shaded for static meshes)
    emissive: np.ndarray  # (Q,) bool: lamps keep their colour at night and through fog
    layer: np.ndarray  # (Q,) int8: -1 object, 0.. ground layer
    group: np.ndarray  # (Q,) int32: ground quads of one group never overlap (filled in one call)
    decal: np.ndarray | None = None  # (Q,) bool: lies on another face (lamp, window); painter draws it after

    def __post_init__(self):
        if self.decal is None:
            object.__setattr__(self, "decal", np.zeros(len(self.quads), bool))

    def __len__(self) -> int:
        return len(self.quads)

    @staticmethod
    def empty() -> "Mesh":
        return Mesh(np.zeros((0, 4, 3)), np.zeros((0, 3)), np.zeros(0, bool), np.zeros(0, np.int8),
                    np.zeros(0, np.int32), np.zeros(0, bool))

    @staticmethod
    def concat(meshes) -> "Mesh":
        meshes = [m for m in meshes if len(m)]
        if not meshes:
            return Mesh.empty()
        return Mesh(*(np.concatenate([getattr(m, f) for m in meshes]) for f in
                      ("quads", "color", "emissive", "layer", "group", "decal")))

    def normals(self) -> np.ndarray:
        """(Q, 3) unit normals from the winding (pointing to the front side)."""
        q = self.quads
        n = np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0])
        n2 = np.cross(q[:, 2] - q[:, 0], q[:, 3] - q[:, 0])
        n = np.where(np.linalg.norm(n, axis=1, keepdims=True) > 1e-12, n, n2)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    def triangles(self) -> np.ndarray:
        """(2Q, 3, 3) triangles (0,1,2),(0,2,3) per quad; degenerate ones are harmless."""
        q = self.quads
        return np.stack([q[:, [0, 1, 2]], q[:, [0, 2, 3]]], axis=1).reshape(-1, 3, 3)

    def sorted_ground(self) -> "Mesh":
        """Ground quads ordered by layer (stable), objects dropped."""
        keep = np.flatnonzero(self.layer >= 0)
        order = keep[np.argsort(self.layer[keep], kind="stable")]
        return self.take(order)

    def take(self, idx) -> "Mesh":
        return Mesh(self.quads[idx], self.color[idx], self.emissive[idx], self.layer[idx], self.group[idx],
                    self.decal[idx])


class _Builder:
    """Accumulates quads; every ``add_*`` call that may be filled at once gets its own group id."""

    def __init__(self):
        self.quads, self.color, self.emissive, self.layer, self.group, self.decal = [], [], [], [], [], []
        self._next_group = 0

    def _new_group(self) -> int:
        self._next_group += 1
        return self._next_group

    def add(self, quads, color, layer=LAYER_OBJECT, emissive=False, outward=None, group=None, decal=False):
        """Add (K, 4, 3) quads. Winding is fixed so the front faces ``outward`` (K, 3) for objects
        or +z for ground layers."""
        q = np.asarray(quads, dtype=np.float64).reshape(-1, 4, 3)
        if not len(q):
            return
        n = np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0])
        n = np.where(np.linalg.norm(n, axis=1, keepdims=True) > 1e-12, n, np.cross(q[:, 2] - q[:, 0], q[:, 3] - q[:, 0]))
        want = np.array([0.0, 0.0, 1.0]) if layer >= 0 else np.asarray(outward, dtype=np.float64).reshape(-1, 3)
        flip = np.sum(n * want, axis=1) < 0
        q[flip] = q[flip][:, ::-1]
        col = np.broadcast_to(np.asarray(color, dtype=np.float64), (len(q), 3))
        self.quads.append(q)
        self.color.append(np.array(col))
        self.emissive.append(np.full(len(q), bool(emissive)))
        self.layer.append(np.full(len(q), layer, np.int8))
        self.group.append(np.full(len(q), self._new_group() if group is None else group, np.int32))
        self.decal.append(np.full(len(q), bool(decal)))

    def box(self, lo, hi, color, faces_color=None, emissive=False, decal=False):
        """Axis-aligned box [lo, hi] (template frame). ``faces_color`` overrides per face name
        ('+x','-x','+y','-y','+z','-z')."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        c = 0.5 * (lo + hi)
        x0, y0, z0 = lo
        x1, y1, z1 = hi
        faces = {
            "+x": [(x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)],
            "-x": [(x0, y0, z0), (x0, y1, z0), (x0, y1, z1), (x0, y0, z1)],
            "+y": [(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)],
            "-y": [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)],
            "+z": [(x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)],
            "-z": [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)],
        }
        for name, verts in faces.items():
            v = np.array(verts)
            col = (faces_color or {}).get(name, color)
            self.add(v[None], col, outward=(v.mean(axis=0) - c)[None], emissive=emissive, decal=decal)

    def frustum(self, z0, z1, half0, half1, color, cx=0.0, cy=0.0):
        """A square frustum (tapered box) from half-size ``half0`` at z0 to ``half1`` at z1."""
        b = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
        lo = np.column_stack([cx + b[:, 0] * half0, cy + b[:, 1] * half0, np.full(4, z0)])
        hi = np.column_stack([cx + b[:, 0] * half1, cy + b[:, 1] * half1, np.full(4, z1)])
        centre = np.array([cx, cy, 0.5 * (z0 + z1)])
        for i in range(4):
            j = (i + 1) % 4
            v = np.array([lo[i], lo[j], hi[j], hi[i]])
            self.add(v[None], color, outward=(v.mean(axis=0) - centre)[None])
        self.add(hi[None], color, outward=np.array([[0, 0, 1.0]]))

    def polygon(self, verts, color, normal, layer=LAYER_OBJECT, emissive=False, decal=False):
        """A convex planar polygon as a fan of triangles (degenerate quads)."""
        v = np.asarray(verts, float)
        c = v.mean(axis=0)
        tris = np.array([[c, v[i], v[(i + 1) % len(v)], v[(i + 1) % len(v)]] for i in range(len(v))])
        self.add(tris, color, layer=layer, emissive=emissive, decal=decal,
                 outward=np.broadcast_to(np.asarray(normal, float), (len(tris), 3)))

    def mesh(self) -> Mesh:
        if not self.quads:
            return Mesh.empty()
        return Mesh(np.concatenate(self.quads), np.concatenate(self.color), np.concatenate(self.emissive),
                    np.concatenate(self.layer), np.concatenate(self.group), np.concatenate(self.decal))


def shade(normals) -> np.ndarray:
    """Sun shading factor per face: 1 for an up-facing face, darker for faces turned away."""
    lam = AMBIENT + DIFFUSE * np.clip(np.asarray(normals) @ SUN_DIR, 0.0, None)
    return lam / (AMBIENT + DIFFUSE * SUN_DIR[2])


# ----------------------------------------------------------------------------------------------
# Conditions
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Look:
    sky_rgb: tuple[float, float, float]
    fog_rgb: tuple[float, float, float]
    fog_distance_m: float  # e-folding distance of the haze
    light_scale: float  # multiplies every non-emissive colour (night darkness)
    headlight_gain: float  # ego headlight brightening of what the headlight cone hits
    rain: bool = False


def look_for(conditions: Conditions) -> Look:
    tod, weather = conditions.time_of_day, conditions.weather
    if tod == "night":
        sky, fog, dist, scale, head = (0.02, 0.025, 0.05), (0.03, 0.035, 0.05), 300.0, 0.10, 0.9
    elif tod == "dusk":
        sky, fog, dist, scale, head = (0.55, 0.55, 0.64), (0.62, 0.57, 0.56), 600.0, 0.55, 0.25
    else:
        sky, fog, dist, scale, head = (0.60, 0.76, 0.93), (0.76, 0.82, 0.90), 900.0, 1.0, 0.0
    rain = weather == "rain"
    if weather == "rain":
        grey = (0.58, 0.61, 0.64)
        sky = tuple(float(np.clip(0.3 * s + 0.7 * g * (1.0 if tod == "day" else scale * 2), 0, 1))
                    for s, g in zip(sky, grey))
        fog = sky
        dist, scale = 120.0, scale * 0.8
    elif weather == "fog":
        sky = tuple(float(v) for v in (np.array([0.78, 0.79, 0.80]) * (1.0 if tod == "day" else max(scale, 0.1) * 1.5)))
        fog, dist = sky, 35.0
    return Look(tuple(map(float, sky)), tuple(map(float, fog)), dist, scale, head, rain)


HEADLIGHT_OUTER_DEG, HEADLIGHT_INNER_DEG = 38.0, 6.0  # [deg] cone edge (zero) and full-strength angle
HEADLIGHT_PEAK, HEADLIGHT_FALLOFF_M = 1.0, 18.0  # peak gain and 1/d² falloff distance [m]


def headlight_factor(points_rig) -> np.ndarray:
    """Ego headlight illumination at rig-frame points: a soft cone with 1/d² falloff (the GL
    fragment shader evaluates the same formula)."""
    d = np.asarray(points_rig, float) - HEADLIGHT_RIG_M
    dist = np.linalg.norm(d, axis=-1)
    cosang = d[..., 0] / np.maximum(dist, 1e-6)
    co, ci = math.cos(math.radians(HEADLIGHT_OUTER_DEG)), math.cos(math.radians(HEADLIGHT_INNER_DEG))
    x = np.clip((cosang - co) / (ci - co), 0, 1)
    cone = x * x * (3 - 2 * x)  # smoothstep
    return HEADLIGHT_PEAK * cone / (1.0 + (dist / HEADLIGHT_FALLOFF_M) ** 2) * (d[..., 0] > 0.5)


# ----------------------------------------------------------------------------------------------
# Static scene
# ----------------------------------------------------------------------------------------------
def _strip(left, right) -> np.ndarray:
    """Quads between two equally sampled polylines (N, 2) at z=0."""
    z = np.zeros((len(left), 1))
    L = np.hstack([left, z])
    R = np.hstack([right, z])
    return np.stack([L[:-1], L[1:], R[1:], R[:-1]], axis=1)


def _offset(xy, d_m) -> np.ndarray:
    """Offset a polyline to its left by ``d_m`` (vertex normals = averaged segment normals)."""
    xy = np.asarray(xy, float)
    t = np.diff(xy, axis=0)
    seg = np.linalg.norm(t, axis=1)
    ok = seg > 1e-9
    if not ok.any():
        raise ValueError("cannot offset a polyline of coincident points")
    t[ok] /= seg[ok, None]
    if not ok.all():  # a repeated vertex: its zero-length segment takes the previous (else next) direction
        i = np.maximum.accumulate(np.where(ok, np.arange(len(t)), -1))
        i[i < 0] = np.argmax(ok)
        t = t[i]
    tv = np.vstack([t[:1], t[:-1] + t[1:], t[-1:]])
    tv /= np.maximum(np.linalg.norm(tv, axis=1, keepdims=True), 1e-9)
    n = np.column_stack([-tv[:, 1], tv[:, 0]])
    return xy + d_m * n


def _resample(xy, step_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step_m`` along the polyline plus its vertices; returns (xy, s)."""
    xy = np.asarray(xy, float)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    ss = np.unique(np.concatenate([np.arange(0.0, s[-1], step_m), s]))
    return np.column_stack([np.interp(ss, s, xy[:, 0]), np.interp(ss, s, xy[:, 1])]), ss


def _line_quads(xy, width_m, dash=None) -> np.ndarray:
    """Paint line of ``width_m`` along a polyline; ``dash=(on_m, off_m)`` for dashed lines."""
    pts, s = _resample(xy, 25.0)
    if dash is None:
        return _strip(_offset(pts, 0.5 * width_m), _offset(pts, -0.5 * width_m))
    on, off = dash
    out = []
    period = on + off
    for a in np.arange(0.0, s[-1], period):
        b = min(a + on, s[-1])
        if b - a < 0.3:
            continue
        ss = np.unique(np.concatenate([[a, b], s[(s > a) & (s < b)]]))
        seg = np.column_stack([np.interp(ss, s, pts[:, 0]), np.interp(ss, s, pts[:, 1])])
        out.append(_strip(_offset(seg, 0.5 * width_m), _offset(seg, -0.5 * width_m)))
    return np.concatenate(out) if out else np.zeros((0, 4, 3))


def _marking(b: _Builder, xy, kind: str) -> None:
    if kind in ("none",):
        return
    if kind == "double_yellow":
        b.add(_line_quads(_offset(xy, 0.12), 0.12), C["yellow"], layer=LAYER_PAINT)
        b.add(_line_quads(_offset(xy, -0.12), 0.12), C["yellow"], layer=LAYER_PAINT)
        return
    color = C["yellow"] if "yellow" in kind else C["white"]
    dash = (3.0, 6.0) if kind.startswith("dashed") else None
    b.add(_line_quads(xy, 0.15, dash), color, layer=LAYER_PAINT)


def _on_road(road_map: RoadMap, xy) -> bool:
    for lane in road_map.lanes.values():
        if bool(lane.on_lane(np.asarray(xy, float)[None])[0]):
            return True
    return False


def _fan(verts2d, z=0.0) -> np.ndarray:
    v = np.hstack([np.asarray(verts2d, float), np.full((len(verts2d), 1), z)])
    c = v.mean(axis=0)
    return np.array([[c, v[i], v[(i + 1) % len(v)], v[(i + 1) % len(v)]] for i in range(len(v))])


def _sign(b: _Builder, sign) -> None:
    h = math.radians(0) + sign.heading_rad
    f = np.array([math.cos(h), math.sin(h), 0.0])  # face normal (towards traffic)
    r = np.array([math.sin(h), -math.cos(h), 0.0])  # right of the face, seen from the front
    base = np.array([sign.x_m, sign.y_m, 0.0])
    top = sign.height_m
    b.box(base + (-0.04, -0.04, 0.0), base + (0.04, 0.04, top), C["pole"])
    centre = base + np.array([0, 0, top + 0.05]) + 0.06 * f
    up = np.array([0.0, 0.0, 1.0])
    kind = sign.kind
    if kind == "stop":
        ang = np.radians(22.5 + 45 * np.arange(8))
        radius, col = 0.38, C["stop_red"]
    elif kind in ("construction", "pedestrian_crossing"):
        ang = np.radians(90 * np.arange(4))
        radius, col = 0.45, C["orange"] if kind == "construction" else C["sign_yellow"]
    elif kind == "yield":
        ang = np.radians([90.0, 210.0, 330.0]) + math.pi
        radius, col = 0.45, C["sign_white"]
    elif kind == "no_entry":
        ang = np.radians(22.5 + 45 * np.arange(8))
        radius, col = 0.35, C["stop_red"]
    else:  # speed_limit: white portrait rectangle
        ang = None
        radius, col = 0.0, C["sign_white"]
    if ang is None:
        corners = [(-0.3, -0.38), (0.3, -0.38), (0.3, 0.38), (-0.3, 0.38)]
        verts = np.array([centre + x * r + y * up for x, y in corners])
    else:
        verts = np.array([centre + radius * (math.cos(a) * r + math.sin(a) * up) for a in ang])
    b.polygon(verts, col, f, decal=True)
    b.polygon(verts - 0.02 * f, C["sign_back"], -f, decal=True)
    if kind == "speed_limit":  # a dark number band so the plate reads as a speed sign
        band = np.array([centre + 0.01 * f + x * r + y * up for x, y in
                         [(-0.18, -0.22), (0.18, -0.22), (0.18, 0.05), (-0.18, 0.05)]])
        b.add(band[None], (0.08, 0.08, 0.08), outward=f[None], decal=True)
    elif kind == "stop":
        band = np.array([centre + 0.01 * f + x * r + y * up for x, y in
                         [(-0.26, -0.05), (0.26, -0.05), (0.26, 0.05), (-0.26, 0.05)]])
        b.add(band[None], C["sign_white"], outward=f[None], decal=True)


def traffic_light_frame(light: TrafficLight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head centre (3,), facing unit vector f, right unit vector r) in local."""
    h = light.heading_rad
    f = np.array([math.cos(h), math.sin(h), 0.0])
    r = np.array([math.sin(h), -math.cos(h), 0.0])
    return np.array([light.x_m, light.y_m, light.z_m]), f, r


HEAD_W, HEAD_H, HEAD_D, LAMP_R = 0.45, 1.20, 0.30, 0.16  # [m] signal head housing and lamp radius
LAMP_ORDER = ("red", "yellow", "green")  # top to bottom


def _traffic_light_static(b: _Builder, light: TrafficLight, road_map: RoadMap) -> None:
    c, f, r = traffic_light_frame(light)
    # Housing: a box in the light's own frame, built via corners.
    corners = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            for sz in (-1, 1):
                corners.append(c + sx * 0.5 * HEAD_D * f + sy * 0.5 * HEAD_W * r + sz * 0.5 * HEAD_H * np.array([0, 0, 1.0]))
    corners = np.array(corners).reshape(2, 2, 2, 3)  # [f][r][z]
    faces = [
        corners[1].reshape(4, 3)[[0, 1, 3, 2]], corners[0].reshape(4, 3)[[0, 1, 3, 2]],
        corners[:, 1].reshape(4, 3)[[0, 1, 3, 2]], corners[:, 0].reshape(4, 3)[[0, 1, 3, 2]],
        corners[:, :, 1].reshape(4, 3)[[0, 1, 3, 2]], corners[:, :, 0].reshape(4, 3)[[0, 1, 3, 2]],
    ]
    for v in faces:
        b.add(v[None], C["housing"], outward=(v.mean(axis=0) - c)[None])
    # Pole: straight down, unless the head hangs over a lane: then a mast arm to the kerb side.
    foot = c[:2].copy()
    if _on_road(road_map, foot):
        for _ in range(25):  # walk to the approaching driver's right (the head's left = -r)
            foot = foot - r[:2]
            if not _on_road(road_map, foot):
                break
        foot = foot - 0.5 * r[:2]
        arm_lo = np.array([*np.minimum(foot, c[:2]) - 0.06, c[2] + 0.45])
        arm_hi = np.array([*np.maximum(foot, c[:2]) + 0.06, c[2] + 0.57])
        b.box(arm_lo, arm_hi, C["pole"])
    top = c[2] + (0.57 if not np.allclose(foot, c[:2]) else -0.5 * HEAD_H)
    b.box((foot[0] - 0.09, foot[1] - 0.09, 0.0), (foot[0] + 0.09, foot[1] + 0.09, top), C["pole"])


def lamp_quads(light: TrafficLight) -> dict[str, np.ndarray]:
    """Octagonal lamp discs (8 triangles each, as quads) on the housing front, per colour."""
    c, f, r = traffic_light_frame(light)
    up = np.array([0.0, 0.0, 1.0])
    out = {}
    for i, colour in enumerate(LAMP_ORDER):
        centre = c + (0.5 * HEAD_D + 0.01) * f + (0.36 - 0.36 * i) * up
        ang = np.radians(22.5 + 45 * np.arange(8))
        v = np.array([centre + LAMP_R * (math.cos(a) * r + math.sin(a) * up) for a in ang])
        tris = np.array([[centre, v[k], v[(k + 1) % 8], v[(k + 1) % 8]] for k in range(8)])
        n = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
        flip = (n @ f) < 0
        tris[flip] = tris[flip][:, ::-1]
        out[colour] = tris
    return out


def lamp_color(colour: str, state: str, t_end_us: int) -> tuple[tuple[float, float, float], bool]:
    """(RGB, lit) of the lamp ``colour`` for signal ``state`` at ``t_end_us`` (1 Hz blinking)."""
    blink_on = (int(t_end_us) // 500_000) % 2 == 0  # 0.5 s on, 0.5 s off
    lit = (state == colour) or (state == f"flashing_{colour}" and blink_on)
    return (LAMP_LIT[colour] if lit else LAMP_UNLIT[colour]), lit


def _trees(b: _Builder, scenario: Scenario, lo, hi) -> None:
    """A few roadside trees for depth cues, seeded by the scenario seed, kept off the road."""
    rng = np.random.default_rng(zlib.crc32(scenario.id.encode()) ^ int(scenario.seed))
    lanes = list(scenario.map.lanes.values())
    if not lanes:
        return
    pts = np.concatenate([lane.centerline_xy for lane in lanes])
    n = int(min(60, max(8, np.prod(hi - lo) / 900)))
    for _ in range(n * 3):
        if n <= 0:
            break
        p = lo + rng.random(2) * (hi - lo)
        d = np.min(np.linalg.norm(pts - p, axis=1))
        if not 9.0 < d < 35.0:
            continue
        ok = all(np.min(np.linalg.norm(cw.polygon_xy - p, axis=1)) > 8 for cw in scenario.map.crosswalks)
        if not ok:
            continue
        hgt = 4.0 + 3.0 * rng.random()
        b.box((p[0] - 0.15, p[1] - 0.15, 0.0), (p[0] + 0.15, p[1] + 0.15, 0.45 * hgt), C["trunk"])
        s = 1.2 + 0.8 * rng.random()
        b.frustum(0.4 * hgt, hgt, s, 0.5 * s, C["crown"], cx=p[0], cy=p[1])
        n -= 1


def build_static(scenario: Scenario, margin_m: float = 2000.0, trees: bool = True) -> Mesh:
    """Ground layers and static objects of the scenario's map, sun-shaded, in the local frame."""
    road_map = scenario.map
    b = _Builder()
    all_xy = [lane.centerline_xy for lane in road_map.lanes.values()] + [np.array([[scenario.ego.x_m, scenario.ego.y_m]])]
    xy = np.concatenate(all_xy)
    lo, hi = xy.min(axis=0) - 40.0, xy.max(axis=0) + 40.0
    glo, ghi = lo - margin_m, hi + margin_m
    b.add(np.array([[[glo[0], glo[1], 0], [ghi[0], glo[1], 0], [ghi[0], ghi[1], 0], [glo[0], ghi[1], 0]]]),
          C["grass"], layer=LAYER_GRASS)
    # Sidewalks outside every road edge, and the kerb stone along it.
    for edge in road_map.road_edges:
        pts, _ = _resample(edge.polyline_xy, 25.0)
        mid = len(pts) // 2
        i0 = min(mid, len(pts) - 2)
        t = pts[i0 + 1] - pts[i0]
        n = np.array([-t[1], t[0]]) / np.linalg.norm(t)
        side = -1.0 if _on_road(road_map, pts[i0] + 1.5 * n) else 1.0
        b.add(_strip(_offset(pts, side * 2.8), pts), C["sidewalk"], layer=LAYER_SIDEWALK)
        b.add(_strip(pts, _offset(pts, -side * 1.5)), C["road"], layer=LAYER_ROAD)  # paved shoulder
        b.add(_strip(_offset(pts, side * 0.25), pts), C["kerb"], layer=LAYER_PAINT)
    # Road surface: one strip per lane (junction connectors overlap, so each is its own group).
    for lane in road_map.lanes.values():
        s = np.unique(np.concatenate([np.arange(0.0, lane.length_m, 25.0), lane._s]))
        half = 0.5 * lane.width_at(s)
        left, right = lane.position(s, half + 0.02), lane.position(s, -half - 0.02)
        b.add(_strip(left, right), C["junction"] if lane.is_intersection else C["road"], layer=LAYER_ROAD)
    for inter in road_map.intersections:
        b.add(_fan(inter.polygon_xy), C["junction"], layer=LAYER_ROAD)
    # Markings (none inside junction boxes).
    for lane in road_map.lanes.values():
        if lane.is_intersection:
            continue
        _marking(b, lane.boundary("left", 25.0), lane.left_marking)
        _marking(b, lane.boundary("right", 25.0), lane.right_marking if lane.right_marking != "road_edge" else "solid_white")
    for sl in road_map.stop_lines:
        b.add(_line_quads(sl.segment_xy, 0.45), C["white"], layer=LAYER_PAINT)
    for cw in road_map.crosswalks:
        p = cw.polygon_xy[:4]
        e1, e2 = p[1] - p[0], p[3] - p[0]
        long_e, short_e = (e1, e2) if np.linalg.norm(e1) >= np.linalg.norm(e2) else (e2, e1)
        n_stripes = int(np.linalg.norm(long_e) / 1.0)
        quads = []
        for k in range(n_stripes):
            a0, a1 = (k + 0.25) / n_stripes, (k + 0.75) / n_stripes
            v = [p[0] + a0 * long_e, p[0] + a1 * long_e, p[0] + a1 * long_e + short_e, p[0] + a0 * long_e + short_e]
            quads.append(np.hstack([np.array(v), np.zeros((4, 1))]))
        b.add(np.array(quads), C["white"], layer=LAYER_PAINT)
    # Static objects.
    for sign in road_map.signs:
        _sign(b, sign)
    for light in scenario.traffic_lights:
        _traffic_light_static(b, light, road_map)
    if trees:
        _trees(b, scenario, lo, hi)
    m = b.mesh()
    obj = m.layer < 0
    color = m.color.copy()
    color[obj] *= shade(m.normals()[obj])[:, None]
    return Mesh(m.quads, np.clip(color, 0, 1), m.emissive, m.layer, m.group, m.decal)


# ----------------------------------------------------------------------------------------------
# Actor templates (template frame: x forward, y left, z up, origin = box centre on the ground)
# ----------------------------------------------------------------------------------------------
def _pick(palette, key: str):
    return palette[zlib.crc32(key.encode()) % len(palette)]


def _vehicle(b: _Builder, L, W, H, body, kind):
    hl, hw = 0.5 * L, 0.5 * W
    wr = 0.36 if kind == "car" else 0.5  # wheel radius
    for sx in (1, -1):
        for sy in (1, -1):
            x = sx * (hl - max(0.8, 0.17 * L))
            b.box((x - wr, sy * hw - 0.28 * (sy > 0) - 0.02 * (sy < 0), 0.0),
                  (x + wr, sy * hw + 0.02 * (sy > 0) + 0.28 * (sy < 0), 2 * wr), C["tyre"])
    glass = C["glass"]
    if kind == "car":
        z_belt = 0.62 * H
        b.box((-hl, -hw, 0.28), (hl, hw, z_belt), body)
        b.box((-0.36 * L, -0.44 * W, z_belt), (0.17 * L, 0.44 * W, H), glass, faces_color={"+z": body})
        front_z, rear_z = (0.5 * H, 0.58 * H), (0.5 * H, 0.58 * H)
    elif kind == "truck":
        cab = min(2.3, 0.3 * L)
        b.box((hl - cab, -hw, 0.45), (hl, hw, 0.82 * H), body, faces_color={"+x": glass})
        b.box((hl - cab, -hw, 0.45), (hl - cab + 0.01, hw, 0.46), body)
        b.box((-hl, -hw, 0.55), (hl - cab - 0.25, hw, H), (0.86, 0.86, 0.84))
        b.box((hl - 0.02, -0.45 * W, 0.5 * H), (hl + 0.005, 0.45 * W, 0.78 * H), glass, decal=True)
        front_z, rear_z = (0.25 * H, 0.3 * H), (0.2 * H, 0.25 * H)
    else:  # bus
        b.box((-hl, -hw, 0.35), (hl, hw, H), body)
        b.box((-hl + 0.5, hw, 0.52 * H), (hl - 0.4, hw + 0.01, 0.85 * H), glass, decal=True)
        b.box((-hl + 0.5, -hw - 0.01, 0.52 * H), (hl - 0.4, -hw, 0.85 * H), glass, decal=True)
        b.box((hl, -0.45 * W, 0.45 * H), (hl + 0.01, 0.45 * W, 0.9 * H), glass, decal=True)
        front_z, rear_z = (0.2 * H, 0.27 * H), (0.2 * H, 0.27 * H)
    for sy in (1, -1):
        y0, y1 = sorted((sy * (hw - 0.15), sy * (hw - 0.5)))
        b.add(np.array([[(hl + 0.012, y0, front_z[0]), (hl + 0.012, y1, front_z[0]), (hl + 0.012, y1, front_z[1]),
                         (hl + 0.012, y0, front_z[1])]]), C["headlamp"], emissive=True, outward=[[1, 0, 0]], decal=True)
        b.add(np.array([[(-hl - 0.012, y0, rear_z[0]), (-hl - 0.012, y1, rear_z[0]), (-hl - 0.012, y1, rear_z[1]),
                         (-hl - 0.012, y0, rear_z[1])]]), C["taillamp"], emissive=True, outward=[[-1, 0, 0]], decal=True)


def _person(b: _Builder, H, shirt, x0=0.0, z0=0.0, seated=False):
    s = H / 1.75
    if not seated:
        for sy, sx in ((1, 0.10), (-1, -0.10)):  # mid-stride legs
            b.box((x0 + sx - 0.07 * s, sy * 0.1 * s - 0.07 * s, z0), (x0 + sx + 0.07 * s, sy * 0.1 * s + 0.07 * s, z0 + 0.82 * s),
                  C["trousers"])
    else:
        b.box((x0 - 0.05, -0.17 * s, z0 - 0.35 * s), (x0 + 0.25, 0.17 * s, z0 + 0.05), C["trousers"])
    tz = z0 + (0.82 * s if not seated else 0.0)
    b.box((x0 - 0.12 * s, -0.2 * s, tz), (x0 + 0.12 * s, 0.2 * s, tz + 0.6 * s), shirt)
    for sy in (1, -1):  # arms
        b.box((x0 - 0.05 * s, sy * 0.27 * s - 0.06 * s, tz + 0.05 * s), (x0 + 0.07 * s, sy * 0.27 * s + 0.06 * s, tz + 0.58 * s),
              shirt)
    b.box((x0 - 0.1 * s, -0.1 * s, tz + 0.63 * s), (x0 + 0.1 * s, 0.1 * s, tz + 0.9 * s), C["skin"])


def actor_template(actor: ActorSpec) -> Mesh:
    """Unshaded template mesh of an actor in its own frame (box centre on the ground)."""
    b = _Builder()
    L, W, H = actor.length_m, actor.width_m, actor.height_m
    kind = actor.kind
    if kind in ("car", "parked_car"):
        _vehicle(b, L, W, H, _pick(CAR_PALETTE, actor.id), "car")
    elif kind == "truck":
        _vehicle(b, L, W, H, _pick([(0.2, 0.3, 0.6), (0.7, 0.1, 0.1), (0.9, 0.9, 0.9), (0.2, 0.5, 0.25)], actor.id), "truck")
    elif kind == "bus":
        _vehicle(b, L, W, H, _pick([(0.95, 0.75, 0.1), (0.2, 0.45, 0.75), (0.85, 0.85, 0.85)], actor.id), "bus")
    elif kind == "pedestrian":
        _person(b, H, _pick(SHIRT_PALETTE, actor.id))
    elif kind == "cyclist":
        hl = 0.5 * L
        for x in (hl - 0.33, -hl + 0.33):
            b.box((x - 0.33, -0.03, 0.0), (x + 0.33, 0.03, 0.66), C["tyre"])
        b.box((-hl + 0.33, -0.03, 0.45), (hl - 0.33, 0.03, 0.55), (0.15, 0.35, 0.75))
        _person(b, H * 0.95, _pick(SHIRT_PALETTE, actor.id), x0=-0.1, z0=0.9, seated=True)
    elif kind == "cone":
        b.box((-0.5 * L, -0.5 * W, 0.0), (0.5 * L, 0.5 * W, 0.04), (0.1, 0.1, 0.1))
        segs = [(0.04, 0.35, 0.16, C["orange"]), (0.35, 0.5, 0.12, C["cone_white"]), (0.5, H, 0.09, C["orange"])]
        for z0, z1, half, col in segs:
            b.frustum(z0 * (H / 0.75) if z0 > 0.04 else z0, z1 * (H / 0.75) if z1 != H else H,
                      half * W / 0.4, (half - 0.04) * W / 0.4 if z1 != H else 0.02, col)
    elif kind == "barrier":
        n = 5
        for k in range(n):
            x0 = -0.5 * L + k * L / n
            b.box((x0, -0.5 * W + 0.1, 0.55 * H), (x0 + L / n, 0.5 * W - 0.1, H),
                  (0.9, 0.1, 0.05) if k % 2 == 0 else C["cone_white"])
        for sx in (-1, 1):
            b.box((sx * (0.5 * L - 0.15) - 0.05, -0.5 * W, 0.0), (sx * (0.5 * L - 0.15) + 0.05, 0.5 * W, 0.55 * H), C["pole"])
    elif kind == "debris":
        rng = np.random.default_rng(zlib.crc32(actor.id.encode()))
        for _ in range(3):
            c = (rng.random(2) - 0.5) * np.array([L, W]) * 0.5
            s = (0.3 + 0.4 * rng.random(3)) * np.array([L, W, H]) * 0.6
            b.box((c[0] - s[0], c[1] - s[1], 0.0), (c[0] + s[0], c[1] + s[1], s[2] * 1.6), C["debris"])
    elif kind == "animal":
        b.box((-0.5 * L, -0.5 * W, 0.5 * H), (0.35 * L, 0.5 * W, 0.9 * H), C["animal"])
        b.box((0.3 * L, -0.3 * W, 0.7 * H), (0.5 * L, 0.3 * W, H), C["animal"])
        for sx in (0.25, -0.4):
            for sy in (1, -1):
                b.box((sx * L - 0.05, sy * 0.3 * W - 0.05, 0.0), (sx * L + 0.05, sy * 0.3 * W + 0.05, 0.5 * H), C["animal"])
    else:  # unknown kinds render as a grey box
        b.box((-0.5 * L, -0.5 * W, 0.0), (0.5 * L, 0.5 * W, H), (0.5, 0.5, 0.5))
    return b.mesh()


class DynamicScene:
    """Per-scenario dynamic content: actor templates and signal lamps, placed per frame."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.templates = {a.id: actor_template(a) for a in scenario.actors}
        self._normals = {k: m.normals() for k, m in self.templates.items()}
        self.lamps = [(light, lamp_quads(light)) for light in scenario.traffic_lights]
        lamp_n = sum(8 * 3 for _ in self.lamps)
        self.max_quads = sum(len(m) for m in self.templates.values()) + lamp_n

    def mesh(self, world_state: WorldState, t_end_us: int) -> Mesh:
        """Everything that moves or changes colour, in the local frame, sun-shaded."""
        quads, colors, emis, decal = [], [], [], []
        for aid, st in world_state.actors.items():
            tmpl = self.templates.get(aid)
            if tmpl is None or not st.visible or not len(tmpl):
                continue
            c, s = math.cos(st.yaw_rad), math.sin(st.yaw_rad)
            R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            quads.append(tmpl.quads @ R.T + np.array([st.x_m, st.y_m, 0.0]))
            sh = np.where(tmpl.emissive, 1.0, shade(self._normals[aid] @ R.T))
            colors.append(tmpl.color * sh[:, None])
            emis.append(tmpl.emissive)
            decal.append(tmpl.decal)
        for light, lamp in self.lamps:
            state = world_state.signals.get(light.id, "dark")
            for colour, tris in lamp.items():
                rgb, lit = lamp_color(colour, state, t_end_us)
                quads.append(tris)
                colors.append(np.broadcast_to(np.asarray(rgb), (len(tris), 3)))
                emis.append(np.full(len(tris), lit))
                decal.append(np.ones(len(tris), bool))
        if not quads:
            return Mesh.empty()
        q = np.concatenate(quads)
        return Mesh(q, np.clip(np.concatenate(colors), 0, 1), np.concatenate(emis),
                    np.full(len(q), LAYER_OBJECT, np.int8), np.zeros(len(q), np.int32), np.concatenate(decal))
