"""Scene content read back from rendered pixels: lamp colours, blinking, night, fog, meshes."""

import logging

import cv2
import numpy as np
import pytest

from cordillera.render import make_renderer
from cordillera.render.cv_renderer import CvRenderer, clip_near
from cordillera.render.demo import demo_scenario, initial_world_state
from cordillera.render.rig import default_rig
from cordillera.render.scene import LAMP_ORDER, Mesh, actor_template, build_static, shade
from cordillera.world.scenario import ActorSpec, Conditions

FRONT = "camera_front_wide_120fov"


def _backends():
    out = [pytest.param(CvRenderer, id="cv")]
    from cordillera.render.gl_renderer import GLRenderer, egl_available

    out.append(pytest.param(GLRenderer, id="gl", marks=pytest.mark.skipif(
        not egl_available(), reason="GL-only: moderngl.create_context(standalone=True, backend='egl') failed")))
    return out


def _lamp_hues(img, cam, light, window_px=5):
    """Counts of saturated red / green / yellow pixels around each lamp's projected centre."""
    from cordillera.render.scene import traffic_light_frame

    c, f, _ = traffic_light_frame(light)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(int)
    counts = {}
    for i, colour in enumerate(LAMP_ORDER):
        p_local = c + 0.16 * f + np.array([0, 0, 0.36 - 0.36 * i])
        p_rig = p_local - np.array([0.0, -1.8, 0.0])  # ego rig at (0, -1.8), yaw 0
        uv, ok = cam.project_rig(p_rig[None])
        assert ok[0], "lamp must project into the image"
        u, v = np.round(uv[0]).astype(int)
        win = hsv[max(v - window_px, 0):v + window_px + 1, max(u - window_px, 0):u + window_px + 1].reshape(-1, 3)
        lit = win[(win[:, 1] > 120) & (win[:, 2] > 150)]
        h = lit[:, 0]
        counts[colour] = {"red": int(np.sum((h < 8) | (h > 172))), "yellow": int(np.sum((h >= 15) & (h <= 35))),
                          "green": int(np.sum((h >= 45) & (h <= 95)))}
    return counts


@pytest.mark.parametrize("renderer_cls", _backends())
@pytest.mark.parametrize("state", ["red", "green"])
def test_lit_lamp_colour_at_30m_is_classifiable_from_pixels(renderer_cls, state):
    sc = demo_scenario(light_distance_m=30.0, light_state=state, ped_distance_m=None, traffic=False)
    rig = default_rig([FRONT])  # f-theta, 320x576
    img = renderer_cls(sc, rig).render(initial_world_state(sc), FRONT, -33_333, 0)
    assert img.shape == (320, 576, 3)
    counts = _lamp_hues(img, rig.camera(FRONT), sc.traffic_lights[0])
    other = "green" if state == "red" else "red"
    assert counts[state][state] >= 2, counts  # the lit lamp shows its colour
    assert all(c[other] == 0 for c in counts.values()), counts  # the other colour is nowhere lit
    # Whole-head classification: the dominant saturated hue near the head is the state.
    total = {k: sum(c[k] for c in counts.values()) for k in ("red", "green")}
    assert max(total, key=total.get) == state


def test_flashing_yellow_blinks_at_1hz_and_dark_shows_nothing():
    sc = demo_scenario(light_distance_m=25.0, light_state="flashing_yellow", ped_distance_m=None, traffic=False)
    rig = default_rig([FRONT])
    r = CvRenderer(sc, rig)
    cam, light = rig.camera(FRONT), sc.traffic_lights[0]
    ws = initial_world_state(sc)
    on = _lamp_hues(r.render(ws, FRONT, 100_000, 200_000), cam, light)
    off = _lamp_hues(r.render(ws, FRONT, 600_000, 700_000), cam, light)
    on2 = _lamp_hues(r.render(ws, FRONT, 1_100_000, 1_200_000), cam, light)
    assert on["yellow"]["yellow"] >= 2 and on2["yellow"]["yellow"] >= 2
    assert off["yellow"]["yellow"] == 0
    dark = demo_scenario(light_distance_m=25.0, light_state="dark", ped_distance_m=None, traffic=False)
    counts = _lamp_hues(CvRenderer(dark, rig).render(initial_world_state(dark), FRONT, 0, 0), cam, light)
    assert all(v == 0 for c in counts.values() for v in c.values()), counts


