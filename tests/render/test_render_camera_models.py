"""Camera models, rig geometry and renderer agreement, checked against hand-derived pixels."""

import math

import numpy as np
import pytest

from cordillera.render import camera_models as cm
from cordillera.render.demo import demo_scenario, initial_world_state
from cordillera.render.rig import (
    CAMERA_NAMES, DEFAULT_MODEL_CAMERAS, CameraSpec, default_rig, load_rig, save_rig,
)
from cordillera.world.scenario import ActorSpec

FRONT = "camera_front_wide_120fov"


# ----------------------------------------------------------------------------------------------
# Pure camera models
# ----------------------------------------------------------------------------------------------
def test_pinhole_axis_point_lands_on_principal_point_and_offsets_follow_fx():
    fx, fy, cx, cy = 300.0, 310.0, 287.5, 159.5
    uv, ok = cm.pinhole_project(np.array([[0, 0, 10.0], [2.0, 0, 10.0], [0, -1.0, 10.0], [0, 0, -5.0]]), fx, fy, cx, cy)
    assert ok.tolist() == [True, True, True, False]
    np.testing.assert_allclose(uv[0], [cx, cy])
    np.testing.assert_allclose(uv[1], [cx + 300.0 * 0.2, cy])  # 347.5
    np.testing.assert_allclose(uv[2], [cx, cy - 310.0 * 0.1])  # 128.5
    assert np.isnan(uv[3]).all()


def test_ftheta_polys_hit_the_requested_fov_and_hand_derived_pixel():
    fw, bw, max_angle = cm.ftheta_polys_for_fov(120.0, 576, 320, cubic=-0.05)
    half = math.pi / 3
    f = 288.0 / (half - 0.05 * half**3)  # r(60°) = W/2
    assert fw[1] == pytest.approx(f) and fw[3] == pytest.approx(-0.05 * f)
    assert cm.poly_eval(fw, half) == pytest.approx(288.0)
    # A point 10 m ahead and 10·tan(30°) to the right: θ = 30°, r = f(θ − 0.05θ³) ≈ 135.5 px.
    th = math.radians(30)
    r = f * (th - 0.05 * th**3)
    uv, ok = cm.ftheta_project(np.array([[10 * math.tan(th), 0.0, 10.0]]), 287.5, 159.5, fw, max_angle)
    assert ok[0]
    assert abs(uv[0, 0] - (287.5 + r)) < 1e-6 and abs(uv[0, 1] - 159.5) < 1e-9
    # The image corner is within max_angle; the backward fit alone is good to 1e-3 rad.
    rr = np.linspace(0, math.hypot(288, 160), 50)
    theta_true = np.array([_invert(fw, x) for x in rr])
    assert np.max(np.abs(cm.poly_eval(bw, rr) - theta_true)) < 1e-3
    assert max_angle > theta_true[-1]


def _invert(fw, r):
    lo, hi = 0.0, 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cm.poly_eval(fw, mid) < r else (lo, mid)
    return lo


@pytest.mark.parametrize("model", ["pinhole", "ftheta"])
def test_project_unproject_round_trips(model):
    cam = default_rig([FRONT], model=model).camera(FRONT)
    rng = np.random.default_rng(0)
    uv = np.column_stack([rng.uniform(0, cam.width - 1, 500), rng.uniform(0, cam.height - 1, 500)])
    rays = cam.unproject(uv)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)
    uv2, ok = cam.project(rays * rng.uniform(0.5, 80, (500, 1)))
    assert ok.all()
    np.testing.assert_allclose(uv2, uv, atol=1e-6)
    pts = np.column_stack([rng.uniform(-5, 5, 200), rng.uniform(-2, 2, 200), rng.uniform(3, 50, 200)])
    uv3, ok3 = cam.project(pts)
    r3 = cam.unproject(uv3[ok3])
    np.testing.assert_allclose(r3, pts[ok3] / np.linalg.norm(pts[ok3], axis=1, keepdims=True), atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Rig
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["pinhole", "ftheta"])
def test_point_10m_ahead_of_front_camera_in_rig_frame_lands_on_principal_point(model):
    cam = default_rig([FRONT], model=model).camera(FRONT)
    mount = cam.T_rig_camera.translation
    np.testing.assert_allclose(mount, [1.75, 0.0, 1.45])
    uv, ok = cam.project_rig(np.array([mount + [10.0, 0, 0]]))
    assert ok[0]
    np.testing.assert_allclose(uv[0], [cam.cx, cam.cy], atol=1e-9)
    # 2 m to the LEFT in the rig frame is left in the image (u < cx); pinhole: u = cx − fx·0.2.
    uv, _ = cam.project_rig(np.array([mount + [10.0, 2.0, 0]]))
    if model == "pinhole":
        assert uv[0, 0] == pytest.approx(cam.cx - cam.fx * 0.2, abs=1e-6)
    else:
        th = math.atan2(2.0, 10.0)
        assert uv[0, 0] == pytest.approx(cam.cx - cm.poly_eval(cam.fw_poly, th), abs=1e-6)


