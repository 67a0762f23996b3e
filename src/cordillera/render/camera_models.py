"""Camera models: pinhole (OpenCV, no distortion) and f-theta (PhysicalAI-AV / NVIDIA), with inverses.

Every function here works in the camera **optical** frame (z along the optical axis, x right in
the image, y down) and in pixel coordinates with the OpenCV convention (the centre of pixel
(col i, row j) is at (u, v) = (i, j)).

F-theta (spec/alpamayo_training_data.md §7.3): θ is the angle between a ray and the optical axis,
``r = Σ fw_poly[i]·θ^i`` is its distance in pixels from the principal point,
``θ = Σ bw_poly[i]·r^i`` is the (fitted) inverse, and ``pixel = (cx, cy) + r·(x, y)/‖(x, y)‖``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "pinhole_project",
    "pinhole_unproject",
    "ftheta_project",
    "ftheta_unproject",
    "ftheta_polys_for_fov",
    "pinhole_focal_for_fov",
    "poly_eval",
    "project",
    "unproject",
    "in_image",
]

_EPS = 1e-9


def _points(points, name: str = "points_cam") -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {p.shape}")
    return p


def _pixels(uv) -> np.ndarray:
    q = np.asarray(uv, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 2:
        raise ValueError(f"uv must have shape (N, 2), got {q.shape}")
    return q


def poly_eval(coeffs, x) -> np.ndarray:
    """Σ coeffs[i]·x^i (lowest order first, as PhysicalAI-AV stores ``fw_poly_0..4``)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for c in reversed(tuple(coeffs)):
        out = out * x + c
    return out


def _poly_deriv(coeffs) -> tuple[float, ...]:
    return tuple(i * c for i, c in enumerate(coeffs))[1:] or (0.0,)


