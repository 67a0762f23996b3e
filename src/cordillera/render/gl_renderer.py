"""Headless OpenGL renderer (moderngl + EGL, Mesa llvmpipe on CPU), bound to one scenario.

Snippet D of spec/environment.md: ``moderngl.create_context(standalone=True, backend="egl")``,
projection built from OpenCV intrinsics. The static mesh is uploaded once; the dynamic mesh
(actors, lamps) once per world state and reused for every camera of that frame. Ground layers
are drawn first in layer order without depth test (they are coplanar), then objects with a
z-buffer and back-face culling. F-theta cameras are a pinhole pass plus ``cv2.remap``.

The grass layer is the whole ground plane (2 km beyond the map), fixed in the rig frame as far as
the camera sees it, so (without MSAA) it is not drawn: each pass starts from a precomputed
background image (sky, and grass lit and hazed per pixel as the shader would) uploaded into the
colour texture, which costs less than the clear alone and saves ~a third of the fill on llvmpipe.
"""

from __future__ import annotations

import numpy as np

from cordillera.render.raster import (
    FAR_M, NEAR_M, PinholePass, apply_ground_look, finish, ground_maps, make_passes, rain_streaks, tile_view,
)
from cordillera.render.rig import Rig, default_rig
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


def _vertex_data(m: Mesh, origin: np.ndarray) -> np.ndarray:
    """(2Q·3, 7) float32 rows: position (relative to ``origin``), colour, emissive."""
    tris = m.triangles() - origin  # (2Q, 3, 3)
    col = np.repeat(m.color, 6, axis=0)
    emis = np.repeat(m.emissive.astype(np.float32), 6)
    return np.hstack([tris.reshape(-1, 3), col, emis[:, None]]).astype(np.float32)


class GLRenderer:
    """``Renderer`` protocol implementation (sim/runtime.py) on moderngl + EGL."""

    backend = "gl"

    def __init__(self, scenario: Scenario, rig: Rig | None = None, pass_scale: float = 1.0, msaa: int = 0,
                 grass_background: bool = True):
        import moderngl

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
        self.vao_dyn = ctx.vertex_array(self.prog, [(self.vbo_dyn, "3f 3f 1f", "in_pos", "in_col", "in_emis")])
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

    def _set(self, name: str, value) -> None:
        if name in self.prog:  # the compiler drops uniforms a shader variant does not use
            self.prog[name].value = value

    def _static_vao(self, m: Mesh):
        if not len(m):
            return None, 0
        data = _vertex_data(m, self.origin)
        vbo = self.ctx.buffer(data.tobytes())
        self._buffers.append(vbo)
        return self.ctx.vertex_array(self.prog, [(vbo, "3f 3f 1f", "in_pos", "in_col", "in_emis")]), len(data)

    # -- Renderer protocol ---------------------------------------------------------------------
    def cameras(self) -> list[str]:
        return self.rig.names

    def render(self, world_state: WorldState, camera: str, t_start_us: int, t_end_us: int) -> np.ndarray:
        """HxWx3 uint8 RGB image of ``camera`` at the end-of-frame state ``world_state``."""
        cam = self.rig.camera(camera)
        passes = self._passes.get(camera)
        if passes is None:
            passes = self._passes[camera] = make_passes(cam, self.pass_scale)
        self._upload_dynamic(world_state, t_end_us)
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
        m = self.dynamic.mesh(ws, t_end_us)
        if len(m):
            data = _vertex_data(m, self.origin)
            if data.nbytes > self.vbo_dyn.size:
                self.vbo_dyn.orphan(data.nbytes)
            self.vbo_dyn.write(data.tobytes())
            self.n_dyn = len(data)
        else:
            self.n_dyn = 0
        self._dyn_key = key

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

    def _background(self, p: PinholePass) -> bytes:
        """Sky and the lit, hazed grass plane of pass ``p``, rows bottom-up (GL order)."""
        bg = self._backgrounds.get(id(p))
        if bg is None:
            gm = ground_maps(p)
            img = np.empty((p.height, p.width, 3))
            img[:] = self.look.sky_rgb
            img[gm.hits] = self._grass_rgb
            img = apply_ground_look(img, gm, self.look)
            bg = self._backgrounds[id(p)] = np.round(np.clip(img[::-1], 0, 1) * 255).astype(np.uint8).tobytes()
        return bg

    def _draw(self, p: PinholePass, ws: WorldState) -> np.ndarray:
        mgl, ctx, prog = self._mgl, self.ctx, self.prog
        fb = self._fbo(p.width, p.height)
        R, t, cam_pos = tile_view(ws.ego, p)
        T_cam_local = np.eye(4)
        T_cam_local[:3, :3] = R
        T_cam_local[:3, 3] = t + R @ self.origin  # vertex positions are relative to origin
        P = projection_from_intrinsics(p.fx, p.fy, p.cx, p.cy, p.width, p.height)
        mvp = P @ _OPTICAL_TO_GL @ T_cam_local
        prog["mvp"].write(mvp.T.astype("f4").tobytes())
        prog["cam_pos"].value = tuple((cam_pos - self.origin).tolist())
        c, s = np.cos(ws.ego.yaw_rad), np.sin(ws.ego.yaw_rad)
        head = np.array([ws.ego.x_m + c * HEADLIGHT_RIG_M[0], ws.ego.y_m + s * HEADLIGHT_RIG_M[0], ws.ego.z_m + HEADLIGHT_RIG_M[2]])
        self._set("head_pos", tuple((head - self.origin).tolist()))
        self._set("head_fwd", (float(c), float(s), 0.0))
        self._set("head_left", (float(-s), float(c), 0.0))
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