def test_cross_cameras_look_sideways_and_rear_tele_looks_back():
    rig = default_rig()
    assert rig.names == list(CAMERA_NAMES) and len(rig) == 7
    axis = {c.name: c.T_rig_camera.rotation_matrix[:, 2] for c in rig}  # optical z in rig
    assert axis["camera_cross_left_120fov"][1] > 0.8 and axis["camera_cross_right_120fov"][1] < -0.8
    assert axis["camera_rear_tele_30fov"][0] < -0.99
    assert axis[FRONT][0] > 0.999
    assert DEFAULT_MODEL_CAMERAS == ("camera_cross_left_120fov", FRONT, "camera_cross_right_120fov",
                                     "camera_front_tele_30fov")


def test_default_rig_subset_resolution_and_rescale():
    rig = default_rig(DEFAULT_MODEL_CAMERAS, height=160, width=288, model="pinhole")
    assert rig.names == list(DEFAULT_MODEL_CAMERAS)
    cam = rig.camera(FRONT)
    assert (cam.width, cam.height) == (288, 160)
    assert cam.fx == pytest.approx(144.0 / math.tan(math.radians(60)))
    big = default_rig([FRONT]).camera(FRONT)
    small = big.rescaled(288, 160)
    p = np.array([[1.0, 0.5, 10.0]])
    np.testing.assert_allclose((small.project(p)[0] + 0.5) * 2 - 0.5, big.project(p)[0], atol=1e-6)
    with pytest.raises(ValueError, match="unknown camera"):
        default_rig(["camera_roof"])
    with pytest.raises(ValueError, match="not in the rig"):
        rig.camera("camera_rear_tele_30fov")


def test_rig_yaml_presets_custom_mounts_and_round_trip(tmp_path):
    y = tmp_path / "rig.yaml"
    y.write_text(
        "defaults: {width: 320, height: 192, model: pinhole}\n"
        "cameras:\n"
        "  - {name: camera_front_wide_120fov}\n"
        "  - {name: my_roof_cam, model: ftheta, mount: {fov_deg: 90, xyz_m: [1.0, 0.0, 2.0], yaw_deg: 10}}\n"
    )
    rig = load_rig(y)
    assert rig.names == [FRONT, "my_roof_cam"]
    assert rig.camera(FRONT).model == "pinhole" and rig.camera(FRONT).width == 320
    roof = rig.camera("my_roof_cam")
    assert roof.model == "ftheta" and roof.fov_deg == 90
    np.testing.assert_allclose(roof.T_rig_camera.translation, [1, 0, 2])
    save_rig(rig, tmp_path / "out.yaml")
    back = load_rig(tmp_path / "out.yaml")
    for a, b in zip(rig, back):
        assert a.to_dict() == b.to_dict()
    (tmp_path / "bad.yaml").write_text("cameras: [{name: nowhere_cam}]\n")
    with pytest.raises(ValueError, match="no preset"):
        load_rig(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="fx, fy"):
        CameraSpec("c", "pinhole", 10, 10, 5, 5, rig.camera(FRONT).T_rig_camera)


# ----------------------------------------------------------------------------------------------
# Rendered footprints
# ----------------------------------------------------------------------------------------------
def _box_scene():
    bus = ActorSpec("bus_x", "bus", 22.0, -1.8, 0.0)
    sc = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False, actors=(bus,))
    empty = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False)
    return sc, empty, bus


def _footprint(renderer_cls, rig, sc, empty):
    ws = initial_world_state(sc)
    a = renderer_cls(sc, rig).render(ws, FRONT, 0, 0).astype(int)
    b = renderer_cls(empty, rig).render(initial_world_state(empty), FRONT, 0, 0).astype(int)
    return np.abs(a - b).sum(axis=2) > 30


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()])


def test_cv_renderer_box_footprint_matches_projected_corners_pinhole():
    from cordillera.render.cv_renderer import CvRenderer

    sc, empty, bus = _box_scene()
    rig = default_rig([FRONT], model="pinhole")
    mask = _footprint(CvRenderer, rig, sc, empty)
    L, W, H = bus.length_m, bus.width_m, bus.height_m
    corners = np.array([[bus.x_m + sx * L / 2, -1.8 + 1.8 + sy * (W / 2 + 0.02), z]
                        for sx in (-1, 1) for sy in (-1, 1) for z in (0.0, H)])  # rig frame (ego at y=-1.8)
    uv, ok = rig.camera(FRONT).project_rig(corners)
    assert ok.all()
    expected = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
    assert np.all(np.abs(_bbox(mask) - expected) <= 2.0), (_bbox(mask), expected)


@pytest.mark.parametrize("model", ["pinhole", "ftheta"])
@pytest.mark.usefixtures("egl")  # GL-only: skips without EGL
def test_gl_and_cv_renderers_agree_on_box_footprint(model):
    from cordillera.render.cv_renderer import CvRenderer
    from cordillera.render.gl_renderer import GLRenderer

    sc, empty, _ = _box_scene()
    rig = default_rig([FRONT], model=model)
    m_gl = _footprint(GLRenderer, rig, sc, empty)
    m_cv = _footprint(CvRenderer, rig, sc, empty)
    assert m_gl.sum() > 500
    assert np.all(np.abs(_bbox(m_gl) - _bbox(m_cv)) <= 3)
    iou = (m_gl & m_cv).sum() / (m_gl | m_cv).sum()
    assert iou > 0.9, iou
