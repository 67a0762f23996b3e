"""Interop with NVIDIA's physical-ai-av devkit: its video reader, egomotion interpolator, camera
models and calibration/feature helpers read what our writer produced."""

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from data_synth import SMALL_CAMERAS, ego_states, make_clip

from cordillera.data import writer as W
from cordillera.data.reader import PaiReader

pai = pytest.importorskip("physical_ai_av")
from physical_ai_av import calibration, dataset, egomotion, video  # noqa: E402
from physical_ai_av.utils import camera_models  # noqa: E402

CID = "00000000-0000-4000-8000-0000000000aa"


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("interop")
    w = W.create(root, SMALL_CAMERAS)
    clip = make_clip(CID)
    w.add_clip(clip)
    w.finalize()
    return root, clip


def _features(root):
    df = pd.read_csv(root / "features.csv", index_col="feature")
    df["clip_files_in_zip"] = df["clip_files_in_zip"].map(json.loads, na_action="ignore")
    return dataset.Features(df)


def test_devkit_features_resolve_our_paths(ds):
    root, _ = ds
    f = _features(root)
    assert f.CAMERA.CAMERA_FRONT_WIDE_120FOV == "camera_front_wide_120fov"
    assert f.LABELS.EGOMOTION == "egomotion" and f.LABELS.OBSTACLE_OFFLINE == "obstacle.offline"
    assert (root / f.get_chunk_feature_filename(0, "egomotion")).exists()
    members = f.get_clip_files_in_zip(CID, "camera_front_wide_120fov")
    assert members == {"video": f"{CID}.camera_front_wide_120fov.mp4",
                       "frame_timestamps": f"{CID}.camera_front_wide_120fov.timestamps.parquet"}


def test_devkit_seek_video_reader_matches_our_decoder_bit_for_bit(ds):
    root, _ = ds
    f = _features(root)
    r = PaiReader(root)
    for cam in SMALL_CAMERAS:
        m = f.get_clip_files_in_zip(CID, cam)
        with zipfile.ZipFile(root / f.get_chunk_feature_filename(0, cam)) as zf:
            ts = pd.read_parquet(io.BytesIO(zf.read(m["frame_timestamps"])))["timestamp"].to_numpy()
            reader = video.SeekVideoReader(io.BytesIO(zf.read(m["video"])), ts)
        req = np.array([0, 1_700_000, 1_800_000, 1_900_000, 2_000_000, 4_321_000, 8_999_999], dtype=np.int64)
        theirs, their_ts = reader.decode_images_from_timestamps(req)
        ours, our_ts = r.frames_at(CID, cam, req)
        assert np.array_equal(their_ts, our_ts)
        assert theirs.dtype == np.uint8 and theirs.shape == ours.shape == (len(req), 64, 112, 3)
        assert np.array_equal(theirs, ours)
        reader.close()


def test_devkit_egomotion_interpolator_matches_our_poses(ds):
    root, _ = ds
    f = _features(root)
    with zipfile.ZipFile(root / f.get_chunk_feature_filename(0, "egomotion")) as zf:
        df = pd.read_parquet(io.BytesIO(zf.read(f.get_clip_files_in_zip(CID, "egomotion")["egomotion"])))
    interp = egomotion.EgomotionState.from_egomotion_df(df).create_interpolator(df["timestamp"].to_numpy())
    tq = np.arange(1_000_000, 8_000_000, 123_457, dtype=np.int64)
    state = interp(tq)
    ours = PaiReader(root).egomotion(CID)
    xyz, q = ours.poses(tq)
    assert np.abs(state.pose.translation - xyz).max() < 1e-4
    dq = np.minimum(np.abs(state.pose.rotation.as_quat() - q).max(1), np.abs(state.pose.rotation.as_quat() + q).max(1))
    assert dq.max() < 1e-6
    vel, acc, curv = ours.dynamics(tq)
    assert np.allclose(state.velocity, vel, atol=1e-9) and np.allclose(state.curvature[:, 0], curv, atol=1e-12)
    # ...and both agree with the analytic anchor-frame circle at the 10 Hz states (exact knots)
    t_us, x, y, yaw, *_ = ego_states(9.0)
    c, s = np.cos(yaw[0]), np.sin(yaw[0])
    st = interp(t_us)
    assert np.abs(st.pose.translation[:, 0] - (c * (x - x[0]) + s * (y - y[0]))).max() < 1e-4
    assert np.abs(st.pose.translation[:, 1] - (-s * (x - x[0]) + c * (y - y[0]))).max() < 1e-4


def test_devkit_camera_models_and_calibration_load_our_parquets(ds):
    root, clip = ds
    f = _features(root)
    intr_df = pd.read_parquet(root / f.get_chunk_feature_filename(0, "camera_intrinsics")).loc[CID]
    intr = calibration.CameraIntrinsics.from_intrinsics_df(intr_df)
    assert set(intr.camera_models) == set(SMALL_CAMERAS)
    for cam in SMALL_CAMERAS:
        model = intr.camera_models[cam]
        assert isinstance(model, camera_models.FThetaCameraModel)
        spec = clip.camera_specs[cam]
        assert (model.width, model.height) == (spec.width, spec.height)
        pts = np.array([[0.3, -0.1, 2.0], [-1.0, 0.4, 3.0], [2.0, 0.5, 1.5]])
        uv_ours, ok = spec.project(pts)
        assert ok.all()
        assert np.abs(model.ray2pixel(pts) - uv_ours).max() < 1e-6
        rays = model.pixel2ray(uv_ours)
        assert np.abs(rays - pts / np.linalg.norm(pts, axis=1, keepdims=True)).max() < 1e-3
    extr = calibration.SensorExtrinsics.from_extrinsics_df(
        pd.read_parquet(root / f.get_chunk_feature_filename(0, "sensor_extrinsics")).loc[CID])
    T = clip.camera_specs["camera_front_wide_120fov"].T_rig_camera
    pose = extr.sensor_poses["camera_front_wide_120fov"]
    assert np.allclose(pose.translation, T.translation) and np.allclose(pose.as_matrix()[:3, :3], T.rotation_matrix)
    dims = calibration.VehicleDimensions.from_dimensions_df(
        pd.read_parquet(root / f.get_chunk_feature_filename(0, "vehicle_dimensions")).loc[CID])
    assert dims.wheelbase == 2.85 and dims.rear_axle_to_bbox_center == 1.3965
