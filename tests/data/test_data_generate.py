"""Clip generation from expert rollouts: round trip against the rollout, resume, broken scenarios."""

import dataclasses

import numpy as np
import pytest

from cordillera import code_version
from cordillera.data import keys as K
from cordillera.data.generate import clip_uuid, generate
from cordillera.data.reader import PaiReader
from cordillera.data.samples import build_sample

CAMS = ("camera_cross_left_120fov", "camera_front_wide_120fov")
GOOD = ("car_following", 1000)
BROKEN = ("no_such_family", 1)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    rep = generate([GOOD, BROKEN], None, out, workers=1, cameras=CAMS, image_hw=(64, 112),
                   duration_us=9_000_000, progress=False)
    return out, rep


def test_broken_scenario_is_skipped_and_reported(gen):
    out, rep = gen
    assert rep["written"] == [clip_uuid(*GOOD)] and rep["clips_total"] == 1
    assert len(rep["failed"]) == 1 and rep["failed"][0]["family"] == "no_such_family"
    assert "no_such_family" in rep["failed"][0]["error"]
    assert "no_such_family" in (out / ".cordillera/failures.jsonl").read_text()


def test_generated_clip_matches_the_rollout(gen):
    from cordillera.render import make_renderer
    from cordillera.render.rig import default_rig
    from cordillera.sim.expert import ExpertPolicy
    from cordillera.sim.runtime import SimConfig, run_rollout
    from cordillera.world.generator import make

    out, _ = gen
    cid = clip_uuid(*GOOD)
    r = PaiReader(out)
    meta = r.metadata(cid)
    assert meta["family"] == "car_following" and meta["seed"] == 1000 and meta["category"] == "nominal"
    assert meta["split"] in ("train", "val") and meta["time_of_day"] in ("day", "dusk", "night")
    assert meta[K.CODE_VERSION] == code_version()  # which simulator rendered it
    # the same scenario + seed + policy reproduces the rollout bit for bit: compare the ego track
    sc = dataclasses.replace(make(*GOOD), duration_us=9_000_000)
    rig = default_rig(CAMS, height=64, width=112)
    ro = run_rollout(sc, ExpertPolicy(), SimConfig(cameras=CAMS, keep_images=True),
                     renderer=make_renderer(sc, rig), seed=0)
    xyy = ro.ego_xy_yaw()
    x0, y0, yaw0 = xyy[0]
    c, s = np.cos(yaw0), np.sin(yaw0)
    xa = c * (xyy[:, 0] - x0) + s * (xyy[:, 1] - y0)
    ya = -s * (xyy[:, 0] - x0) + c * (xyy[:, 1] - y0)
    ego = r.egomotion(cid)
    xyz, q = ego.poses(ro.t_us())
    assert np.abs(xyz[:, 0] - xa).max() < 0.01 and np.abs(xyz[:, 1] - ya).max() < 0.01  # ≤ 1 cm
    assert ego.end_us == 9_000_000 and ego.t_us[1] == 10_000
    # frames: 30 fps repeats of the 10 Hz renders
    vs = r.video(cid, "camera_front_wide_120fov")
    assert vs.num_frames == 271
    frames, ts = vs.frames_at([0, 3_000_000, 3_066_666])
    for f, t in zip(frames, ts):
        src = ro.steps[int(t // 100_000)].frames["camera_front_wide_120fov"].image
        assert np.abs(f.astype(int) - src).mean() < 6.0  # H.264 crf 18 on rendered (edgy) frames
    # obstacles: the lead car, in the anchor frame, ahead of the ego at t=0
    obs = r.obstacles(cid)
    first = obs[obs[K.TIMESTAMP] == 0]
    assert len(first) >= 1 and (first["x"] > 5).any() and obs["label_class"].isin(["automobile", "heavy_truck", "bus"]).any()
    assert r.vehicle_dimensions(cid)["wheelbase"] == sc.ego.wheelbase_m
    s = build_sample(r, cid, 2_000_000, cameras=CAMS, image_hw=(32, 56))
    assert s[K.IMAGE_FRAMES].shape == (2, 4, 3, 32, 56)


def test_rerun_resumes(gen):
    out, _ = gen
    rep = generate([GOOD], None, out, workers=1, cameras=CAMS, image_hw=(64, 112), duration_us=9_000_000,
                   progress=False)
    assert rep["written"] == [] and rep["skipped"] == [clip_uuid(*GOOD)] and rep["clips_total"] == 1


@pytest.mark.slow
def test_full_clips_through_ray(tmp_path):
    """Two 20 s clips with the model's 4 cameras at 320×576 through a local Ray cluster."""
    rep = generate("smoke", 2, tmp_path, workers=2, progress=False)
    assert rep["failed"] == [] and len(rep["written"]) == 2
    r = PaiReader(tmp_path)
    assert len(r.clips()) == 2
    for cid in r.clips():
        assert r.egomotion(cid).end_us == 20_000_000
        assert r.video(cid, "camera_front_tele_30fov").num_frames == 601
        f, _ = r.frames_at(cid, "camera_front_wide_120fov", [10_000_000])
        assert f.shape == (1, 320, 576, 3)


def test_perturbation_draw_is_seeded_train_only_and_checked():
    from cordillera.data.generate import perturbation_for, split_for

    p = perturbation_for("road_following", 1005, 0, 1.0)
    assert p is not None and p == perturbation_for("road_following", 1005, 0, 0.5)  # same draw, same stream
    assert perturbation_for("road_following", 1005, 0, 0.0) is None
    assert perturbation_for("road_following", 1005, 1, 1.0) != p  # the rollout seed enters the draw
    val_seed = next(s for s in range(1000, 1100) if split_for(clip_uuid("road_following", s)) == "val")
    assert perturbation_for("road_following", val_seed, 0, 1.0) is None  # validation clips stay clean
    with pytest.raises(ValueError, match="perturb_fraction"):
        perturbation_for("road_following", 1005, 0, 1.5)
    # the "drift" profile: the same seeded draw in its own ranges (held for seconds, smaller turns)
    d = perturbation_for("road_following", 1005, 0, 1.0, "drift")
    assert d == perturbation_for("road_following", 1005, 0, 1.0, "drift") and d != p
    assert 2_000_000 <= d.t_end_us - d.t_start_us <= 4_000_000 and 2_500_000 <= d.t_start_us <= 6_000_000
    assert np.deg2rad(1.5) - 1e-9 <= abs(d.yaw_offset_rad) <= np.deg2rad(4.0) + 1e-9
    with pytest.raises(ValueError, match="unknown perturb profile 'wobble'"):
        perturbation_for("road_following", 1005, 0, 1.0, "wobble")


def test_perturbed_clip_stores_its_push_and_labels_only_clean_futures(tmp_path):
    from cordillera.data.generate import clip_perturbation, perturbation_for, redrive, redrive_drift_m
    from cordillera.sim.policies.perturbed import label_window_ok
    from cordillera.reasoning.cli import label_dataset

    fam, seed = "road_following", 1005  # a training clip; pushed at 2.9–3.5 s
    rep = generate([(fam, seed)], None, tmp_path, workers=1, cameras=CAMS, image_hw=(64, 112),
                   duration_us=14_000_000, progress=False, perturb_fraction=1.0)
    assert rep["written"] == [clip_uuid(fam, seed)]
    r = PaiReader(tmp_path)
    cid = r.clips()[0]
    push = clip_perturbation(r.metadata(cid))
    assert push == perturbation_for(fam, seed, 0, 1.0) and push.t_end_us == 3_500_000
    t0s = r.event_t0s(cid)
    assert all(label_window_ok(t, push) for t in t0s)
    # dense labels re-drive the clip with its push (else it would not match the stored egomotion)
    from cordillera.data.generate import clip_ego_xy

    ego_xy = clip_ego_xy(r, cid)
    _, with_push = redrive(fam, seed, 14_000_000, 0, push)
    _, without = redrive(fam, seed, 14_000_000, 0, None)
    assert redrive_drift_m(with_push, ego_xy) < 0.01 < 0.5 < redrive_drift_m(without, ego_xy)
    r.close()
    dens = label_dataset(tmp_path, overwrite=True, every_us=1_000_000, start_us=1_700_000, progress=False)
    assert dens["failed"] == {} and dens["labelled"] == [cid]
    r = PaiReader(tmp_path)
    t0s = [e["event_start_timestamp"] for e in r.reasoning_events(cid)]
    assert all(label_window_ok(t, push) for t in t0s) and min(t0s) >= push.t_end_us
    # the 1 s grid from 1.7 s after the push, up to 14 − 6.4 s, plus the recovery's onset (3.6 s)
    assert {3_700_000, 4_700_000, 5_700_000, 6_700_000, 3_600_000} <= set(t0s)
    assert not {1_700_000, 2_700_000} & set(t0s)  # futures holding the push (2.9–3.5 s)


def test_handover_draw_is_seeded_train_only_and_checked():
    from cordillera.data.generate import handover_for, split_for

    h = handover_for("road_following", 1009, 0, 1.0, "ckpt")
    assert h is not None and h == handover_for("road_following", 1009, 0, 0.3, "ckpt")  # same stream
    assert handover_for("road_following", 1009, 0, 0.0, "ckpt") is None
    val_seed = next(s for s in range(1000, 1100) if split_for(clip_uuid("road_following", s)) == "val")
    assert handover_for("road_following", val_seed, 0, 1.0, "ckpt") is None  # held-out scenarios stay expert-only
    with pytest.raises(ValueError, match="handover_fraction"):
        handover_for("road_following", 1009, 0, -0.1, "ckpt")
    assert clip_uuid("road_following", 1009, "handover") != clip_uuid("road_following", 1009)


def test_handover_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a checkpoint directory"):
        generate([("road_following", 1009)], None, tmp_path / "d", workers=1, handover_from=tmp_path,
                 handover_fraction=1.0, progress=False)
    with pytest.raises(ValueError, match="needs handover_from"):
        generate([("road_following", 1009)], None, tmp_path / "d", workers=1, handover_fraction=0.5, progress=False)


@pytest.mark.slow
def test_handover_clip_is_the_learner_then_the_expert_labelled_after_the_handover(tmp_path):
    """The shipped VLA drives road_following/1009 until 3.6 s, the expert after: the clip is a clip of
    its own, the same as the expert's during the force-GT warm-up and apart after it, labelled on the
    1 s grid only from the handover on; re-labelling leaves it alone (it cannot be re-driven)."""
    from pathlib import Path

    from cordillera.data.generate import HANDOVER, clip_ego_xy, clip_handover, handover_for
    from cordillera.reasoning.cli import label_clip, label_dataset
    from cordillera.render.rig import DEFAULT_MODEL_CAMERAS

    ckpt = str(Path(__file__).resolve().parents[2] / "checkpoints" / "nano")
    fam, seed = "road_following", 1009
    kw = dict(workers=1, cameras=DEFAULT_MODEL_CAMERAS, image_hw=(64, 112), duration_us=12_000_000, progress=False,
              handover_from=ckpt, handover_fraction=1.0, label_every_us=1_000_000, label_start_us=1_700_000)
    rep = generate([(fam, seed)], None, tmp_path, **kw)
    expert_id, hand_id = clip_uuid(fam, seed), clip_uuid(fam, seed, HANDOVER)
    assert rep["failed"] == [] and sorted(rep["written"]) == sorted([expert_id, hand_id])
    assert rep["handover_clips"] == [hand_id]
    r = PaiReader(tmp_path)
    meta = r.metadata(hand_id)
    h = clip_handover(meta)
    assert h == handover_for(fam, seed, 0, 1.0, ckpt) and h.t_end_us == 3_600_000
    assert clip_handover(r.metadata(expert_id)) is None and sorted(r.clips(split="train")) == sorted([expert_id, hand_id])
    a, b = clip_ego_xy(r, expert_id), clip_ego_xy(r, hand_id)
    gap_m = np.linalg.norm(a - b, axis=1)
    assert gap_m[:17].max() < 1e-6  # both forced onto the ground truth for 1.7 s
    assert gap_m[17:37].max() > 0.01  # the VLA drives 1.7–3.6 s, not the expert
    t0s = r.event_t0s(hand_id)
    assert t0s and min(t0s) >= h.t_end_us and {3_700_000, 4_700_000} <= set(t0s) and max(t0s) <= 5_600_000
    with pytest.raises(ValueError, match="cannot be re-driven"):
        label_clip(r, hand_id)
    events = r.reasoning_events(hand_id)
    r.close()
    dens = label_dataset(tmp_path, overwrite=True, every_us=1_000_000, start_us=1_700_000, progress=False)
    assert dens["labelled"] == [expert_id] and dens["on_policy"] == [hand_id] and dens["skipped"] == []
    assert dens["failed"] == {}
    r = PaiReader(tmp_path)
    assert r.reasoning_events(hand_id) == events  # kept as generated
    r.close()
    again = generate([(fam, seed)], None, tmp_path, **kw)
    assert again["written"] == [] and sorted(again["skipped"]) == sorted([expert_id, hand_id])
