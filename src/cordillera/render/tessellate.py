"""Adaptive, crack-free triangle subdivision for cameras that project per vertex (direct f-theta).

A straight edge bends under a non-pinhole lens, while the rasteriser draws straight lines between
projected vertices. Cutting an edge into pieces that each turn the view direction by at most α
bounds the error: the projected chord of such a piece departs from the true curve by at most
about ``f·α²/8`` pixels for a lens of centre focal ``f`` [px] (checked numerically over the
120° f-theta image, see tests/render/test_render_ftheta_direct.py). :func:`step_for_sag` turns a
pixel tolerance into α.

Subdivision is by edges, round by round: an edge is halved when, seen from some eye, it turns the
view direction by more than that eye's α (a test on the edge alone, so the two triangles sharing
it agree), and a triangle with 1, 2 or 3 halved edges becomes 2, 3 or 4 triangles. Midpoints are
``(a + b)·0.5``, bit-identical from either side, so shared edges stay the same polyline (no
cracks). Triangles that no eye can see are dropped after every round, so the fine pieces near the
car's own footprint cost nothing. Everything is numpy, in whatever frame the triangles and eyes
share.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_ROUNDS", "step_for_sag", "in_view", "edges_to_split", "bounding_spheres", "max_turn_bound", "tessellate"]

MAX_ROUNDS = 6  # an edge is cut into at most 2**6 = 64 pieces


def step_for_sag(focal_px: float, sag_px: float) -> float:
    """Largest view-direction turn α [rad] along one piece whose chord stays within ``sag_px`` of
    the projected curve: sag ≈ focal_px·α²/8."""
    return math.sqrt(8.0 * sag_px / focal_px)


def in_view(points: np.ndarray, R_cam_from_frame: np.ndarray, eye: np.ndarray, tan_max) -> np.ndarray:
    """(N,) bool: the convex hull of ``points`` (N, k, 3) may reach the view pyramid
    ``|x/z| ≤ tan_max[0], |y/z| ≤ tan_max[1]`` of a camera at ``eye`` (optical frame
    ``p_cam = R_cam_from_frame @ (p − eye)``). Conservative: False only when all k points lie
    beyond one face of the (convex) pyramid."""
    p = (points - eye) @ R_cam_from_frame.T  # (N, k, 3) optical frame
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    tx, ty = tan_max
    out = (x > tx * z).all(1) | (-x > tx * z).all(1) | (y > ty * z).all(1) | (-y > ty * z).all(1)
    return ~out


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", u, v)


def edges_to_split(p0: np.ndarray, p1: np.ndarray, eyes: np.ndarray, max_step_rad: np.ndarray) -> np.ndarray:
    """(E,) bool: edge ``p0``–``p1`` (E, 3) turns the view direction by more than ``max_step_rad``
    (C,) seen from one of the ``eyes`` (C, 3). The bound used is ``|a × b| / d²`` (a, b the
    endpoints relative to the eye, d the distance from the eye to the segment): the direction
    turns at ``|a × b| / (|b − a|·|p|²)`` per metre at edge point p, fastest at the closest
    point. Every operation is symmetric in (p0, p1), bit for bit, so both triangles sharing an edge
    get the same answer."""
    split = np.zeros(len(p0), bool)
    for eye, step in zip(eyes, max_step_rad):
        a, b = p0 - eye, p1 - eye
        cross2 = np.einsum("ij,ij->i", *(2 * [np.cross(a, b)]))
        a2, b2 = _dot(a, a), _dot(b, b)
        ab = _dot(a, b)
        along_a, along_b = ab - a2, ab - b2  # a·(b − a) and b·(a − b): which end is closest
        line2 = cross2 / np.maximum(a2 + b2 - 2 * ab, 1e-24)  # squared distance to the line
        d2 = np.where(along_a >= 0, a2, np.where(along_b >= 0, b2, line2))
        split |= np.sqrt(cross2) > step * np.maximum(d2, 1e-8)
    return split


def bounding_spheres(tris: np.ndarray) -> np.ndarray:
    """(T, 4): centre (x, y, z) and radius of a sphere around each triangle (T, 3, 3)."""
    c = tris.mean(axis=1)
    return np.hstack([c, np.linalg.norm(tris - c[:, None], axis=2).max(axis=1, keepdims=True)])


def max_turn_bound(spheres: np.ndarray, eye_centre: np.ndarray, eye_radius: float) -> np.ndarray:
    """(T,) upper bound on the view-direction turn [rad] along any edge of a triangle inside
    ``spheres`` (T, 4), seen from any eye within ``eye_radius`` of ``eye_centre``: an edge is at
    most 2ρ long, its line at most D + e + ρ from the eye and its points at least D − e − ρ
    (D the centre distance, ρ the radius, e the eye radius); inf when the sphere may hold an eye.
    The direct vertex shader evaluates the same formula to leave such triangles out of its static
    buffer."""
    rho = spheres[:, 3]
    D = np.linalg.norm(spheres[:, :3] - eye_centre, axis=1)
    gap = D - eye_radius - rho
    with np.errstate(divide="ignore"):
        return np.where(gap > 0, 2 * rho * (D + eye_radius + rho) / np.maximum(gap, 1e-12) ** 2, np.inf)


# Children of a triangle (corners 0, 1, 2; midpoint 3 + e of the edge opposite corner e), per
# number of halved edges after rotating the triangle so that the pattern is one of these three.
_ONE = np.array([[0, 1, 3], [0, 3, 2]])  # edge 0 halved
_TWO = np.array([[0, 5, 4], [5, 1, 2], [5, 2, 4]])  # edges 1 and 2 halved
_THREE = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2], [5, 3, 4]])


def tessellate(tris: np.ndarray, eyes: np.ndarray, max_step_rad: np.ndarray, R_cam_from_frame: np.ndarray,
               tan_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subdivide triangles ``tris`` (T, 3, 3) for cameras at ``eyes`` (C, 3) with orientations
    ``R_cam_from_frame`` (C, 3, 3), view pyramids ``tan_max`` (C, 2) and per-camera
    ``max_step_rad`` (C,); triangles outside every pyramid are dropped.

    Returns ``(triangles (M, 3, 3), source (M,))`` in input order (triangle t's pieces before
    triangle t + 1's, which painter-ordered ground layers need); ``source`` indexes ``tris``."""
    src = np.arange(len(tris))
    out_tris, out_src = [], []
    for rnd in range(MAX_ROUNDS + 1):
        seen = np.zeros(len(tris), bool)
        for R, eye, tm in zip(R_cam_from_frame, eyes, tan_max):
            seen |= in_view(tris, R, eye, tm)
        tris, src = tris[seen], src[seen]
        if rnd == MAX_ROUNDS or not len(tris):
            break
        T = len(tris)
        p0 = tris[:, [1, 2, 0]].reshape(-1, 3)  # edge e runs from corner e+1 to corner e+2
        p1 = tris[:, [2, 0, 1]].reshape(-1, 3)
        halve = edges_to_split(p0, p1, eyes, max_step_rad).reshape(T, 3)
        n = halve.sum(axis=1)
        out_tris.append(tris[n == 0])
        out_src.append(src[n == 0])
        # Rotate (keeping the winding) so that the halved edges match the patterns above.
        first = np.where(n == 1, np.argmax(halve, axis=1), np.where(n == 2, np.argmin(halve, axis=1), 0))
        perm = (first[:, None] + np.arange(3)) % 3
        rot = np.take_along_axis(tris, perm[:, :, None], axis=1)
        mids = 0.5 * (rot[:, [1, 2, 0]] + rot[:, [2, 0, 1]])  # midpoint of the edge opposite each corner
        pts = np.concatenate([rot, mids], axis=1)  # (T, 6, 3)
        kids, kid_src = [], []
        for k, pattern in ((1, _ONE), (2, _TWO), (3, _THREE)):
            sel = np.flatnonzero(n == k)
            kids.append(pts[sel][:, pattern].reshape(-1, 3, 3))
            kid_src.append(np.repeat(src[sel], len(pattern)))
        tris, src = np.concatenate(kids), np.concatenate(kid_src)
    out_tris.append(tris)
    out_src.append(src)
    tris, src = np.concatenate(out_tris), np.concatenate(out_src)
    order = np.argsort(src, kind="stable")
    return tris[order], src[order]
