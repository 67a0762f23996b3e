"""Write → read round trip of the PhysicalAI-AV layout: files, index tables, ego trajectory,
frames (within a stated compression tolerance), calibration, reasoning, resume."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from data_synth import SMALL_CAMERAS, ego_states, make_clip, smooth_frame

from cordillera.data import keys as K
from cordillera.data import layout as L
from cordillera.data import writer as W
from cordillera.data.reader import PaiReader

IDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
# H.264 crf 18 on smooth synthetic frames (incl. RGB->yuv420p chroma subsampling): mean |err| < 3
FRAME_MAE_TOLERANCE = 3.0


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    w = W.create(root, SMALL_CAMERAS, chunk_size=2)
    clips = [make_clip(IDS[0]), make_clip(IDS[1], metadata={"family": "cut_in", "category": "long_tail", "seed": 7},
                                           split="val", events=[]), make_clip(IDS[2])]
    for c in clips:
        w.add_clip(c)
    assert w.finalize() == IDS
    return root, clips


def test_layout_files_and_index_tables(ds):
    root, _ = ds
    for chunk in (0, 1):
        for cam in SMALL_CAMERAS:
            assert (root / f"camera/{cam}/{cam}.chunk_{chunk:04d}.zip").exists()
        assert (root / f"labels/egomotion/egomotion.chunk_{chunk:04d}.zip").exists()
        assert (root / f"labels/obstacle.offline/obstacle.offline.chunk_{chunk:04d}.zip").exists()
        for f in L.CALIBRATION_FEATURES:
            assert (root / f"calibration/{f}/{f}.chunk_{chunk:04d}.parquet").exists()
    with zipfile.ZipFile(root / "camera/camera_front_wide_120fov/camera_front_wide_120fov.chunk_0000.zip") as zf:
        assert sorted(zf.namelist()) == sorted(
            f"{c}.camera_front_wide_120fov.{ext}" for c in IDS[:2] for ext in ("mp4", "timestamps.parquet"))
    feats = pd.read_csv(root / "features.csv", index_col="feature")
    assert json.loads(feats.at["egomotion", "clip_files_in_zip"]) == {"egomotion": "{clip_id}.egomotion.parquet"}
    assert "{chunk_id" in feats.at["camera_front_wide_120fov", "chunk_path"]
    ci = pd.read_parquet(root / "clip_index.parquet")
    assert ci.index.name == "clip_id" and list(ci.index) == IDS
    assert ci["chunk"].tolist() == [0, 0, 1]
    assert list(ci.loc[IDS[0], "event_t0s"]) == [2_000_000] and list(ci.loc[IDS[1], "event_t0s"]) == []
    assert ci["end_timestamp"].tolist() == [9_000_000] * 3
    assert ci["split"].tolist() == ["train", "val", "train"] and ci["clip_is_valid"].all()
    fp = pd.read_parquet(root / "metadata/feature_presence.parquet")
    assert fp.loc[IDS[0]].all() and set(fp.columns) == set(feats.index)
    dc = pd.read_parquet(root / "metadata/data_collection.parquet")
    assert dc.loc[IDS[1], "family"] == "cut_in" and dc.loc[IDS[1], "seed"] == 7
    rs = pd.read_parquet(root / "reasoning/ood_reasoning.parquet")
    assert list(rs.index) == [IDS[0], IDS[2]]  # clips without events have no row
    ev = list(rs.loc[IDS[0], "events"])
    assert ev[0]["event_start_timestamp"] == 2_000_000 and ev[0]["cot"].startswith("Keep lane")
    assert not any((root / L.STAGING_DIR).iterdir())


def test_egomotion_round_trip_matches_the_states(ds):
    root, clips = ds
    r = PaiReader(root)
    ego = r.egomotion(IDS[0])
    df = r.egomotion_df(IDS[0])
    assert tuple(df.columns) == K.EGOMOTION_COLUMNS
    assert df["timestamp"].iloc[0] == 0 and np.all(np.diff(df["timestamp"]) == 10_000)  # 100 Hz from 0
    t_us, x, y, yaw, v, _, wr = ego_states(9.0)
    # anchor frame: origin at the first state, yaw zeroed
    c, s = np.cos(yaw[0]), np.sin(yaw[0])
    xa = c * (x - x[0]) + s * (y - y[0])
    ya = -s * (x - x[0]) + c * (y - y[0])
    xyz, q = ego.poses(t_us)
    assert np.abs(xyz[:, 0] - xa).max() < 0.01 and np.abs(xyz[:, 1] - ya).max() < 0.01
    yaw_read = 2 * np.arctan2(q[:, 2], q[:, 3])
    assert np.abs(np.angle(np.exp(1j * (yaw_read - (yaw - yaw[0]))))).max() < 1e-6
    # between 10 Hz states the cubic densification follows the circle to well under a cm
    tq = np.arange(0, 9_000_000, 37_000)
    yq = yaw[0] + 0.1 * tq * 1e-6
    xq = 100 * (np.sin(yq) - np.sin(yaw[0]))
    yq_ = -100 * (np.cos(yq) - np.cos(yaw[0]))
    xyzq, _ = ego.poses(tq)
    assert np.abs(xyzq[:, 0] - (c * xq + s * yq_)).max() < 0.01
    vel, acc, curv = ego.dynamics(tq)
    assert np.allclose(np.linalg.norm(vel, axis=1), 10.0, atol=1e-9)
    assert np.allclose(curv, 0.1 / 10.0) and np.allclose(np.linalg.norm(acc, axis=1), 10.0 * 0.1)
    with pytest.raises(ValueError, match="no extrapolation"):
        ego.poses([9_000_001])


def test_frames_round_trip_within_compression_tolerance(ds):
    root, clips = ds
    r = PaiReader(root)
    for ci, cam in enumerate(SMALL_CAMERAS):
        vs = r.video(IDS[2], cam)
        ts = vs.timestamps
        assert ts[0] == 0 and np.all(np.diff(ts) > 0)
        assert np.all(np.abs(np.diff(ts) - 1e6 / 30) <= 1)  # 30 fps
        assert len(ts) == 271  # 9 s at 30 fps, both ends included
        frames, got_ts = r.frames_at(IDS[2], cam, [0, 1_000_000, 1_050_000, 5_433_333, 9_000_000])
        assert got_ts.tolist() == [0, 1_000_000, 1_033_333, 5_433_333, 9_000_000]
        # video frame at time t repeats the 10 Hz frame rendered at or before t
        for f, t in zip(frames, got_ts):
            k = int(t // 100_000)
            err = np.abs(f.astype(np.int16) - smooth_frame(k, ci)).mean()
            assert err < FRAME_MAE_TOLERANCE, (cam, t, err)
            # ...and not the next one (the content really is time-aligned)
            assert err < np.abs(f.astype(np.int16) - smooth_frame(k + 1, ci)).mean()
    # decoding out of order / repeated gives the same pixels as in order
    vs = r.video(IDS[2], SMALL_CAMERAS[0])
    a = vs.decode([200, 5, 5, 100])
    b = np.stack([vs.decode([i])[0] for i in (200, 5, 5, 100)])
    assert np.array_equal(a, b)


def test_calibration_obstacles_reasoning_and_filters(ds):
    root, clips = ds
    r = PaiReader(root)
    intr = r.camera_intrinsics(IDS[0])
    spec = clips[0].camera_specs["camera_front_wide_120fov"]
    row = intr.loc["camera_front_wide_120fov"]
    assert (row["width"], row["height"]) == (112, 64)
    assert np.allclose([row[c] for c in K.FW_POLY], list(spec.fw_poly) + [0.0] * (5 - len(spec.fw_poly)))
    back = r.camera_spec(IDS[0], "camera_front_wide_120fov")
    pts = np.array([[0.5, -0.2, 3.0], [-1.0, 0.3, 2.0]])
    assert np.allclose(back.project(pts)[0], spec.project(pts)[0], atol=1e-9)
    assert back.T_rig_camera.allclose(spec.T_rig_camera, atol=1e-12)
    assert r.vehicle_dimensions(IDS[0])["wheelbase"] == 2.85
    obs = r.obstacles(IDS[0])
    assert tuple(obs.columns) == K.OBSTACLE_COLUMNS and obs["track_id"].tolist() == ["car_1", "car_1"]
    assert r.reasoning_events(IDS[1]) == []
    assert r.reasoning_events(IDS[0])[0][K.EVENT_START_TIMESTAMP] == 2_000_000
    assert r.clips(family="cut_in") == [IDS[1]]
    assert r.clips(split=["train"]) == [IDS[0], IDS[2]]
    assert r.clips(category="long_tail", split="val") == [IDS[1]]
    with pytest.raises(ValueError, match="cannot filter"):
        r.clips(colour="red")


def test_resume_after_a_kill_keeps_staged_clips_and_never_leaves_partial_chunks(tmp_path):
    w = W.create(tmp_path, SMALL_CAMERAS, chunk_size=2)
    w.add_clip(make_clip(IDS[0], duration_s=3.0, events=[]))
    # a staging that was interrupted mid-way: a temp dir without record
    junk = tmp_path / L.STAGING_DIR / f".{IDS[1]}.tmp-999"
    junk.mkdir(parents=True)
    (junk / "half.mp4").write_bytes(b"\x00" * 10)
    # a chunk zip being written when killed: only the temp name exists
    partial = tmp_path / "labels/egomotion/.egomotion.chunk_0000.zip.tmp-999"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"PK")
    del w  # "killed": no finalize
    assert not (tmp_path / "labels/egomotion/egomotion.chunk_0000.zip").exists()
    w2 = W.create(tmp_path, SMALL_CAMERAS, chunk_size=2)
    assert w2.has_clip(IDS[0]) and not w2.has_clip(IDS[1])
    assert not junk.exists()
    w2.add_clip(make_clip(IDS[1], duration_s=3.0, events=[]))  # completes chunk 0
    assert (tmp_path / "labels/egomotion/egomotion.chunk_0000.zip").exists()
    w3 = W.create(tmp_path, SMALL_CAMERAS, chunk_size=2)
    assert w3.has_clip(IDS[0]) and w3.has_clip(IDS[1]) and w3.next_chunk == 1
    w3.add_clip(make_clip(IDS[2], duration_s=3.0, events=[]))
    assert w3.finalize() == IDS
    r = PaiReader(tmp_path)
    assert r.clips() == IDS and [r.chunk_of(c) for c in IDS] == [0, 0, 1]
    assert r.egomotion(IDS[2]).end_us == 3_000_000
    with pytest.raises(ValueError, match="cameras"):
        W.create(tmp_path, ("camera_front_wide_120fov",))


def test_writer_rejects_malformed_clips(tmp_path):
    w = W.create(tmp_path, SMALL_CAMERAS)
    c = make_clip(IDS[0], duration_s=3.0)
    c.egomotion = c.egomotion.drop(columns=["curvature"])
    with pytest.raises(ValueError, match="exactly"):
        w.add_clip(c)
    c = make_clip(IDS[0], duration_s=3.0)
    c.egomotion.loc[5, "x"] = np.nan
    with pytest.raises(ValueError, match=f"clip {IDS[0]}.*row 5"):
        w.add_clip(c)
    c = make_clip(IDS[0], duration_s=3.0, cameras=("camera_front_wide_120fov",))
    with pytest.raises(ValueError, match="differ"):
        w.add_clip(c)
    staging = tmp_path / L.STAGING_DIR
    assert not staging.exists() or not any(staging.iterdir())