def test_night_is_dark_except_headlight_cone_and_fog_lowers_contrast():
    rig = default_rig([FRONT], height=160, width=288)
    cam = rig.camera(FRONT)
    imgs = {}
    for name, cond in {"day": Conditions(), "night": Conditions(time_of_day="night"),
                       "fog": Conditions(weather="fog")}.items():
        sc = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False, conditions=cond)
        imgs[name] = CvRenderer(sc, rig).render(initial_world_state(sc), FRONT, 0, 0).astype(float)
    assert imgs["night"].mean() < 0.35 * imgs["day"].mean()

    def road_px(name, x_m):  # a road point on the ego lane centre, x_m ahead of the rig origin
        uv, ok = cam.project_rig(np.array([[x_m, 0.0, 0.0]]))
        u, v = np.round(uv[0]).astype(int)
        return imgs[name][v, u]

    assert road_px("night", 9.0).mean() > 3 * road_px("night", 60.0).mean()  # lit vs. beyond the headlights
    # Fog: road 60 m ahead is nearly the sky (fog) colour; in clear weather it is far from it.
    sky = {k: v[0, v.shape[1] // 2] for k, v in imgs.items()}
    gap = {k: np.abs(road_px(k, 60.0) - sky[k]).sum() for k in ("day", "fog")}
    assert gap["fog"] < 0.3 * gap["day"], gap
    assert np.abs(road_px("fog", 6.0) - sky["fog"]).sum() > 2 * gap["fog"]  # near things keep contrast


def test_rain_adds_streaks_deterministically():
    sc = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False, conditions=Conditions(weather="rain"))
    rig = default_rig([FRONT], height=160, width=288)
    r = CvRenderer(sc, rig)
    ws = initial_world_state(sc)
    a, b, c = r.render(ws, FRONT, 0, 0), r.render(ws, FRONT, 0, 0), r.render(ws, FRONT, 0, 100_000)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_mesh_winding_faces_outward_and_ground_faces_up():
    from cordillera.render.scene import _Builder

    b = _Builder()
    b.box((-1.0, -2.0, 0.0), (3.0, 1.0, 2.0), (0.5, 0.5, 0.5))
    box = b.mesh()
    n = box.normals()
    out = box.quads.mean(axis=1) - np.array([1.0, -0.5, 1.0])
    assert np.all(np.sum(n * out, axis=1) > 0)  # CCW seen from outside on all six faces
    np.testing.assert_allclose(np.abs(n).sum(axis=1), 1.0)
    car = actor_template(ActorSpec("c1", "car", 0.0, 0.0, 0.0))
    top = car.quads[car.normals()[:, 2] > 0.99]
    assert top[..., 2].max() == pytest.approx(1.5)  # roof at the actor height
    sc = demo_scenario()
    m = build_static(sc)
    g = m.layer >= 0
    assert np.all(m.normals()[g][:, 2] > 0.99)
    assert np.all(np.diff(m.sorted_ground().layer) >= 0)
    assert shade(np.array([[0, 0, 1.0]]))[0] == pytest.approx(1.0)


def test_clip_near_keeps_the_part_in_front():
    tri = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    out = clip_near(tri, near=0.5)
    assert len(out) == 4 and np.all(out[:, 2] >= 0.5 - 1e-12)
    assert len(clip_near(tri - [0, 0, 5], near=0.5)) == 0
    assert len(Mesh.concat([Mesh.empty(), Mesh.empty()])) == 0


def test_make_renderer_backends_protocol_and_log_line(caplog):
    sc = demo_scenario(traffic=False)
    rig = default_rig(["camera_front_tele_30fov", FRONT], height=96, width=160)
    with caplog.at_level(logging.INFO, logger="cordillera.render"):
        r = make_renderer(sc, rig, backend="cv")
    assert isinstance(r, CvRenderer)
    assert sum("render backend" in rec.message for rec in caplog.records) == 1
    assert r.cameras() == ["camera_front_tele_30fov", FRONT]
    img = r.render(initial_world_state(sc), FRONT, 0, 100_000)
    assert img.shape == (96, 160, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError, match="backend"):
        make_renderer(sc, rig, backend="vulkan")
    with pytest.raises(ValueError, match="not in the rig"):
        r.render(initial_world_state(sc), "camera_rear_tele_30fov", 0, 0)
    auto = make_renderer(sc, rig)  # GL where EGL works, else the fallback; same protocol either way
    assert auto.render(initial_world_state(sc), FRONT, 0, 0).shape == (96, 160, 3)


def test_invisible_actor_is_not_drawn():
    ped = ActorSpec("p", "pedestrian", 12.0, -1.8, 1.57, appear_us=5_000_000)
    sc = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False, actors=(ped,))
    rig = default_rig([FRONT], height=160, width=288)
    r = CvRenderer(sc, rig)
    before = r.render(initial_world_state(sc, 0), FRONT, 0, 0)
    after = r.render(initial_world_state(sc, 5_000_000), FRONT, 0, 5_000_000)
    assert (np.abs(before.astype(int) - after.astype(int)).sum(axis=2) > 30).sum() > 20


def test_offset_polyline_with_a_repeated_vertex_stays_finite():
    """A map polyline with a doubled vertex (zero-length segment) offsets like the clean one
    (a bevel at the doubled corner) instead of producing NaN vertices (seen as a RuntimeWarning while generating the standard suite)."""
    from cordillera.render.scene import _offset

    clean = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 10.0]])
    doubled = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [20.0, 10.0]])
    a, b = _offset(clean, 2.0), _offset(doubled, 2.0)
    assert np.isfinite(b).all()
    np.testing.assert_allclose(b[[0, 3, 4]], a, atol=1e-9)  # the second copy takes the corner's bisector
    np.testing.assert_allclose(b[[0, 2]], [[0.0, 2.0], [10.0, 2.0]], atol=1e-9)  # the first continues the +x edge
