"""Sample assembly (Alpamayo windows and frames), the torch Dataset/DataLoader, leakage, and
reading the real release's layout variants."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from data_synth import FOUR_CAMERAS, SMALL_CAMERAS, make_clip, smooth_frame

from cordillera.data import keys as K
from cordillera.data import layout as L
from cordillera.data import writer as W
from cordillera.data.dataset import PaiDataset, collate_samples, make_dataloader
from cordillera.data.reader import PaiReader
from cordillera.data.samples import DEFAULT_T0_US, FrameCache, build_sample, sample_points, valid_t0s

A = "00000000-0000-4000-8000-00000000000a"
B = "00000000-0000-4000-8000-00000000000b"  # same as A up to T0, altered after
C = "00000000-0000-4000-8000-00000000000c"
T0 = 2_500_000
EVENTS = [{K.EVENT_START_TIMESTAMP: T0, K.COT: "Slow for the curve."},
          {K.EVENT_START_TIMESTAMP: 1_000_000, K.COT: "too early"},  # t0 < 1.6 s: dropped
          {K.EVENT_START_TIMESTAMP: 2_600_000, K.COT: "Keep lane."}]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    w = W.create(root, FOUR_CAMERAS, chunk_size=10)
    w.add_clip(make_clip(A, cameras=FOUR_CAMERAS, events=EVENTS))
    w.add_clip(make_clip(B, cameras=FOUR_CAMERAS, events=EVENTS, perturb_after_us=T0))
    w.add_clip(make_clip(C, cameras=FOUR_CAMERAS, duration_s=12.0, events=[]))
    w.finalize()
    return root


def test_event_filter_and_sample_points(ds):
    assert valid_t0s([1_500_000, 1_600_000, 2_600_000, 2_700_000], end_us=9_000_000) == [1_600_000, 2_600_000]
    r = PaiReader(ds)
    assert sample_points(r, A) == [(T0, "Slow for the curve."), (2_600_000, "Keep lane.")]
    assert sample_points(r, A, per="clip") == [(T0, "Slow for the curve.")]
    assert sample_points(r, C) == []  # no events
    assert sample_points(r, C, use_default_keyframe=True) == [(DEFAULT_T0_US, None)]
    assert sample_points(r, A, use_default_keyframe=True) == []  # 5.1 + 6.4 > 9 s


def test_sample_contents_match_alpamayo_windows(ds):
    r = PaiReader(ds)
    cams = ["camera_front_tele_30fov", "camera_front_wide_120fov", "camera_cross_right_120fov",
            "camera_cross_left_120fov"]
    s = build_sample(r, A, T0, cameras=cams, image_hw=(32, 56))
    assert s[K.CAMERA_NAMES_KEY] == list(FOUR_CAMERAS)  # cross-left, front-wide, cross-right, front-tele
    assert s[K.CAMERA_INDICES].tolist() == [0, 1, 2, 6]
    assert s[K.IMAGE_FRAMES].shape == (4, 4, 3, 32, 56) and s[K.IMAGE_FRAMES].dtype == np.uint8
    assert s[K.ABSOLUTE_TIMESTAMPS][0].tolist() == [2_200_000, 2_300_000, 2_400_000, 2_500_000]
    assert np.allclose(s[K.RELATIVE_TIMESTAMPS][0], [0.0, 0.1, 0.2, 0.3])
    assert s[K.COT_KEY] == "Slow for the curve." and s[K.T0_US] == T0 and s[K.CLIP_ID_KEY] == A
    assert s[K.METADATA_KEY]["family"] == "road_following" and s[K.METADATA_KEY]["split"] == "train"
    hx, hr, fx, fr = (s[k] for k in (K.EGO_HISTORY_XYZ, K.EGO_HISTORY_ROT, K.EGO_FUTURE_XYZ, K.EGO_FUTURE_ROT))
    assert hx.shape == (16, 3) and hr.shape == (16, 3, 3) and fx.shape == (64, 3) and fr.shape == (64, 3, 3)
    assert np.allclose(hx[-1], 0, atol=1e-6) and np.allclose(hr[-1], np.eye(3), atol=1e-6)
    # a 10 m/s, 0.1 rad/s left turn: in the rig frame at t0 the pose at dt is
    # (R sin(ω dt), R (1 - cos(ω dt))) with R = 100 m, heading ω dt
    dt_f = np.arange(1, 65) * 0.1
    assert np.abs(fx[:, 0] - 100 * np.sin(0.1 * dt_f)).max() < 0.01
    assert np.abs(fx[:, 1] - 100 * (1 - np.cos(0.1 * dt_f))).max() < 0.01
    assert np.allclose(np.arctan2(fr[:, 1, 0], fr[:, 0, 0]), 0.1 * dt_f, atol=1e-5)
    dt_h = np.arange(-15, 1) * 0.1
    assert np.abs(hx[:, 0] - 100 * np.sin(0.1 * dt_h)).max() < 0.01
    assert np.abs(hx[:, 1] - 100 * (1 - np.cos(0.1 * dt_h))).max() < 0.01
    # images: the frame at or before each request, resized with INTER_AREA
    full = build_sample(r, A, T0, cameras=["camera_cross_left_120fov"])
    for j, t in enumerate((2_200_000, 2_300_000, 2_400_000, 2_500_000)):
        ref = smooth_frame(t // 100_000, 0)
        assert np.abs(full[K.IMAGE_FRAMES][0, j].transpose(1, 2, 0).astype(int) - ref).mean() < 3.0
    with pytest.raises(ValueError, match="t0"):
        build_sample(r, A, 1_500_000)
    with pytest.raises(ValueError, match="t0"):
        build_sample(r, A, 2_700_000)  # 2.7 + 6.4 > 9.0 s


def test_no_leakage_inputs_at_t0_ignore_the_clip_after_t0(ds):
    r = PaiReader(ds)
    a = build_sample(r, A, T0, cameras=FOUR_CAMERAS, image_hw=(48, 84))
    b = build_sample(r, B, T0, cameras=FOUR_CAMERAS, image_hw=(48, 84))
    # the clips really differ after t0: future trajectory and later frames
    assert np.abs(a[K.EGO_FUTURE_XYZ] - b[K.EGO_FUTURE_XYZ]).max() > 1.0
    fa, _ = r.frames_at(A, FOUR_CAMERAS[0], [T0 + 200_000])
    fb, _ = r.frames_at(B, FOUR_CAMERAS[0], [T0 + 200_000])
    assert np.abs(fa.astype(int) - fb).mean() > 10
    # ...but every input at t0 is bit-identical
    assert np.array_equal(a[K.IMAGE_FRAMES], b[K.IMAGE_FRAMES])
    assert np.array_equal(a[K.EGO_HISTORY_XYZ], b[K.EGO_HISTORY_XYZ])
    assert np.array_equal(a[K.EGO_HISTORY_ROT], b[K.EGO_HISTORY_ROT])
    assert np.array_equal(a[K.ABSOLUTE_TIMESTAMPS], b[K.ABSOLUTE_TIMESTAMPS])


def test_frame_cache_decodes_each_frame_once(ds):
    r = PaiReader(ds)
    cache = FrameCache(64)
    build_sample(r, A, T0, cameras=SMALL_CAMERAS, image_hw=(32, 56), frame_cache=cache)
    assert (cache.hits, cache.misses) == (0, 8)
    build_sample(r, A, 2_600_000, cameras=SMALL_CAMERAS, image_hw=(32, 56), frame_cache=cache)
    assert (cache.hits, cache.misses) == (6, 10)  # 3 of 4 frames per camera shared with the first sample


def test_dataset_and_dataloader_with_workers(ds):
    d = PaiDataset(ds, image_hw=(32, 56), cameras=FOUR_CAMERAS)
    assert [(c, t) for c, t, _ in d.index] == [(A, T0), (A, 2_600_000), (B, T0), (B, 2_600_000)]
    assert len(PaiDataset(ds, image_hw=(32, 56), per="clip")) == 2
    assert len(PaiDataset(ds, image_hw=(32, 56), use_default_keyframe=True)) == 1  # only the 12 s clip
    assert len(PaiDataset(ds, image_hw=(32, 56), filters={"family": "none"})) == 0
    s = d[0]
    assert s[K.IMAGE_FRAMES].dtype == torch.uint8 and s[K.IMAGE_FRAMES].shape == (4, 4, 3, 32, 56)
    batch = collate_samples([d[0], d[1]])
    assert batch[K.IMAGE_FRAMES].shape == (2, 4, 4, 3, 32, 56) and batch[K.T0_US].tolist() == [T0, 2_600_000]
    dl = make_dataloader(d, batch_size=2, num_workers=2, seed=3)
    seen = []
    for b in dl:
        assert b[K.EGO_FUTURE_XYZ].shape == (2, 64, 3)
        assert len(set(b[K.CLIP_ID_KEY])) == 1  # clip-grouped: a batch is one clip's two events
        seen += list(zip(b[K.CLIP_ID_KEY], b[K.T0_US].tolist()))
        ref = d[d.index.index((b[K.CLIP_ID_KEY][0], b[K.T0_US][0].item(), b[K.COT_KEY][0]))]
        assert torch.equal(ref[K.IMAGE_FRAMES], b[K.IMAGE_FRAMES][0])
    assert sorted(seen) == sorted((c, t) for c, t, _ in d.index)
    with pytest.raises(ValueError, match="cameras"):
        PaiDataset(ds, cameras=["camera_rear_tele_30fov"])


def test_reads_the_real_release_layout_variants(ds, tmp_path):
    import shutil

    root = tmp_path / "real"
    shutil.copytree(ds, root)
    # legacy sensor_presence instead of feature_presence (with a non-bool column dropped)
    fp = pd.read_parquet(root / L.FEATURE_PRESENCE)
    fp["sensor_name_str"] = "x"
    fp.to_parquet(root / L.SENSOR_PRESENCE_LEGACY)
    (root / L.FEATURE_PRESENCE).unlink()
    (root / L.DATA_COLLECTION).unlink()
    # clip_index with only `chunk`; reasoning events as a JSON string column with clip_id as a column
    ci = pd.read_parquet(root / L.CLIP_INDEX)[["chunk"]]
    ci.to_parquet(root / L.CLIP_INDEX)
    pd.DataFrame({"clip_id": [A], "events": [json.dumps(EVENTS)]}).to_parquet(root / L.REASONING, index=False)
    r = PaiReader(root)
    assert "sensor_name_str" not in r.feature_presence.columns
    assert r.clips() == [A, B, C]
    assert r.end_timestamp(A) == 20_000_000  # recipes' fixed clip length when end_timestamp is absent
    assert r.event_t0s(A) == [1_000_000, T0, 2_600_000] and r.event_t0s(B) == []
    assert r.reasoning_events(A)[1][K.COT] == "Slow for the curve."
    s = build_sample(r, A, T0, cameras=SMALL_CAMERAS)
    assert s[K.COT_KEY] == "Slow for the curve." and s[K.METADATA_KEY] == {"chunk": 0}
