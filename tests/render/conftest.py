"""Shared fixtures of the renderer tests."""

import pytest


@pytest.fixture()
def egl():
    """The moderngl EGL context; skips a GL-only test where EGL does not work (a fresh machine
    without GPU drivers still runs the OpenCV fallback's tests)."""
    from cordillera.render.gl_renderer import egl_context

    try:
        return egl_context()
    except RuntimeError as e:
        pytest.skip(f"GL-only test: moderngl.create_context(standalone=True, backend='egl') failed here ({e})")
