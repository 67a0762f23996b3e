"""Headless OpenGL renderer (moderngl + EGL, Mesa llvmpipe on CPU), bound to one scenario.

Snippet D of spec/environment.md: ``moderngl.create_context(standalone=True, backend="egl")``,
projection built from OpenCV intrinsics. The static mesh is uploaded once; the dynamic mesh
(actors, lamps) once per world state and reused for every camera of that frame. Ground layers
are drawn first in layer order without depth test (they are coplanar), then objects with a
z-buffer and back-face culling. F-theta cameras are pinhole tiles plus ``cv2.remap`` or, with
``ftheta="direct"``, one pass whose vertex shader applies the f-theta polynomial to geometry the
CPU tessellates per frame near the car (render/tessellate.py), so that straight edges bend as the
lens bends them; far triangles come unchanged from a static buffer.

The grass layer is the whole ground plane (2 km beyond the map), fixed in the rig frame as far as
the camera sees it, so (without MSAA) it is not drawn: each pass starts from a precomputed
background image (sky, and grass lit and hazed per pixel as the shader would) uploaded into the
colour texture, which costs less than the clear alone and saves ~a third of the fill on llvmpipe.
"""

from __future__ import annotations

import numpy as np

from cordillera.render.raster import (
    FAR_M, NEAR_M, FthetaView, PinholePass, apply_ground_look, finish, ground_maps, ground_maps_for_rays,
    make_ftheta_view, make_passes, rain_streaks, tile_view,
)
from cordillera.render.rig import Rig, default_rig
from cordillera.render.tessellate import bounding_spheres, max_turn_bound, step_for_sag, tessellate
from cordillera.render.scene import (
    HEADLIGHT_FALLOFF_M, HEADLIGHT_INNER_DEG, HEADLIGHT_OUTER_DEG, HEADLIGHT_PEAK, HEADLIGHT_RIG_M, LAYER_GRASS, DynamicScene,
    Mesh, build_static, look_for,
)
from cordillera.world.scenario import Scenario, WorldState

__all__ = ["GLRenderer", "egl_context", "egl_available", "projection_from_intrinsics"]

_CTX = None
_CTX_ERROR: str | None = None


def egl_context():
    """The process-wide moderngl EGL context (created on first use). Raises RuntimeError if EGL
    does not work here."""
    global _CTX, _CTX_ERROR
    if _CTX is not None:
        return _CTX
    if _CTX_ERROR is not None:
        raise RuntimeError(_CTX_ERROR)
    try:
        import moderngl

        _CTX = moderngl.create_context(standalone=True, backend="egl")
    except Exception as e:  # any failure (missing lib, no device) means "use the fallback"
        _CTX_ERROR = f"moderngl EGL context unavailable: {type(e).__name__}: {e}"
        raise RuntimeError(_CTX_ERROR) from None
    return _CTX


def egl_available() -> bool:
    try:
        egl_context()
        return True
    except RuntimeError:
        return False


def projection_from_intrinsics(fx, fy, cx, cy, width, height, near=NEAR_M, far=FAR_M) -> np.ndarray:
    """OpenGL clip matrix for an OpenCV pinhole (pixel centres at integers), applied to GL eye
    coordinates (optical frame with y and z flipped)."""
    cxg, cyg = cx + 0.5, cy + 0.5  # GL pixel centres sit at i + 0.5
    return np.array([
        [2 * fx / width, 0, 1 - 2 * cxg / width, 0],
        [0, 2 * fy / height, 2 * cyg / height - 1, 0],
        [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, -1, 0],
    ])


_OPTICAL_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])

