"""BEV pixel geometry, image/video encoding round trips and the rollout video."""

import math

import numpy as np
import pytest

from cordillera.render.bev import bev_pixels, local_to_rig_xy, render_bev
from cordillera.render.cv_renderer import CvRenderer
from cordillera.render.demo import demo_scenario, initial_world_state
from cordillera.render.rig import default_rig
from cordillera.render.video import (
    decode_image, encode_jpeg, encode_png, project_plan, read_frames, rollout_video, rollout_video_name, video_info,
    write_mp4,
)
from cordillera.sim.types import Plan, Rollout, StepRecord
from cordillera.world.scenario import ActorSpec, AgentState, WorldState

FRONT = "camera_front_wide_120fov"


# ----------------------------------------------------------------------------------------------
# BEV
# ----------------------------------------------------------------------------------------------
def test_bev_pixel_mapping_is_ego_up_and_scaled_by_radius():
    # 400 px, radius 30 m -> 200/30 px per metre; 10 m ahead is 66.7 px above the centre.
    np.testing.assert_allclose(bev_pixels([[10.0, 0.0]], (400, 400), 30.0), [[200.0, 200.0 - 10 * 200 / 30]])
    np.testing.assert_allclose(bev_pixels([[0.0, 3.0]], (400, 400), 30.0), [[200.0 - 3 * 200 / 30, 200.0]])  # left
    ego = AgentState(5.0, 7.0, math.pi / 2)  # facing north
    np.testing.assert_allclose(local_to_rig_xy([[5.0, 17.0], [4.0, 7.0]], ego), [[10.0, 0.0], [0.0, 1.0]], atol=1e-12)


def test_bev_draws_actor_ahead_above_the_ego_even_when_ego_faces_north():
    sc = demo_scenario(light_distance_m=None, ped_distance_m=None, traffic=False,
                       actors=(ActorSpec("truck_a", "truck", 0.0, 0.0, 0.0),))
    ego = AgentState(0.0, -12.0, math.pi / 2)  # rotated ego; the truck is 12 m ahead of it
    ws = WorldState(0, ego, {"truck_a": AgentState(0.0, 0.0, math.pi / 2)}, {})
    img = render_bev(sc, ws, radius_m=30.0, size_px=400, show_ids=False).astype(int)
    truck_colour = np.array([60, 100, 190])
    ys, xs = np.nonzero(np.abs(img - truck_colour).sum(axis=2) < 10)
    assert len(ys) > 50
    assert abs(xs.mean() - 200) < 3 and abs(ys.mean() - (200 - 12 * 200 / 30)) < 3
    plan = np.column_stack([np.linspace(0, 20, 21), np.zeros(21), np.zeros(21)])
    img2 = render_bev(sc, ws, plan_rig=plan, radius_m=30.0, size_px=400)
    green = (img2[..., 1] > 230) & (img2[..., 0] < 100)
    ys, xs = np.nonzero(green)
    assert ys.min() < 200 - 15 * 200 / 30 and abs(np.median(xs) - 200) < 2
    with pytest.raises(ValueError, match="radius"):
        render_bev(sc, ws, radius_m=0)


# ----------------------------------------------------------------------------------------------
# Images and MP4
# ----------------------------------------------------------------------------------------------
def _pattern(i, h=75, w=101):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 20 * i  # frame index in the red level
    img[10:30, 5 + 7 * i:15 + 7 * i] = 255  # a moving white block
    return img


def test_png_is_lossless_and_jpeg_is_close_rgb_order_kept():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_png(img)), img)
    flat = np.zeros((64, 64, 3), np.uint8)
    flat[..., 0] = 200  # pure-ish red must stay red (no BGR swap)
    back = decode_image(encode_jpeg(flat))
    assert np.abs(back.astype(int) - flat).mean() < 3 and back[..., 0].mean() > 190
    with pytest.raises(ValueError, match="HxWx3"):
        encode_jpeg(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="decode"):
        decode_image(b"not an image")


