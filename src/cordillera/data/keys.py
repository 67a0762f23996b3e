"""Column names of the PhysicalAI-AV tables and keys of a model sample, defined once.

Table columns follow the PhysicalAI-AV schemas (spec/alpamayo_training_data.md §7.3); sample keys
follow Alpamayo's loader (spec/alpamayo_training_data.md §1.4, spec/alpamayo_model.md §7).
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Table columns
# ---------------------------------------------------------------------------------------------
TIMESTAMP = "timestamp"  # int64 µs, clip-relative
EGOMOTION_COLUMNS = (
    "timestamp", "x", "y", "z", "qx", "qy", "qz", "qw",
    "vx", "vy", "vz", "ax", "ay", "az", "curvature",
)  # spec/alpamayo_training_data.md §7.3 (exactly these, in this order)
XYZ = ("x", "y", "z")
QUAT_XYZW = ("qx", "qy", "qz", "qw")
VELOCITY = ("vx", "vy", "vz")
ACCEL = ("ax", "ay", "az")
CURVATURE = "curvature"

# features.csv
FEATURE = "feature"  # index
DIRECTORY = "directory"
CHUNK_PATH = "chunk_path"
CLIP_FILES_IN_ZIP = "clip_files_in_zip"

# clip_index.parquet
CLIP_ID = "clip_id"  # index
CHUNK = "chunk"
EVENT_T0S = "event_t0s"
END_TIMESTAMP = "end_timestamp"
SPLIT = "split"
CLIP_IS_VALID = "clip_is_valid"

# metadata/data_collection.parquet (our columns)
FAMILY = "family"
CATEGORY = "category"
SEED = "seed"
SCENARIO_ID = "scenario_id"
TIME_OF_DAY = "time_of_day"
WEATHER = "weather"
DURATION_US = "duration_us"
CODE_VERSION = "code_version"  # cordillera.code_version() of the code that rendered the clip

# calibration
CAMERA_ID = "camera_id"  # second index level of camera_intrinsics
SENSOR_ID = "sensor_id"  # second index level of sensor_extrinsics
WIDTH, HEIGHT, CX, CY = "width", "height", "cx", "cy"
POLY_DEGREE = 4  # f-theta polynomial degree, spec/alpamayo_training_data.md §7.3
FW_POLY = tuple(f"fw_poly_{i}" for i in range(POLY_DEGREE + 1))
BW_POLY = tuple(f"bw_poly_{i}" for i in range(POLY_DEGREE + 1))
INTRINSICS_COLUMNS = (WIDTH, HEIGHT, CX, CY) + FW_POLY + BW_POLY
EXTRINSICS_COLUMNS = ("qx", "qy", "qz", "qw", "x", "y", "z")
VEHICLE_DIMENSION_COLUMNS = ("length", "width", "height", "rear_axle_to_bbox_center", "wheelbase", "track_width")

# labels/obstacle.offline (one parquet per clip, anchor frame)
TRACK_ID = "track_id"
LABEL_CLASS = "label_class"
OBSTACLE_COLUMNS = (
    "timestamp", "track_id", "label_class", "x", "y", "z", "qx", "qy", "qz", "qw", "length", "width", "height",
)

# reasoning/ood_reasoning.parquet
EVENTS = "events"
EVENT_START_TIMESTAMP = "event_start_timestamp"
COT = "cot"

# ---------------------------------------------------------------------------------------------
# Sample keys (spec/alpamayo_training_data.md §1.4)
# ---------------------------------------------------------------------------------------------
IMAGE_FRAMES = "image_frames"  # uint8 (N_cam, 4, 3, H, W)
CAMERA_INDICES = "camera_indices"  # int64 (N_cam,)
CAMERA_NAMES_KEY = "camera_names"  # list[str]
EGO_HISTORY_XYZ = "ego_history_xyz"  # float32 (16, 3), rig frame at t0
EGO_HISTORY_ROT = "ego_history_rot"  # float32 (16, 3, 3)
EGO_FUTURE_XYZ = "ego_future_xyz"  # float32 (64, 3)
EGO_FUTURE_ROT = "ego_future_rot"  # float32 (64, 3, 3)
RELATIVE_TIMESTAMPS = "relative_timestamps"  # float32 (N_cam, 4) s from the earliest frame
ABSOLUTE_TIMESTAMPS = "absolute_timestamps"  # int64 (N_cam, 4) µs of the frames actually used
T0_US = "t0_us"
CLIP_ID_KEY = "clip_id"
COT_KEY = "cot"  # str | None
METADATA_KEY = "metadata"  # dict: family, category, split, ...