_VS = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
in vec3 in_col;
in float in_emis;
out vec3 v_world;
flat out vec3 v_col;  // one colour per quad: flat saves llvmpipe the interpolation
flat out float v_emis;
void main() {
    v_world = in_pos;
    v_col = in_col;
    v_emis = in_emis;
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""

_FS = """
uniform vec3 cam_pos;
uniform vec3 head_pos;
uniform vec3 head_fwd;
uniform vec3 head_left;
uniform float light_scale;
uniform float head_gain;
uniform float fog_dist;
uniform vec3 fog_rgb;
uniform float cos_outer;
uniform float cos_inner;
uniform float head_peak;
uniform float head_falloff;
in vec3 v_world;
flat in vec3 v_col;
flat in float v_emis;
out vec4 f_color;
void main() {
    vec3 col = v_col;
    float fd = fog_dist;
    if (v_emis < 0.5) {
#ifdef HEADLIGHTS
        vec3 d = v_world - head_pos;
        vec3 q = vec3(dot(d, head_fwd), dot(d, head_left), d.z);
        float dist = length(q);
        float cosang = q.x / max(dist, 1e-6);
        float cone = smoothstep(cos_outer, cos_inner, cosang);
        float head = q.x > 0.5 ? head_peak * cone / (1.0 + (dist / head_falloff) * (dist / head_falloff)) : 0.0;
        col = col * (light_scale + head_gain * head);
#else
        col = col * light_scale;
#endif
    } else {
        fd = fog_dist * 3.0;
    }
    float fog = 1.0 - exp(-length(v_world - cam_pos) / fd);
    f_color = vec4(mix(col, fog_rgb, fog), 1.0);
}
"""


# Direct f-theta path: the CPU cuts the triangles finely enough (render/tessellate.py) and the
# vertex shader projects every vertex with the lens polynomial. Clip coordinates are the pixel
# mapped to [-1, 1] with w = 1 (no perspective division); depth is the distance from the camera
# mapped linearly from [near, far] to [-1, 1]; gl_ClipDistance[0] cuts away whatever lies beyond
# the lens' clip angle, behind the camera included.
_VS_DIRECT = """
#version 330
uniform mat4 cam_from_world;  // origin-relative local -> camera optical frame
uniform float fw_poly[6];  // r [px] = sum fw_poly[i] theta^i, zero-padded
uniform vec2 principal_px;  // (cx, cy), OpenCV pixel centres
uniform vec2 size_px;  // (width, height)
uniform float theta_clip;  // [rad] nothing beyond this angle from the axis is drawn
uniform float theta_mono;  // [rad] fw_poly increases up to here; beyond lies outside the image
uniform vec2 depth_m;  // (near, far)
uniform bool skip_near;  // static buffer: leave out the triangles the CPU tessellates this frame
uniform vec3 eye_centre;  // every direct camera is within eye_radius [m] of eye_centre
uniform float eye_radius;
uniform float near_turn_rad;  // tessellate.max_turn_bound above this: tessellated on the CPU
in vec3 in_pos;
in vec3 in_col;
in float in_emis;
in vec4 in_bound;  // static buffer: bounding sphere (centre, radius) of the vertex's triangle
out vec3 v_world;
flat out vec3 v_col;
flat out float v_emis;
out float gl_ClipDistance[2];
void main() {
    gl_ClipDistance[1] = 1.0;
    if (skip_near) {  // same decision for the three corners: the triangle is kept or dropped whole
        float D = length(in_bound.xyz - eye_centre);
        float gap = D - eye_radius - in_bound.w;
        bool near = gap <= 0.0 || 2.0 * in_bound.w * (D + eye_radius + in_bound.w) > near_turn_rad * gap * gap;
        gl_ClipDistance[1] = near ? -1.0 : 1.0;
    }
    v_world = in_pos;
    v_col = in_col;
    v_emis = in_emis;
    vec3 p = (cam_from_world * vec4(in_pos, 1.0)).xyz;
    float rho = length(p.xy);
    float theta = atan(rho, p.z);
    float t = min(theta, theta_mono);  // clipped anyway; keeps the polynomial from folding back
    float r = fw_poly[5];
    for (int i = 4; i >= 0; --i)
        r = r * t + fw_poly[i];
    vec2 uv = principal_px + (rho > 1e-12 ? (r / rho) * p.xy : vec2(0.0));
    gl_Position = vec4(2.0 * (uv.x + 0.5) / size_px.x - 1.0, 1.0 - 2.0 * (uv.y + 0.5) / size_px.y,
                       2.0 * (length(p) - depth_m.x) / (depth_m.y - depth_m.x) - 1.0, 1.0);
    gl_ClipDistance[0] = theta_clip - theta;
}
"""
_FTHETA_MODES = ("tiles", "direct")
_GL_CLIP_DISTANCE = (0x3000, 0x3001)  # GL_CLIP_DISTANCE0/1, not among moderngl's enable flags
NEAR_MARGIN = 0.9  # the CPU tessellates triangles whose turn bound exceeds this fraction of the
# shader's threshold, so float32 rounding in the shader can only draw a triangle twice, never 0 times
SAG_PX = 0.5  # [px] most a tessellated straight edge may depart from its true curved image
GROUND_SPLIT_M = 4.0  # [m] ground quads are cut to this edge length once: a long quad near the car
# would otherwise be cut on one fine grid over its whole length


def _tri_data(m: Mesh, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(triangles (2Q, 3, 3) relative to ``origin``, per-triangle attributes (2Q, 4): colour, emissive)."""
    attrs = np.hstack([m.color, m.emissive.astype(float)[:, None]])
    return m.triangles() - origin, np.repeat(attrs, 2, axis=0)


def _vertex_rows(tris: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """(T·3, 7) float32 rows of a "3f 3f 1f" buffer: position, colour, emissive per vertex."""
    return np.hstack([tris.reshape(-1, 3), np.repeat(attrs, 3, axis=0)]).astype(np.float32)


def _vertex_data(m: Mesh, origin: np.ndarray) -> np.ndarray:
    """(2Q·3, 7) float32 rows of mesh ``m``: position (relative to ``origin``), colour, emissive."""
    return _vertex_rows(*_tri_data(m, origin))


def _ranges(layer: np.ndarray, ground_layers: list[int]) -> list[tuple[int, int]]:
    """(first vertex, vertex count) of each ground layer and then of the objects (layer −1) in a
    triangle list sorted ground-by-layer first, objects last."""
    order = np.where(layer < 0, np.iinfo(np.int64).max, layer)
    bounds = np.searchsorted(order, ground_layers + [np.iinfo(np.int64).max, np.iinfo(np.int64).max], side="left")
    bounds[-1] = len(layer)
    return [(3 * int(a), 3 * int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]


def _split_quads(m: Mesh, max_edge_m: float) -> Mesh:
    """Each quad cut bilinearly into an n×k grid of quads with edges ≤ ``max_edge_m`` (flat ground
    quads stay in their plane); colour, layer and the rest are repeated per piece."""
    q = m.quads  # (Q, 4, 3)
    n_u = np.maximum(1, np.ceil(np.maximum(np.linalg.norm(q[:, 1] - q[:, 0], axis=1),
                                           np.linalg.norm(q[:, 2] - q[:, 3], axis=1)) / max_edge_m)).astype(int)
    n_v = np.maximum(1, np.ceil(np.maximum(np.linalg.norm(q[:, 3] - q[:, 0], axis=1),
                                           np.linalg.norm(q[:, 2] - q[:, 1], axis=1)) / max_edge_m)).astype(int)
    pieces, idx = [], []
    for i, (nu, nv) in enumerate(zip(n_u, n_v)):
        s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
        s, t = s[..., None], t[..., None]
        g = (1 - s) * (1 - t) * q[i, 0] + s * (1 - t) * q[i, 1] + s * t * q[i, 2] + (1 - s) * t * q[i, 3]  # (nu+1, nv+1, 3)
        cell = np.stack([g[:-1, :-1], g[1:, :-1], g[1:, 1:], g[:-1, 1:]], axis=2).reshape(-1, 4, 3)  # same winding
        pieces.append(cell)
        idx.append(np.full(len(cell), i))
    if not pieces:
        return m
    idx = np.concatenate(idx)
    taken = m.take(idx)
    return Mesh(np.concatenate(pieces), taken.color, taken.emissive, taken.layer, taken.group, taken.decal)


class GLRenderer:
    """``Renderer`` protocol implementation (sim/runtime.py) on moderngl + EGL."""

    backend = "gl"

    def __init__(self, scenario: Scenario, rig: Rig | None = None, pass_scale: float = 1.0, msaa: int = 0,
                 grass_background: bool = True, ftheta: str = "tiles"):
        """``ftheta``: how f-theta cameras are drawn. ``"tiles"``: pinhole tiles + ``cv2.remap``;
        ``"direct"``: projected per vertex on CPU-tessellated geometry (no tiles, no remap; needs
        the grass background and no MSAA; slower on llvmpipe, see benchmarks/RESULTS.md
        ``render_speed``). Pinhole cameras always get one pinhole pass."""
        import moderngl

        if ftheta not in _FTHETA_MODES:
            raise ValueError(f"ftheta must be one of {_FTHETA_MODES}, got {ftheta!r}")
        if ftheta == "direct" and (msaa or not grass_background):
            raise ValueError(f"ftheta='direct' draws no grass quad and no MSAA, got msaa={msaa}, "
                             f"grass_background={grass_background}")
        self.ftheta = ftheta

        self._mgl = moderngl
        self.scenario = scenario
        self.rig = rig if rig is not None else default_rig()
        self.look = look_for(scenario.conditions)
        self.msaa = int(msaa)
        self.pass_scale = pass_scale
        ctx = egl_context()
        self.ctx = ctx
        self.origin = np.array([round(scenario.ego.x_m), round(scenario.ego.y_m), 0.0])
        # Day scenes compile without the headlight code: the fragment shader is the fill-rate cost.
        header = "#version 330\n" + ("#define HEADLIGHTS\n" if self.look.headlight_gain > 0 else "")
        self.prog = ctx.program(vertex_shader=_VS, fragment_shader=header + _FS)
        self.prog_direct = None
        if ftheta == "direct":
            self.prog_direct = ctx.program(vertex_shader=_VS_DIRECT, fragment_shader=header + _FS)
            self.prog_direct["depth_m"].value = (NEAR_M, FAR_M)
        self._progs = [p for p in (self.prog, self.prog_direct) if p is not None]
        static = build_static(scenario)
        ground, objects = static.sorted_ground(), static.take(np.flatnonzero(static.layer < 0))
        grass = np.flatnonzero(ground.layer == LAYER_GRASS)  # layer 0: first in the sorted ground
        self._grass_rgb = tuple(map(float, ground.color[grass[0]])) if len(grass) else None
        # Vertices to skip at the start of the ground buffer when the background carries the grass
        # (``grass_background=False``: draw it, the slower first version, kept for the benchmark).
        self._grass_vertices = 6 * len(grass) if grass_background and not self.msaa else 0
        self._backgrounds: dict[int, bytes] = {}  # id(pass) -> GL-row-order RGB background
        self._buffers = []
        self.vao_ground, self.n_ground = self._static_vao(ground)
        self.vao_objects, self.n_objects = self._static_vao(objects)
        self.dynamic = DynamicScene(scenario)
        cap = max(1, self.dynamic.max_quads) * 6 * 7 * 4
        self.vbo_dyn = ctx.buffer(reserve=cap, dynamic=True)
        self._buffers.append(self.vbo_dyn)
        self.vao_dyn = self._vao(self.prog, self.vbo_dyn)
        self._views: dict[str, FthetaView] = {}
        if self.prog_direct is not None:
            ground_direct = _split_quads(ground.take(np.flatnonzero(ground.layer != LAYER_GRASS)), GROUND_SPLIT_M)
            both = Mesh.concat([ground_direct, objects])  # ground first, in layer order
            tris, attrs = _tri_data(both, self.origin)
            layer = np.repeat(both.layer.astype(int), 2)
            self._static = (tris, attrs, layer, bounding_spheres(tris))
            # Ranges of the static buffer per ground layer, then the objects.
            self._layers = [int(v) for v in np.unique(layer[layer >= 0])]
            self._static_ranges = _ranges(layer, self._layers)
            rows = np.hstack([tris.reshape(-1, 3), np.repeat(attrs, 3, axis=0), np.repeat(self._static[3], 3, axis=0)])
            vbo = ctx.buffer(rows.astype(np.float32).tobytes())
            self.vbo_direct = ctx.buffer(reserve=1 << 20, dynamic=True)
            self._buffers += [vbo, self.vbo_direct]
            self.vao_static_direct = ctx.vertex_array(self.prog_direct, [(vbo, "3f 3f 1f 4f", "in_pos", "in_col", "in_emis", "in_bound")])
            self.vao_direct = self._vao(self.prog_direct, self.vbo_direct)
            self._direct_ranges: list[tuple[int, int]] = []  # (first vertex, count): near pieces per layer, objects, actors
            self._direct_key = None
        self.n_dyn = 0
        self._dyn_key = None
        self._passes: dict[str, list[PinholePass]] = {}
        self._fbos: dict[tuple[int, int], tuple] = {}
        self._set("light_scale", self.look.light_scale)
        self._set("head_gain", self.look.headlight_gain)
        self._set("fog_dist", self.look.fog_distance_m)
        self._set("fog_rgb", tuple(self.look.fog_rgb))
        self._set("cos_outer", float(np.cos(np.radians(HEADLIGHT_OUTER_DEG))))
        self._set("cos_inner", float(np.cos(np.radians(HEADLIGHT_INNER_DEG))))
        self._set("head_peak", HEADLIGHT_PEAK)
        self._set("head_falloff", HEADLIGHT_FALLOFF_M)

    def _set(self, name: str, value, progs=None) -> None:
        for prog in progs if progs is not None else self._progs:
            if name in prog:  # the compiler drops uniforms a shader variant does not use
                prog[name].value = value

    def _vao(self, prog, vbo):
        return self.ctx.vertex_array(prog, [(vbo, "3f 3f 1f", "in_pos", "in_col", "in_emis")])

    def _static_vao(self, m: Mesh, prog=None):
        if not len(m):
            return None, 0
        data = _vertex_data(m, self.origin)
        vbo = self.ctx.buffer(data.tobytes())
        self._buffers.append(vbo)
        return self._vao(prog if prog is not None else self.prog, vbo), len(data)

    # -- Renderer protocol ---------------------------------------------------------------------
    def cameras(self) -> list[str]:
        return self.rig.names

    def render(self, world_state: WorldState, camera: str, t_start_us: int, t_end_us: int) -> np.ndarray:
        """HxWx3 uint8 RGB image of ``camera`` at the end-of-frame state ``world_state``."""
        cam = self.rig.camera(camera)
        self._upload_dynamic(world_state, t_end_us)
        if cam.model == "ftheta" and self.ftheta == "direct":
            self._upload_direct(world_state, t_end_us)
            out = self._draw(self._view(cam), world_state)
        else:
            passes = self._passes.get(camera)
            if passes is None:
                passes = self._passes[camera] = make_passes(cam, self.pass_scale)
            out = finish(passes, [self._draw(p, world_state) for p in passes])
        if self.look.rain:
            out = rain_streaks(out, t_end_us, camera, brightness=self.look.light_scale)
        return out

    def close(self) -> None:
        for fb in self._fbos.values():
            for obj in fb:
                obj.release()
        for b in self._buffers:
            b.release()
        self._fbos.clear()
        self._buffers.clear()

    # -- internals -----------------------------------------------------------------------------
    def _upload_dynamic(self, ws: WorldState, t_end_us: int) -> None:
        key = (id(ws), ws.t_us, int(t_end_us))
        if key == self._dyn_key:
            return
        m = self._dyn_mesh = self.dynamic.mesh(ws, t_end_us)
        if len(m):
            data = _vertex_data(m, self.origin)
            if data.nbytes > self.vbo_dyn.size:
                self.vbo_dyn.orphan(data.nbytes)
            self.vbo_dyn.write(data.tobytes())
            self.n_dyn = len(data)
        else:
            self.n_dyn = 0
        self._dyn_key = key

    def _upload_direct(self, ws: WorldState, t_end_us: int) -> None:
        """Tessellate, for the eyes of every direct camera at this state, the static triangles near
        enough to need it (the shader drops them from the static buffer) and all actors; upload
        them as one buffer shared by the cameras of this state."""
        key = (id(ws), ws.t_us, int(t_end_us))
        if key == self._direct_key:
            return
        views = [self._view(c) for c in self.rig if c.model == "ftheta"]
        poses = [tile_view(ws.ego, v) for v in views]  # (R, t, eye): p_cam = R @ p_local + t
        eyes = np.array([eye for _, _, eye in poses]) - self.origin
        R = np.array([R for R, _, _ in poses])
        steps = np.array([step_for_sag(v.cam.focal_px, SAG_PX) for v in views])
        tan_max = np.array([(v.tan_x_max, v.tan_y_max) for v in views])
        centre = eyes.mean(axis=0)
        radius = float(np.linalg.norm(eyes - centre, axis=1).max()) + 1e-3
        turn_max = float(steps.min())  # untessellated triangles must satisfy every camera
        self.prog_direct["eye_centre"].value = tuple(centre.tolist())
        self.prog_direct["eye_radius"].value = radius
        self.prog_direct["near_turn_rad"].value = turn_max

        tris, attrs, layer, spheres = self._static
        near = np.flatnonzero(max_turn_bound(spheres, centre, radius) > NEAR_MARGIN * turn_max)
        pieces, src = tessellate(tris[near], eyes, steps, R, tan_max)
        src = near[src]
        dyn_tris, dyn_attrs = _tri_data(self._dyn_mesh, self.origin)
        dyn_near = max_turn_bound(bounding_spheres(dyn_tris), centre, radius) > NEAR_MARGIN * turn_max
        dyn_pieces, dyn_src = tessellate(dyn_tris[dyn_near], eyes, steps, R, tan_max)
        far = np.flatnonzero(~dyn_near)
        all_tris = np.concatenate([pieces, dyn_tris[far], dyn_pieces])
        all_attrs = np.concatenate([attrs[src], dyn_attrs[far], dyn_attrs[np.flatnonzero(dyn_near)[dyn_src]]])
        data = _vertex_rows(all_tris, all_attrs).tobytes()
        if len(data) > self.vbo_direct.size:
            self.vbo_direct.orphan(2 * len(data))
        self.vbo_direct.write(data)
        # static pieces per ground layer, static objects, then all actors
        self._direct_ranges = _ranges(layer[src], self._layers) + [(3 * len(pieces), 3 * (len(all_tris) - len(pieces)))]
        self._direct_key = key

    def _fbo(self, w: int, h: int):
        fb = self._fbos.get((w, h))
        if fb is None:
            ctx = self.ctx
            if self.msaa:
                color = ctx.renderbuffer((w, h), 3, samples=self.msaa)
                depth = ctx.depth_renderbuffer((w, h), samples=self.msaa)
                ms = ctx.framebuffer([color], depth)
                rc = ctx.renderbuffer((w, h), 3)
                resolve = ctx.framebuffer([rc])
                fb = (ms, color, depth, resolve, rc)
            else:  # a texture, so that the background can be written into it
                color = ctx.texture((w, h), 3)
                depth = ctx.depth_renderbuffer((w, h))
                fb = (ctx.framebuffer([color], depth), color, depth)
            self._fbos[(w, h)] = fb
        return fb

    def _background(self, p: PinholePass | FthetaView) -> bytes:
        """Sky and the lit, hazed grass plane of pass ``p``, rows bottom-up (GL order)."""
        bg = self._backgrounds.get(id(p))
        if bg is None:
            direct = isinstance(p, FthetaView)
            gm = ground_maps_for_rays(p.rays, p.cam.T_rig_camera) if direct else ground_maps(p)
            img = np.empty((p.height, p.width, 3))
            img[:] = self.look.sky_rgb
            img[gm.hits] = self._grass_rgb
            img = apply_ground_look(img, gm, self.look)
            if direct:
                img[~p.valid] = 0.0  # black beyond the clip angle, as the tile path's remap leaves it
            bg = self._backgrounds[id(p)] = np.round(np.clip(img[::-1], 0, 1) * 255).astype(np.uint8).tobytes()
        return bg

    def _view(self, cam) -> FthetaView:
        v = self._views.get(cam.name)
        if v is None:
            if len(cam.fw_poly) > 6:
                raise ValueError(f"camera {cam.name}: the direct path takes fw_poly up to degree 5, got {len(cam.fw_poly)} terms")
            v = self._views[cam.name] = make_ftheta_view(cam)
        return v

    def _set_direct_lens(self, v: FthetaView) -> None:
        cam, prog = v.cam, self.prog_direct
        prog["fw_poly"].value = tuple(cam.fw_poly) + (0.0,) * (6 - len(cam.fw_poly))
        prog["principal_px"].value = (cam.cx, cam.cy)
        prog["size_px"].value = (float(cam.width), float(cam.height))
        prog["theta_clip"].value = v.theta_clip_rad
        prog["theta_mono"].value = v.theta_mono_rad

    def _draw(self, p: PinholePass | FthetaView, ws: WorldState) -> np.ndarray:
        """One pinhole pass (a tile or a whole pinhole camera) or one direct f-theta view."""
        mgl, ctx = self._mgl, self.ctx
        direct = isinstance(p, FthetaView)
        prog = self.prog_direct if direct else self.prog
        fb = self._fbo(p.width, p.height)
        R, t, cam_pos = tile_view(ws.ego, p)
        T_cam_local = np.eye(4)
        T_cam_local[:3, :3] = R
        T_cam_local[:3, 3] = t + R @ self.origin  # vertex positions are relative to origin
        if direct:
            prog["cam_from_world"].write(T_cam_local.T.astype("f4").tobytes())
            self._set_direct_lens(p)
        else:
            P = projection_from_intrinsics(p.fx, p.fy, p.cx, p.cy, p.width, p.height)
            mvp = P @ _OPTICAL_TO_GL @ T_cam_local
            prog["mvp"].write(mvp.T.astype("f4").tobytes())
        prog["cam_pos"].value = tuple((cam_pos - self.origin).tolist())
        c, s = np.cos(ws.ego.yaw_rad), np.sin(ws.ego.yaw_rad)
        head = np.array([ws.ego.x_m + c * HEADLIGHT_RIG_M[0], ws.ego.y_m + s * HEADLIGHT_RIG_M[0], ws.ego.z_m + HEADLIGHT_RIG_M[2]])
        self._set("head_pos", tuple((head - self.origin).tolist()), [prog])
        self._set("head_fwd", (float(c), float(s), 0.0), [prog])
        self._set("head_left", (float(-s), float(c), 0.0), [prog])
        fbo = fb[0]
        fbo.use()
        ctx.viewport = (0, 0, p.width, p.height)
        if self._grass_vertices:
            fb[1].write(self._background(p), alignment=1)
            fbo.color_mask = (False, False, False, False)  # clear the depth only
            fbo.clear(depth=1.0)
            fbo.color_mask = (True, True, True, True)
            fbo.use()  # moderngl applies the colour mask when the framebuffer is bound
        else:
            fbo.clear(*self.look.sky_rgb, 1.0, depth=1.0)
        ctx.disable(mgl.DEPTH_TEST | mgl.CULL_FACE)
        if direct:
            self._draw_direct_geometry()
        else:
            skip = self._grass_vertices
            if self.vao_ground is not None and self.n_ground > skip:
                self.vao_ground.render(mgl.TRIANGLES, vertices=self.n_ground - skip, first=skip)
            ctx.enable(mgl.DEPTH_TEST | mgl.CULL_FACE)
            if self.vao_objects is not None:
                self.vao_objects.render(mgl.TRIANGLES, vertices=self.n_objects)
            if self.n_dyn:
                self.vao_dyn.render(mgl.TRIANGLES, vertices=self.n_dyn)
        if self.msaa:
            ctx.copy_framebuffer(fb[3], fbo)
            fbo = fb[3]
        raw = fbo.read(components=3, alignment=1)
        return np.frombuffer(raw, np.uint8).reshape(p.height, p.width, 3)[::-1]

    def _draw_direct_geometry(self) -> None:
        """Ground without depth test, layer by layer (the static part, then this frame's
        tessellated part), then objects and actors with depth test and back-face culling."""
        mgl, ctx, prog = self._mgl, self.ctx, self.prog_direct
        for c in _GL_CLIP_DISTANCE:
            ctx.enable_direct(c)
        static, near = self._static_ranges, self._direct_ranges
        for i in range(len(self._layers) + 1):
            if i == len(self._layers):
                ctx.enable(mgl.DEPTH_TEST | mgl.CULL_FACE)
            for vao, (first, count), skip in ((self.vao_static_direct, static[i], True), (self.vao_direct, near[i], False)):
                if count:
                    prog["skip_near"].value = skip
                    vao.render(mgl.TRIANGLES, vertices=count, first=first)
        if near[-1][1]:
            self.vao_direct.render(mgl.TRIANGLES, vertices=near[-1][1], first=near[-1][0])
        for c in _GL_CLIP_DISTANCE:
            ctx.disable_direct(c)