def test_mp4_is_h264_yuv420p_even_sized_and_frame_accurate(tmp_path):
    frames = [_pattern(i) for i in range(12)]
    p = write_mp4(tmp_path / "a.mp4", frames, fps=10.0)
    info = video_info(p)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (102, 76) and info["frames"] == 12  # padded to even
    got = read_frames(p, indices=[0, 7, 3, 11])
    assert got.shape == (4, 76, 102, 3)
    levels = np.round(got[:, 40:70, 50:90, 0].astype(float).mean(axis=(1, 2)) / 20).astype(int)
    assert levels.tolist() == [0, 7, 3, 11]
    # Timestamps: the frame at or before t; at 10 fps frame k starts at k·100 ms.
    got_t = read_frames(p, timestamps_us=[0, 749_999, 750_000, 1_100_000])
    levels_t = np.round(got_t[:, 40:70, 50:90, 0].astype(float).mean(axis=(1, 2)) / 20).astype(int)
    assert levels_t.tolist() == [0, 7, 7, 11]
    with pytest.raises(ValueError, match="out of range"):
        read_frames(p, indices=[12])
    with pytest.raises(ValueError, match="exactly one"):
        read_frames(p)


# ----------------------------------------------------------------------------------------------
# Rollout video
# ----------------------------------------------------------------------------------------------
def _plan(t_us, coc):
    t = t_us + 100_000 * np.arange(21)
    x = np.linspace(0, 16, 21)
    return Plan(t, np.column_stack([x, 0.02 * x**2, np.zeros(21)]), np.zeros(21), coc=coc,
                alternatives=((np.column_stack([x, -0.03 * x**2, np.zeros(21)]), np.zeros(21)),))


def test_project_plan_lands_below_the_horizon_and_bends_the_right_way():
    cam = default_rig([FRONT]).camera(FRONT)
    pieces = project_plan(cam, np.column_stack([np.linspace(0, 30, 31), np.zeros(31), np.zeros(31)]))
    assert len(pieces) == 1
    pts = pieces[0]
    assert np.all(pts[:, 1] > cam.cy)  # ground ahead is below the principal point
    assert np.all(np.diff(pts[:, 1]) <= 1e-9)  # farther -> closer to the horizon
    np.testing.assert_allclose(pts[:, 0], cam.cx, atol=1e-6)  # straight ahead stays on the centre column
    left = project_plan(cam, np.column_stack([np.linspace(3, 30, 28), np.linspace(0, 5, 28), np.zeros(28)]))[0]
    assert left[-1, 0] < cam.cx


def test_rollout_video_writes_alpasim_named_mp4_one_frame_per_step(tmp_path):
    sc = demo_scenario(traffic=False)
    rig = default_rig([FRONT], height=160, width=288)
    ws0 = initial_world_state(sc)
    steps = []
    for k in range(6):
        t = k * 100_000
        ego = AgentState(0.8 * k, -1.8, 0.0, 8.0)
        steps.append(StepRecord(t, ego, ws0.actors, ws0.signals,
                                plan=_plan(t, "Stop for the pedestrian on the crosswalk ahead." if k % 2 else None),
                                force_gt=k < 2))
    ro = Rollout(sc.id, "r0", "test_policy", 0, steps)
    metrics = {"collision_any": np.array([0, 0, 0, 1, 0, 0], bool), "dist_to_gt_m": np.linspace(0, 1, 6)}
    out = rollout_video(ro, sc, CvRenderer(sc, rig), tmp_path, camera=FRONT, metrics=metrics)
    assert out.name == rollout_video_name(sc.id, "r0", FRONT) == f"{sc.id}_r0_{FRONT}_default.mp4"
    info = video_info(out)
    assert info["frames"] == 6 and info["fps"] == pytest.approx(10.0)
    assert info["width"] == 288 and info["height"] == 144 + 160  # [BEV | metrics] over the camera
    frames = read_frames(out, indices=[3])
    panel = frames[0, :144, 144:].astype(int)
    assert ((panel[..., 0] > 200) & (panel[..., 1] < 120)).sum() > 10  # the red "collision: YES" line
    # Frames given directly (one per step) work too and give the same layout.
    imgs = [np.zeros((160, 288, 3), np.uint8)] * 6
    out2 = rollout_video(ro, sc, imgs, tmp_path / "x.mp4", camera=FRONT, rig=rig)
    assert video_info(out2)["frames"] == 6
    with pytest.raises(ValueError, match="no stored frame"):
        rollout_video(ro, sc, None, tmp_path / "y.mp4", camera=FRONT, rig=rig)
