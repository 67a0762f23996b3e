"""Direct f-theta rendering (GLRenderer(ftheta="direct")): per-vertex lens projection on geometry
tessellated by render/tessellate.py, checked against the lens polynomial and the tile + remap path."""

import math

import cv2
import numpy as np
import pytest

from cordillera.render import camera_models as cm
from cordillera.render.demo import demo_scenario, initial_world_state
from cordillera.render.raster import T_local_camera
from cordillera.render.rig import default_rig
from cordillera.render.scene import Mesh
from cordillera.render.tessellate import edges_to_split, step_for_sag, tessellate
from cordillera.world.scenario import ActorSpec

FRONT = "camera_front_wide_120fov"
MAGENTA = (1.0, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Tessellation (numpy only)
# ----------------------------------------------------------------------------------------------
def test_step_for_sag_bounds_the_chord_error_over_the_120deg_image():
    cam = default_rig([FRONT]).camera(FRONT)
    sag_px = 0.5
    step = step_for_sag(cam.focal_px, sag_px)
    rng = np.random.default_rng(0)
    uv = np.column_stack([rng.uniform(0, cam.width, 4000), rng.uniform(0, cam.height, 4000)])
    d0 = cam.unproject(uv)
    t = rng.normal(size=d0.shape)
    t -= np.sum(t * d0, axis=1, keepdims=True) * d0
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    d1 = math.cos(step) * d0 + math.sin(step) * t  # a ray turned by `step` in a random direction
    s = np.linspace(0, 1, 33)[:, None, None]
    curve = np.array([cam.project(p)[0] for p in (1 - s) * d0 + s * d1])  # the straight 3-D piece, projected
    a, b = curve[0], curve[-1]
    normal = np.stack([a[:, 1] - b[:, 1], b[:, 0] - a[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    dev = np.abs(np.sum((curve - a) * normal, axis=2)).max(axis=0)
    assert np.nanmax(dev) <= 1.05 * sag_px, np.nanmax(dev)


def test_tessellate_splits_near_edges_without_cracks_and_keeps_area():
    eye = np.zeros(3)
    R = np.eye(3)  # optical frame = frame: z forward
    # Two triangles sharing the edge (0,-1,2)-(0,1,2) two metres ahead: it turns the view by ~53°.
    tris = np.array([[[0.0, -1, 2], [0, 1, 2], [-1, 0, 2]], [[0.0, 1, 2], [0, -1, 2], [1, 0, 2]]])
    step = np.array([0.1])
    pieces, src = tessellate(tris, eye[None], step, R[None], np.array([[2.0, 2.0]]))
    assert len(pieces) > 16 and np.all(np.diff(src) >= 0)
    area = lambda t: 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    np.testing.assert_allclose(area(pieces).sum(), area(tris).sum())
    assert not edges_to_split(pieces[:, 0], pieces[:, 1], eye[None], step).any()
    # Both sides cut the shared edge at the same points (bit for bit): no T-junctions.
    on_edge = [np.unique(pieces[src == k][np.abs(pieces[src == k][..., 0]) == 0.0], axis=0) for k in (0, 1)]
    assert len(on_edge[0]) > 8 and np.array_equal(on_edge[0], on_edge[1])


# ----------------------------------------------------------------------------------------------
# Rendered (GL only)
# ----------------------------------------------------------------------------------------------
def _facing_square(centre_local, eye_local, half_m):
    """A square quad centred at ``centre_local`` facing ``eye_local``, wound counter-clockwise as
    seen from the eye (so back-face culling keeps it)."""
    n = eye_local - centre_local
    n /= np.linalg.norm(n)
    u = np.cross([0.0, 0.0, 1.0], n)
    u /= np.linalg.norm(u)
    v = np.cross(n, u)  # u × v = n: corners below run counter-clockwise seen from +n
    c = centre_local
    return np.array([c - half_m * (u + v), c + half_m * (u - v), c + half_m * (u + v), c - half_m * (u - v)])


def _mesh(quads, color=MAGENTA):
    q = np.asarray(quads, float)
    n = len(q)
    return Mesh(q, np.tile(color, (n, 1)), np.ones(n, bool), np.full(n, -1, np.int8), np.zeros(n, np.int32))


def _render_with(mesh, ftheta, cam_name=FRONT, scenario=None):
    """``cam_name``'s image with ``mesh`` (local frame) as the only actor geometry."""
    from cordillera.render.gl_renderer import GLRenderer

    sc = scenario or demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False)
    r = GLRenderer(sc, default_rig([cam_name]), ftheta=ftheta)
    r.dynamic.mesh = lambda ws, t_end_us: mesh  # inject the test geometry as this frame's actors
    return r.render(initial_world_state(sc), cam_name, 0, 0)


def _magenta(img):
    img = img.astype(int)
    return (img[..., 0] > 150) & (img[..., 2] > 150) & (img[..., 1] < 90)


@pytest.mark.usefixtures("egl")  # GL-only: skips without EGL
def test_direct_puts_axis_point_on_principal_point_and_theta_at_poly_radius():
    sc = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False)
    cam = default_rig([FRONT]).camera(FRONT)
    T = T_local_camera(initial_world_state(sc).ego, cam)
    eye = T.translation
    # Optical-frame directions: the axis, θ = 50° to the right, θ = 40° towards lower-left (φ = 150°).
    cases = [(0.0, 0.0), (math.radians(50), 0.0), (math.radians(40), math.radians(150))]
    dist_m = 6.0
    dirs = np.array([[math.sin(t) * math.cos(p), math.sin(t) * math.sin(p), math.cos(t)] for t, p in cases])
    centres = T.apply(dist_m * dirs)
    half_m = 1.6 * dist_m / cam.focal_px  # ~3 px across
    quads = [_facing_square(c, eye, half_m) for c in centres]
    img = _render_with(_mesh(quads), "direct")
    n, labels, stats, cents = cv2.connectedComponentsWithStats(_magenta(img).astype(np.uint8))
    assert n - 1 == len(cases), n - 1
    for theta, phi in cases:
        r_px = cm.poly_eval(cam.fw_poly, theta)
        expected = np.array([cam.cx + r_px * math.cos(phi), cam.cy + r_px * math.sin(phi)])
        got = cents[1:][np.argmin(np.linalg.norm(cents[1:] - expected, axis=1))]
        # A few-pixel square's centroid sits within rasterisation rounding (±0.5 px) of its centre.
        assert np.all(np.abs(got - expected) <= 1.0), (theta, phi, got, expected)
        assert abs(np.linalg.norm(got - [cam.cx, cam.cy]) - r_px) <= 1.0


@pytest.mark.usefixtures("egl")  # GL-only: skips without EGL
def test_direct_drops_what_is_behind_the_camera_and_clips_what_straddles_it():
    sc = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False)
    ego = initial_world_state(sc).ego
    cam_x = T_local_camera(ego, default_rig([FRONT]).camera(FRONT)).translation[0]
    both_sides = lambda q: [q, q[::-1]]  # double-sided: culling cannot be what hides it
    behind = np.array([[cam_x - 3, ego.y_m - 20, 0], [cam_x - 3, ego.y_m + 20, 0], [cam_x - 3, ego.y_m + 20, 6],
                       [cam_x - 3, ego.y_m - 20, 6]])  # a wall 3 m behind the camera, 40 m wide
    img = _render_with(_mesh(both_sides(behind)), "direct")
    assert not _magenta(img).any()
    # A wall 3 m to the left running from 10 m behind the camera to 10 m ahead: only its front
    # part shows, where the tile path (clipped by the pinhole frustum) shows it.
    y = ego.y_m + 3
    wall = np.array([[cam_x - 10, y, 0], [cam_x + 10, y, 0], [cam_x + 10, y, 3], [cam_x - 10, y, 3]])
    direct = _magenta(_render_with(_mesh(both_sides(wall)), "direct"))
    tiles = _magenta(_render_with(_mesh(both_sides(wall)), "tiles"))
    assert tiles.sum() > 2000
    grow = lambda m: cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # ±2 px
    assert not (direct & ~grow(tiles)).any()  # no smear anywhere else
    assert not (tiles & ~grow(direct)).any()


def _footprint(sc, empty, ftheta):
    from cordillera.render.gl_renderer import GLRenderer

    rig = default_rig([FRONT])
    a = GLRenderer(sc, rig, ftheta=ftheta).render(initial_world_state(sc), FRONT, 0, 0).astype(int)
    b = GLRenderer(empty, rig, ftheta=ftheta).render(initial_world_state(empty), FRONT, 0, 0).astype(int)
    return np.abs(a - b).sum(axis=2) > 30


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()])


