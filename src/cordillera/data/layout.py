"""PhysicalAI-AV on-disk layout: path templates and the feature table (spec/alpamayo_training_data.md §7.2).

A dataset directory written by :mod:`cordillera.data.writer` and read by :mod:`cordillera.data.reader`::

    <root>/
    ├── features.csv                      index `feature`; directory, chunk_path ({chunk_id}), clip_files_in_zip (JSON)
    ├── clip_index.parquet                index clip_id; chunk, event_t0s, end_timestamp, split, clip_is_valid
    ├── metadata/
    │   ├── feature_presence.parquet      index clip_id; one bool column per feature
    │   └── data_collection.parquet       index clip_id; family, category, seed, scenario_id, time_of_day, weather, ...
    ├── reasoning/
    │   └── ood_reasoning.parquet         index clip_id; events = [{event_start_timestamp, cot}, ...]
    ├── camera/
    │   └── camera_front_wide_120fov/
    │       └── camera_front_wide_120fov.chunk_0000.zip
    │             <clip_id>.camera_front_wide_120fov.mp4               (alias video; H.264, 30 fps)
    │             <clip_id>.camera_front_wide_120fov.timestamps.parquet (alias frame_timestamps; `timestamp` µs)
    ├── labels/
    │   ├── egomotion/egomotion.chunk_0000.zip
    │   │     <clip_id>.egomotion.parquet                  (alias egomotion; ~100 Hz, anchor frame)
    │   └── obstacle.offline/obstacle.offline.chunk_0000.zip
    │         <clip_id>.obstacle.offline.parquet           (alias obstacle; cuboid tracks, anchor frame)
    ├── calibration/
    │   ├── camera_intrinsics/camera_intrinsics.chunk_0000.parquet   index (clip_id, camera_id); f-theta
    │   ├── sensor_extrinsics/sensor_extrinsics.chunk_0000.parquet   index (clip_id, sensor_id); qx..qw, x, y, z
    │   └── vehicle_dimensions/vehicle_dimensions.chunk_0000.parquet index clip_id
    └── .cordillera/                      writer bookkeeping (resume): staged clips and packed-chunk records
        ├── staging/<clip_id>/...         files of clips whose chunk is not packed yet
        └── chunks/chunk_0000.json        written after every file of chunk 0 has been renamed into place

Timestamps are clip-relative µs starting at 0. The anchor frame has its origin at the rig at clip
start with yaw zeroed at t = 0 (spec/alpamayo_training_data.md §7.3).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cordillera.data import keys as K

# Root files
FEATURES_CSV = "features.csv"
CLIP_INDEX = "clip_index.parquet"
FEATURE_PRESENCE = "metadata/feature_presence.parquet"
SENSOR_PRESENCE_LEGACY = "metadata/sensor_presence.parquet"  # dataset revisions before 26.03
DATA_COLLECTION = "metadata/data_collection.parquet"
REASONING = "reasoning/ood_reasoning.parquet"
SPLITS = "splits/{split_name}.parquet"  # optional (devkit)

# Writer bookkeeping
BOOKKEEPING_DIR = ".cordillera"
STAGING_DIR = ".cordillera/staging"
CHUNK_RECORDS_DIR = ".cordillera/chunks"
CHUNK_RECORD = ".cordillera/chunks/chunk_{chunk_id:04d}.json"
CLIP_RECORD_NAME = "record.json"  # last file written into a staged clip's directory

# Per-chunk files: <directory>/<feature>/<feature>.chunk_NNNN.<ext>
CHUNK_PATH = "{directory}/{feature}/{feature}.chunk_{{chunk_id:04d}}.{ext}"

# Feature names
EGOMOTION = "egomotion"
OBSTACLE = "obstacle.offline"
CAMERA_INTRINSICS = "camera_intrinsics"
SENSOR_EXTRINSICS = "sensor_extrinsics"
VEHICLE_DIMENSIONS = "vehicle_dimensions"
CALIBRATION_FEATURES = (CAMERA_INTRINSICS, SENSOR_EXTRINSICS, VEHICLE_DIMENSIONS)

# Zip member aliases and templates
VIDEO = "video"
FRAME_TIMESTAMPS = "frame_timestamps"
VIDEO_MEMBER = "{{clip_id}}.{camera}.mp4"
FRAME_TIMESTAMPS_MEMBER = "{{clip_id}}.{camera}.timestamps.parquet"
EGOMOTION_MEMBER = "{clip_id}.egomotion.parquet"
OBSTACLE_MEMBER = "{clip_id}.obstacle.offline.parquet"

# Video
VIDEO_FPS = 30  # "clipgt has 30 fps", spec/alpamayo_training_data.md §7.3


def chunk_path(directory: str, feature: str, ext: str) -> str:
    """The features.csv ``chunk_path`` template of a feature (contains ``{chunk_id:04d}``)."""
    return CHUNK_PATH.format(directory=directory, feature=feature, ext=ext)


def camera_members(camera: str) -> dict[str, str]:
    return {VIDEO: VIDEO_MEMBER.format(camera=camera), FRAME_TIMESTAMPS: FRAME_TIMESTAMPS_MEMBER.format(camera=camera)}


def features_table(cameras) -> pd.DataFrame:
    """The ``features.csv`` table for a dataset with these cameras (index ``feature``)."""
    rows = []
    for cam in cameras:
        rows.append((cam, "camera", chunk_path("camera", cam, "zip"), json.dumps(camera_members(cam))))
    rows.append((EGOMOTION, "labels", chunk_path("labels", EGOMOTION, "zip"), json.dumps({EGOMOTION: EGOMOTION_MEMBER})))
    rows.append((OBSTACLE, "labels", chunk_path("labels", OBSTACLE, "zip"), json.dumps({"obstacle": OBSTACLE_MEMBER})))
    for feat in CALIBRATION_FEATURES:
        rows.append((feat, "calibration", chunk_path("calibration", feat, "parquet"), None))
    df = pd.DataFrame(rows, columns=[K.FEATURE, K.DIRECTORY, K.CHUNK_PATH, K.CLIP_FILES_IN_ZIP])
    return df.set_index(K.FEATURE)


def read_features_csv(root: Path) -> pd.DataFrame:
    """``features.csv`` with ``clip_files_in_zip`` decoded from JSON (NaN for non-zip features)."""
    path = Path(root) / FEATURES_CSV
    if not path.exists():
        raise ValueError(f"{path}: missing (not a PhysicalAI-AV dataset directory?)")
    df = pd.read_csv(path, index_col=K.FEATURE)
    for col in (K.DIRECTORY, K.CHUNK_PATH):
        if col not in df.columns:
            raise ValueError(f"{path}: column {col!r} missing (have {list(df.columns)})")
    if K.CLIP_FILES_IN_ZIP not in df.columns:
        df[K.CLIP_FILES_IN_ZIP] = None
    df[K.CLIP_FILES_IN_ZIP] = df[K.CLIP_FILES_IN_ZIP].map(
        lambda v: json.loads(v) if isinstance(v, str) and v.strip() else None
    )
    return df


__all__ = [
    "FEATURES_CSV", "CLIP_INDEX", "FEATURE_PRESENCE", "SENSOR_PRESENCE_LEGACY", "DATA_COLLECTION", "REASONING",
    "SPLITS", "BOOKKEEPING_DIR", "STAGING_DIR", "CHUNK_RECORDS_DIR", "CHUNK_RECORD", "CLIP_RECORD_NAME", "CHUNK_PATH",
    "EGOMOTION", "OBSTACLE", "CAMERA_INTRINSICS", "SENSOR_EXTRINSICS", "VEHICLE_DIMENSIONS", "CALIBRATION_FEATURES",
    "VIDEO", "FRAME_TIMESTAMPS", "VIDEO_MEMBER", "FRAME_TIMESTAMPS_MEMBER", "EGOMOTION_MEMBER", "OBSTACLE_MEMBER",
    "VIDEO_FPS", "chunk_path", "camera_members", "features_table", "read_features_csv",
]
