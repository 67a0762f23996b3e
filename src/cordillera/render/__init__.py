"""Multi-camera rendering: rig + camera models, GL (moderngl/EGL) and OpenCV renderers, BEV, video.

``make_renderer(scenario, rig=None, backend="auto")`` returns an object implementing the runtime
``Renderer`` protocol (``cameras()``, ``render(world_state, camera, t_start_us, t_end_us)``).
"""

from __future__ import annotations

import logging

from cordillera.render.rig import CAMERA_NAMES, DEFAULT_MODEL_CAMERAS, CameraSpec, Rig, default_rig, load_rig

__all__ = ["make_renderer", "CAMERA_NAMES", "DEFAULT_MODEL_CAMERAS", "CameraSpec", "Rig", "default_rig", "load_rig"]

log = logging.getLogger(__name__)


def make_renderer(scenario, rig: Rig | None = None, backend: str = "auto", **kwargs):
    """A renderer bound to ``scenario``: ``"gl"`` (moderngl + EGL), ``"cv"`` (OpenCV painter's
    fallback) or ``"auto"`` (GL when an EGL context can be created, else the fallback). Logs one
    line saying which backend is used."""
    if backend not in ("auto", "gl", "cv"):
        raise ValueError(f"backend must be 'auto', 'gl' or 'cv', got {backend!r}")
    if backend in ("auto", "gl"):
        from cordillera.render.gl_renderer import GLRenderer, egl_context

        try:
            egl_context()
        except RuntimeError as e:
            if backend == "gl":
                raise
            log.info("render backend: OpenCV painter fallback (%s)", e)
        else:
            r = GLRenderer(scenario, rig, **kwargs)
            log.info("render backend: moderngl EGL (%s)", r.ctx.info.get("GL_RENDERER", "?"))
            return r
    else:
        log.info("render backend: OpenCV painter fallback (requested)")
    from cordillera.render.cv_renderer import CvRenderer

    kwargs.pop("msaa", None)
    kwargs.pop("ftheta", None)  # GL-only option (how f-theta cameras are rasterised)
    return CvRenderer(scenario, rig, **kwargs)