@pytest.mark.parametrize("kind, x_m, y_m", [("bus", 22.0, -1.8), ("car", 8.0, 2.0)])
@pytest.mark.usefixtures("egl")  # GL-only: skips without EGL
def test_direct_and_tiles_agree_on_box_footprint(kind, x_m, y_m):
    empty = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False)
    sc = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False,
                       actors=(ActorSpec("box_x", kind, x_m, y_m, 0.0),))
    direct, tiles = _footprint(sc, empty, "direct"), _footprint(sc, empty, "tiles")
    assert tiles.sum() > 300
    # Each box edge: the tiles place it within ±0.5 px (tile raster) plus up to 0.5 px where the
    # bilinear remap blends it across the threshold; direct within ±0.5 px (raster) plus the chord
    # sag (SAG_PX = 0.5 px). Together at most 2 px.
    assert np.all(np.abs(_bbox(direct) - _bbox(tiles)) <= 2), (_bbox(direct), _bbox(tiles))


@pytest.mark.usefixtures("egl")  # GL-only: skips without EGL
def test_direct_and_tiles_agree_on_demo_scene():
    from cordillera.render.gl_renderer import GLRenderer

    sc = demo_scenario()
    ws = initial_world_state(sc)
    rig = default_rig([FRONT])
    tiles = GLRenderer(sc, rig).render(ws, FRONT, 0, ws.t_us).astype(int)
    direct = GLRenderer(sc, rig, ftheta="direct").render(ws, FRONT, 0, ws.t_us).astype(int)
    # Where no edge moves by more than a pixel, a direct pixel lies within the range of the tile
    # image's 3×3 neighbourhood (± a few levels of shading interpolated at other points). Measured:
    # 0.47 % of pixels lie outside, all on features under ~3 px wide (poles, lamps, far lane
    # markings) that the remap's bilinear filter spreads at lower contrast. The direct image
    # shifted by 1 px puts 0.70 % outside, by 2 px 1.5 %: the 1 % bound accepts ≤ 1 px, not 2 px.
    k = np.ones((3, 3), np.uint8)
    lo = cv2.erode(tiles.astype(np.uint8), k).astype(int) - 4
    hi = cv2.dilate(tiles.astype(np.uint8), k).astype(int) + 4
    outside = ((direct < lo) | (direct > hi)).any(axis=2)
    assert outside.mean() < 0.01, outside.mean()
    # The two paths differ less than the tile image differs from itself moved by one pixel.
    diff = np.abs(direct - tiles).mean()
    one_px = min(np.abs(tiles[:, 1:] - tiles[:, :-1]).mean(), np.abs(tiles[1:] - tiles[:-1]).mean())
    assert diff < one_px, (diff, one_px)