# ----------------------------------------------------------------------------------------------
# Pinhole (optical frame -> pixels)
# ----------------------------------------------------------------------------------------------
def pinhole_project(points_cam, fx: float, fy: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Optical-frame points (N, 3) -> pixels (N, 2) and ``valid`` (N,) = in front of the camera."""
    p = _points(points_cam)
    z = p[:, 2]
    valid = z > _EPS
    zs = np.where(valid, z, 1.0)
    uv = np.stack([fx * p[:, 0] / zs + cx, fy * p[:, 1] / zs + cy], axis=1)
    uv[~valid] = np.nan
    return uv, valid


def pinhole_unproject(uv, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pixels (N, 2) -> unit rays (N, 3) in the optical frame."""
    q = _pixels(uv)
    rays = np.stack([(q[:, 0] - cx) / fx, (q[:, 1] - cy) / fy, np.ones(len(q))], axis=1)
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def pinhole_focal_for_fov(fov_deg: float, width: int) -> float:
    """Focal length [px] whose horizontal field of view across ``width`` pixels is ``fov_deg``."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"a pinhole camera needs 0 < fov_deg < 180, got {fov_deg}")
    return 0.5 * width / math.tan(math.radians(fov_deg) / 2)


# ----------------------------------------------------------------------------------------------
# F-theta (optical frame -> pixels)
# ----------------------------------------------------------------------------------------------
def ftheta_project(points_cam, cx: float, cy: float, fw_poly, max_angle_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Optical-frame points (N, 3) -> pixels (N, 2) and ``valid`` (N,) = θ ≤ ``max_angle_rad``."""
    p = _points(points_cam)
    rho = np.hypot(p[:, 0], p[:, 1])
    theta = np.arctan2(rho, p[:, 2])
    r = poly_eval(fw_poly, theta)
    safe = rho > _EPS
    dx = np.where(safe, p[:, 0] / np.where(safe, rho, 1.0), 0.0)
    dy = np.where(safe, p[:, 1] / np.where(safe, rho, 1.0), 0.0)
    uv = np.stack([cx + r * dx, cy + r * dy], axis=1)
    valid = (theta <= max_angle_rad) & (np.linalg.norm(p, axis=1) > _EPS)
    uv[~valid] = np.nan
    return uv, valid


def ftheta_unproject(uv, cx: float, cy: float, bw_poly, fw_poly=None, newton_steps: int = 2) -> np.ndarray:
    """Pixels (N, 2) -> unit rays (N, 3) in the optical frame.

    θ comes from the backward polynomial; with ``fw_poly`` given, ``newton_steps`` Newton steps on
    ``fw(θ) = r`` remove the residual of the fit so that project∘unproject is exact to ~1e-9 px."""
    q = _pixels(uv)
    d = q - np.array([cx, cy])
    r = np.linalg.norm(d, axis=1)
    theta = poly_eval(bw_poly, r)
    if fw_poly is not None:
        dfw = _poly_deriv(fw_poly)
        for _ in range(newton_steps):
            theta = theta - (poly_eval(fw_poly, theta) - r) / poly_eval(dfw, theta)
    safe = r > _EPS
    dirs = np.where(safe[:, None], d / np.where(safe, r, 1.0)[:, None], 0.0)
    s = np.sin(theta)
    return np.stack([s * dirs[:, 0], s * dirs[:, 1], np.cos(theta)], axis=1)


def ftheta_polys_for_fov(
    fov_deg: float, width: int, height: int, cubic: float = -0.05, degree: int = 4
) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """Build an f-theta lens whose horizontal field of view across ``width`` is ``fov_deg``.

    Forward polynomial: ``r = f·(θ + cubic·θ³)`` (equidistant plus a small cubic term that
    compresses the periphery like a real wide lens); the backward polynomial is a least-squares
    fit of θ(r) with zero constant term over the radii the image contains. Returns
    ``(fw_poly, bw_poly, max_angle_rad)`` with ``degree + 1`` coefficients each; ``max_angle_rad``
    is the angle of the image corner (a little margin included).
    """
    if not 0 < fov_deg < 360:
        raise ValueError(f"fov_deg must be in (0, 360), got {fov_deg}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    if degree < 3:
        raise ValueError(f"degree must be >= 3 to hold the cubic term, got {degree}")
    half = math.radians(fov_deg) / 2
    f = 0.5 * width / (half + cubic * half**3)
    fw = [0.0] * (degree + 1)
    fw[1], fw[3] = f, f * cubic
    r_corner = math.hypot(width / 2, height / 2) * 1.02
    # θ at the corner radius, by bisection on the monotone forward polynomial.
    lo, hi = 0.0, math.pi
    d_fw = _poly_deriv(fw)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if poly_eval(fw, mid) < r_corner and poly_eval(d_fw, mid) > 0:
            lo = mid
        else:
            hi = mid
    max_angle = lo
    if poly_eval(d_fw, max_angle) <= 0:
        raise ValueError(f"cubic={cubic} makes the lens non-monotonic inside the {width}x{height} image")
    theta = np.linspace(0.0, max_angle, 400)
    r = poly_eval(fw, theta)
    A = np.stack([r**i for i in range(1, degree + 1)], axis=1)
    coef, *_ = np.linalg.lstsq(A, theta, rcond=None)
    bw = (0.0, *map(float, coef))
    return tuple(float(c) for c in fw), bw, float(max_angle)


# ----------------------------------------------------------------------------------------------
# Dispatch on a CameraSpec-like object (duck-typed: model, cx, cy, fx, fy, fw_poly, bw_poly, ...)
# ----------------------------------------------------------------------------------------------
def project(cam, points_cam) -> tuple[np.ndarray, np.ndarray]:
    """Optical-frame points (N, 3) -> (pixels (N, 2), valid (N,)) for ``cam.model``."""
    if cam.model == "pinhole":
        return pinhole_project(points_cam, cam.fx, cam.fy, cam.cx, cam.cy)
    if cam.model == "ftheta":
        return ftheta_project(points_cam, cam.cx, cam.cy, cam.fw_poly, cam.max_angle_rad)
    raise ValueError(f"unknown camera model {cam.model!r}; expected 'pinhole' or 'ftheta'")


def unproject(cam, uv) -> np.ndarray:
    """Pixels (N, 2) -> unit rays (N, 3) in the optical frame for ``cam.model``."""
    if cam.model == "pinhole":
        return pinhole_unproject(uv, cam.fx, cam.fy, cam.cx, cam.cy)
    if cam.model == "ftheta":
        return ftheta_unproject(uv, cam.cx, cam.cy, cam.bw_poly, cam.fw_poly)
    raise ValueError(f"unknown camera model {cam.model!r}; expected 'pinhole' or 'ftheta'")


def in_image(uv, width: int, height: int, margin_px: float = 0.0) -> np.ndarray:
    """Pixels whose centre lies inside the image (OpenCV convention: [-0.5, W-0.5))."""
    q = _pixels(uv)
    with np.errstate(invalid="ignore"):
        return (
            (q[:, 0] >= -0.5 - margin_px)
            & (q[:, 0] < width - 0.5 + margin_px)
            & (q[:, 1] >= -0.5 - margin_px)
            & (q[:, 1] < height - 0.5 + margin_px)
        )
