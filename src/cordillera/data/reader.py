"""Read a PhysicalAI-AV dataset from a plain local directory (no hub, no HF cache layout).

Like Alpamayo's ``PhysicalAIAVDatasetLocalInterface`` (spec/alpamayo_training_data.md §7.4): it
reads ``features.csv``, ``clip_index.parquet``, ``metadata/feature_presence.parquet`` (or the
legacy ``sensor_presence.parquet``), the per-chunk zips and calibration parquets straight from
disk. It reads the layout our writer produces and tolerates the real release's variations:
missing optional columns (``event_t0s``, ``end_timestamp``, ``split``, ``clip_is_valid``), no
``data_collection``, reasoning events stored as a JSON string or as a list.

Errors about the data (truncated zip, missing feature or member, NaN egomotion rows,
non-monotonic timestamps) are ``ValueError``s that name the clip and the file.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd

from cordillera.data import keys as K
from cordillera.data import layout as L
from cordillera.geometry.interpolate import interpolate_poses, interpolate_scalar

__all__ = ["Egomotion", "VideoStream", "PaiReader", "CLIP_RELATIVE_DURATION_US", "parse_events"]

CLIP_RELATIVE_DURATION_US = 20_000_000  # [µs] recipes' fixed clip length when end_timestamp is absent


# ---------------------------------------------------------------------------------------------
# Egomotion
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Egomotion:
    """One clip's egomotion samples (anchor frame) and the devkit's interpolation rules: cubic
    spline translation, slerp rotation, linear velocity/acceleration/curvature, no extrapolation."""

    clip_id: str
    t_us: np.ndarray  # (N,) int64, strictly increasing
    xyz: np.ndarray  # (N, 3)
    quat_xyzw: np.ndarray  # (N, 4)
    velocity: np.ndarray  # (N, 3)
    accel: np.ndarray  # (N, 3)
    curvature: np.ndarray  # (N,)

    @staticmethod
    def from_dataframe(df: pd.DataFrame, clip_id: str = "?", source: str = "egomotion") -> "Egomotion":
        where = f"clip {clip_id}: {source}"
        missing = [c for c in K.EGOMOTION_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{where}: egomotion columns {missing} missing (have {list(df.columns)})")
        t = df[K.TIMESTAMP].to_numpy()
        if not np.issubdtype(t.dtype, np.integer):
            if not np.all(np.isfinite(t)):
                raise ValueError(f"{where}: NaN egomotion timestamps")
            t = t.astype(np.int64)
        vals = df[list(K.EGOMOTION_COLUMNS[1:])].to_numpy(dtype=np.float64)
        bad = ~np.all(np.isfinite(vals), axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(f"{where}: {len(rows)} egomotion row(s) contain NaN/inf (first: row {rows[0]}, "
                             f"t={t[rows[0]]} µs)")
        if len(t) < 2:
            raise ValueError(f"{where}: egomotion needs at least 2 rows, has {len(t)}")
        dt = np.diff(t)
        if np.any(dt <= 0):
            i = int(np.argmax(dt <= 0))
            raise ValueError(f"{where}: egomotion timestamps not strictly increasing at row {i + 1} "
                             f"({t[i]} -> {t[i + 1]} µs)")
        return Egomotion(clip_id, t.astype(np.int64), vals[:, 0:3], vals[:, 3:7], vals[:, 7:10], vals[:, 10:13],
                         vals[:, 13])

    @property
    def end_us(self) -> int:
        return int(self.t_us[-1])

    def _rows_upto(self, upto_us: int | None) -> slice:
        if upto_us is None:
            return slice(None)
        # keep every sample <= upto_us, plus the first one after it if upto_us falls between samples
        n = int(np.searchsorted(self.t_us, upto_us, side="right"))
        if n == 0:
            raise ValueError(f"clip {self.clip_id}: no egomotion at or before {upto_us} µs")
        if self.t_us[n - 1] != upto_us:
            n += 1
        return slice(0, max(n, 2))

    def poses(self, t_query_us, upto_us: int | None = None, max_gap_us: int | None = None):
        """(xyz (..., 3), quat_xyzw (..., 4)) at ``t_query_us``.

        ``upto_us`` fits the interpolation only on samples up to that time (plus the next one when
        it falls between samples): no information from after it enters the result. ``max_gap_us``
        rejects queries whose bracketing samples are further apart (holes in the log)."""
        sl = self._rows_upto(upto_us)
        t = self.t_us[sl]
        tq = np.asarray(t_query_us, dtype=np.int64)
        self._check_range(tq, t, max_gap_us)
        return interpolate_poses(tq, t, self.xyz[sl], self.quat_xyzw[sl], method="cubic")

    def dynamics(self, t_query_us):
        """(velocity (..., 3), accel (..., 3), curvature (...)) linearly interpolated."""
        tq = np.asarray(t_query_us, dtype=np.int64)
        self._check_range(tq, self.t_us, None)
        return (interpolate_scalar(tq, self.t_us, self.velocity), interpolate_scalar(tq, self.t_us, self.accel),
                interpolate_scalar(tq, self.t_us, self.curvature))

    def _check_range(self, tq, t, max_gap_us):
        if tq.size and (tq.min() < t[0] or tq.max() > t[-1]):
            raise ValueError(f"clip {self.clip_id}: egomotion requested at [{tq.min()}, {tq.max()}] µs, outside "
                             f"the samples [{t[0]}, {t[-1]}] µs (no extrapolation)")
        if max_gap_us is not None and tq.size:
            hi = np.clip(np.searchsorted(t, tq, side="left"), 1, len(t) - 1)
            gap = t[hi] - t[hi - 1]
            if np.any(gap > max_gap_us):
                i = int(np.argmax(gap > max_gap_us))
                raise ValueError(f"clip {self.clip_id}: egomotion gap of {gap[i]} µs around {tq.flat[i]} µs "
                                 f"exceeds the tolerance {max_gap_us} µs")


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------
class VideoStream:
    """Random access to one camera's constant-rate video: the frame at or before a time.

    One PyAV container per stream, reused across calls. A request seeks to the keyframe before
    the target unless the decoder is already positioned between that keyframe and the target
    (then it just decodes forward), so requests in time order cost one GOP at most."""

    def __init__(self, data: bytes, timestamps: np.ndarray, clip_id: str = "?", camera: str = "?",
                 source: str = "?"):
        self.clip_id, self.camera, self.source = clip_id, camera, source
        ts = np.asarray(timestamps)
        if ts.ndim != 1 or len(ts) == 0:
            raise ValueError(f"clip {clip_id}: {source}: frame timestamps must be a non-empty 1-D array")
        if np.any(np.diff(ts) <= 0):
            i = int(np.argmax(np.diff(ts) <= 0))
            raise ValueError(f"clip {clip_id}: {source}: frame timestamps not strictly increasing at frame {i + 1} "
                             f"({ts[i]} -> {ts[i + 1]} µs)")
        self.timestamps = ts.astype(np.int64)
        try:
            self._container = av.open(io.BytesIO(data))
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as e:
            raise ValueError(f"clip {clip_id}: {source}: cannot open video ({e})") from None
        self._stream.thread_count = 1
        s = self._stream
        self._tb = s.time_base
        self._start_pts = s.start_time or 0
        self._pts_per_frame = int(round(1 / (s.average_rate * s.time_base)))
        key_pts = sorted(p.pts for p in self._container.demux(s) if p.is_keyframe and p.pts is not None)
        if not key_pts:
            raise ValueError(f"clip {clip_id}: {source}: video has no keyframes")
        self._key_idx = np.array([self._pts_to_idx(p) for p in key_pts], dtype=np.int64)
        self._dec = None
        self._next_idx = None  # index of the frame the decoder yields next (None: must seek)

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)

    def _pts_to_idx(self, pts: int) -> int:
        return int(round((pts - self._start_pts) / self._pts_per_frame))

    def indices_at_or_before(self, t_us) -> np.ndarray:
        t = np.asarray(t_us, dtype=np.int64)
        idx = np.searchsorted(self.timestamps, t, side="right") - 1
        if np.any(idx < 0) or np.any(t > self.timestamps[-1]):
            raise ValueError(f"clip {self.clip_id}: {self.source}: requested frames at [{t.min()}, {t.max()}] µs "
                             f"outside the video [{self.timestamps[0]}, {self.timestamps[-1]}] µs")
        return idx

    def decode(self, indices) -> np.ndarray:
        """Frames (N, H, W, 3) uint8 RGB for frame indices (any order, repeats allowed)."""
        idx = np.asarray(indices, dtype=np.int64)
        out: dict[int, np.ndarray] = {}
        for i in sorted(set(idx.tolist())):
            out[i] = self._decode_one(i)
        return np.stack([out[i] for i in idx.tolist()])

    def _decode_one(self, target: int) -> np.ndarray:
        if not 0 <= target < self.num_frames:
            raise ValueError(f"clip {self.clip_id}: {self.source}: frame {target} out of range [0, {self.num_frames})")
        key = int(self._key_idx[np.searchsorted(self._key_idx, target, side="right") - 1])
        if self._next_idx is None or not (key <= self._next_idx <= target):
            self._container.seek(int(self._start_pts + key * self._pts_per_frame), backward=True, any_frame=False,
                                 stream=self._stream)
            self._dec = self._container.decode(self._stream)
            self._next_idx = None
        try:
            for frame in self._dec:
                i = self._pts_to_idx(frame.pts)
                self._next_idx = i + 1
                if i == target:
                    return frame.to_ndarray(format="rgb24")
                if i > target:
                    break
        except av.error.FFmpegError as e:
            self._next_idx = None
            raise ValueError(f"clip {self.clip_id}: {self.source}: decode error at frame {target} ({e})") from None
        self._next_idx = None
        raise ValueError(f"clip {self.clip_id}: {self.source}: frame {target} could not be decoded "
                         "(truncated or corrupt video)")

    def frames_at(self, t_us) -> tuple[np.ndarray, np.ndarray]:
        """(frames (N, H, W, 3), their timestamps (N,)) at or before each requested µs time."""
        idx = self.indices_at_or_before(t_us)
        return self.decode(idx), self.timestamps[idx]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


# ---------------------------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------------------------
def parse_events(value, clip_id: str = "?") -> list[dict]:
    """Reasoning events from a JSON string or a list/array of dicts, sorted by start time."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"clip {clip_id}: {L.REASONING}: events are not valid JSON ({e})") from None
    if isinstance(value, dict):
        value = [value]
    events = []
    for e in list(value):
        e = dict(e)
        if K.EVENT_START_TIMESTAMP not in e:
            raise ValueError(f"clip {clip_id}: {L.REASONING}: event without {K.EVENT_START_TIMESTAMP}: {e}")
        events.append({K.EVENT_START_TIMESTAMP: int(e[K.EVENT_START_TIMESTAMP]), K.COT: e.get(K.COT)})
    return sorted(events, key=lambda e: e[K.EVENT_START_TIMESTAMP])


def _read_parquet(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise ValueError(f"{what}: {path} is missing") from None
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise ValueError(f"{what}: {path} is not a readable parquet file ({e})") from None


class PaiReader:
    """A local PhysicalAI-AV dataset. ``cache_streams`` open video streams are kept (LRU)."""

    def __init__(self, root, cache_streams: int = 8):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: not a directory")
        self.cache_streams = int(cache_streams)
        self.features = L.read_features_csv(self.root)
        ci = _read_parquet(self.root / L.CLIP_INDEX, "clip index")
        if K.CLIP_ID in ci.columns:
            ci = ci.set_index(K.CLIP_ID)
        if K.CHUNK not in ci.columns:
            raise ValueError(f"{self.root / L.CLIP_INDEX}: column {K.CHUNK!r} missing")
        self.clip_index = ci
        fp = self.root / L.FEATURE_PRESENCE
        legacy = self.root / L.SENSOR_PRESENCE_LEGACY
        if fp.exists():
            self.feature_presence = _read_parquet(fp, "feature presence")
        elif legacy.exists():
            self.feature_presence = _read_parquet(legacy, "sensor presence").select_dtypes(include=bool)
        else:
            self.feature_presence = pd.DataFrame(index=ci.index)
        dc = self.root / L.DATA_COLLECTION
        self.data_collection = _read_parquet(dc, "data collection") if dc.exists() else pd.DataFrame(index=ci.index)
        split_file = self.root / L.SPLITS.format(split_name="default")
        if split_file.exists():
            self.clip_index[K.SPLIT] = _read_parquet(split_file, "splits")[K.SPLIT]
        rp = self.root / L.REASONING
        self._events: dict[str, list[dict]] = {}
        if rp.exists():
            r = _read_parquet(rp, "reasoning")
            if K.CLIP_ID in r.columns:
                r = r.set_index(K.CLIP_ID)
            if K.EVENTS in r.columns:
                for cid, ev in r[K.EVENTS].items():
                    self._events[str(cid)] = parse_events(ev, str(cid))
        self._streams: OrderedDict = OrderedDict()
        self._zips: dict = {}
        self._calib: dict = {}
        self._ego: OrderedDict = OrderedDict()
        self._pid = os.getpid()

    # -- pickling (DataLoader workers re-open files in their own process) ------------------------
    def __getstate__(self):
        d = dict(self.__dict__)
        d["_streams"], d["_zips"], d["_calib"], d["_ego"] = OrderedDict(), {}, {}, OrderedDict()
        return d

    def _check_pid(self):
        if os.getpid() != self._pid:  # forked: never share file handles or decoders
            self._streams, self._zips, self._calib, self._pid = OrderedDict(), {}, {}, os.getpid()
            self._ego = OrderedDict()

    # -- clips ----------------------------------------------------------------------------------
    @property
    def table(self) -> pd.DataFrame:
        """clip_index joined with data_collection (metadata) columns."""
        extra = [c for c in self.data_collection.columns if c not in self.clip_index.columns]
        return self.clip_index.join(self.data_collection[extra], how="left")

    def clips(self, **filters) -> list[str]:
        """Clip ids, optionally filtered: ``family="cut_in"``, ``split=["train", "val"]``, ...
        Clips marked ``clip_is_valid = False`` are left out unless ``clip_is_valid`` is given."""
        t = self.table
        if K.CLIP_IS_VALID in t.columns and K.CLIP_IS_VALID not in filters:
            t = t[t[K.CLIP_IS_VALID].astype(bool)]
        for col, want in filters.items():
            if col not in t.columns:
                raise ValueError(f"cannot filter on {col!r}: columns are {list(t.columns)}")
            if isinstance(want, (list, tuple, set, frozenset)):
                t = t[t[col].isin(list(want))]
            else:
                t = t[t[col] == want]
        return [str(c) for c in t.index]

    def _row(self, clip_id: str) -> pd.Series:
        try:
            return self.clip_index.loc[clip_id]
        except KeyError:
            raise ValueError(f"clip {clip_id}: not in {self.root / L.CLIP_INDEX}") from None

    def chunk_of(self, clip_id: str) -> int:
        return int(self._row(clip_id)[K.CHUNK])

    def metadata(self, clip_id: str) -> dict:
        out = {}
        row = self._row(clip_id)
        for col in (K.SPLIT, K.CHUNK):
            if col in row.index:
                out[col] = row[col].item() if hasattr(row[col], "item") else row[col]
        if clip_id in self.data_collection.index:
            for k, v in self.data_collection.loc[clip_id].items():
                out[k] = v.item() if hasattr(v, "item") else v
        return out

    def end_timestamp(self, clip_id: str) -> int:
        row = self._row(clip_id)
        if K.END_TIMESTAMP in row.index and pd.notna(row[K.END_TIMESTAMP]):
            return int(row[K.END_TIMESTAMP])
        return CLIP_RELATIVE_DURATION_US

    def event_t0s(self, clip_id: str) -> list[int]:
        row = self._row(clip_id)
        if K.EVENT_T0S in row.index and row[K.EVENT_T0S] is not None:
            v = row[K.EVENT_T0S]
            if isinstance(v, str):
                v = json.loads(v)
            return [int(x) for x in np.asarray(v).reshape(-1)]
        return [e[K.EVENT_START_TIMESTAMP] for e in self.reasoning_events(clip_id)]

    def reasoning_events(self, clip_id: str) -> list[dict]:
        return list(self._events.get(clip_id, []))

    # -- files ----------------------------------------------------------------------------------
    def feature_file(self, clip_id: str, feature: str) -> Path:
        if feature not in self.features.index:
            raise ValueError(f"clip {clip_id}: feature {feature!r} is not in {self.root / L.FEATURES_CSV} "
                             f"(have {list(self.features.index)})")
        if feature in self.feature_presence.columns and clip_id in self.feature_presence.index:
            if not bool(self.feature_presence.at[clip_id, feature]):
                raise ValueError(f"clip {clip_id}: feature {feature!r} is absent (feature_presence)")
        path = self.root / self.features.at[feature, K.CHUNK_PATH].format(chunk_id=self.chunk_of(clip_id))
        if not path.exists():
            raise ValueError(f"clip {clip_id}: feature {feature!r}: file {path} is missing")
        return path

    def _zip(self, path: Path, clip_id: str) -> zipfile.ZipFile:
        self._check_pid()
        zf = self._zips.get(path)
        if zf is None:
            try:
                zf = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise ValueError(f"clip {clip_id}: {path} is not a valid zip (truncated or corrupt: {e})") from None
            self._zips[path] = zf
        return zf

    def member_bytes(self, clip_id: str, feature: str, alias: str) -> tuple[bytes, str]:
        """Bytes of one member of a clip's zip feature, and a ``zip:member`` description."""
        path = self.feature_file(clip_id, feature)
        templates = self.features.at[feature, K.CLIP_FILES_IN_ZIP]
        if not isinstance(templates, dict) or alias not in templates:
            raise ValueError(f"clip {clip_id}: feature {feature!r} has no zip member {alias!r} in features.csv")
        name = templates[alias].format(clip_id=clip_id)
        zf = self._zip(path, clip_id)
        where = f"{path}:{name}"
        try:
            return zf.read(name), where
        except KeyError:
            raise ValueError(f"clip {clip_id}: {where} is missing from the zip") from None
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ValueError(f"clip {clip_id}: {where} cannot be read (truncated or corrupt: {e})") from None

    def member_parquet(self, clip_id: str, feature: str, alias: str) -> tuple[pd.DataFrame, str]:
        data, where = self.member_bytes(clip_id, feature, alias)
        try:
            return pd.read_parquet(io.BytesIO(data)), where
        except Exception as e:
            raise ValueError(f"clip {clip_id}: {where} is not a readable parquet file ({e})") from None

    # -- features -------------------------------------------------------------------------------
    def egomotion(self, clip_id: str) -> Egomotion:
        """The clip's egomotion (validated; the last few clips' are cached)."""
        self._check_pid()
        ego = self._ego.get(clip_id)
        if ego is None:
            df, where = self.member_parquet(clip_id, L.EGOMOTION, L.EGOMOTION)
            ego = Egomotion.from_dataframe(df, clip_id, where)
            self._ego[clip_id] = ego
            while len(self._ego) > self.cache_streams:
                self._ego.popitem(last=False)
        return ego

    def egomotion_df(self, clip_id: str) -> pd.DataFrame:
        return self.member_parquet(clip_id, L.EGOMOTION, L.EGOMOTION)[0]

    def video(self, clip_id: str, camera: str) -> VideoStream:
        """The (cached) video stream of a clip's camera."""
        self._check_pid()
        key = (clip_id, camera)
        vs = self._streams.get(key)
        if vs is not None:
            self._streams.move_to_end(key)
            return vs
        ts_df, ts_where = self.member_parquet(clip_id, camera, L.FRAME_TIMESTAMPS)
        if K.TIMESTAMP not in ts_df.columns:
            raise ValueError(f"clip {clip_id}: {ts_where}: column {K.TIMESTAMP!r} missing")
        data, where = self.member_bytes(clip_id, camera, L.VIDEO)
        try:
            vs = VideoStream(data, ts_df[K.TIMESTAMP].to_numpy(), clip_id, camera, where)
        except ValueError as e:
            if "timestamps" in str(e):
                raise ValueError(str(e).replace(where, ts_where)) from None
            raise
        self._streams[key] = vs
        while len(self._streams) > self.cache_streams:
            _, old = self._streams.popitem(last=False)
            old.close()
        return vs

    def frames_at(self, clip_id: str, camera: str, t_us) -> tuple[np.ndarray, np.ndarray]:
        """Frames at or before each time (N, H, W, 3) and their timestamps."""
        return self.video(clip_id, camera).frames_at(t_us)

    def _calibration(self, clip_id: str, feature: str) -> pd.DataFrame:
        self._check_pid()
        path = self.feature_file(clip_id, feature)
        df = self._calib.get(path)
        if df is None:
            df = _read_parquet(path, f"clip {clip_id}: {feature}")
            if not isinstance(df.index, pd.MultiIndex) and K.CLIP_ID in df.columns:
                second = [c for c in (K.CAMERA_ID, K.SENSOR_ID, "camera_name", "sensor_name") if c in df.columns]
                df = df.set_index([K.CLIP_ID] + second[:1])
            self._calib[path] = df
        try:
            return df.loc[clip_id]
        except KeyError:
            raise ValueError(f"clip {clip_id}: no rows in {path}") from None

    def camera_intrinsics(self, clip_id: str) -> pd.DataFrame:
        """f-theta intrinsics, one row per camera (index camera id)."""
        return self._calibration(clip_id, L.CAMERA_INTRINSICS)

    def sensor_extrinsics(self, clip_id: str) -> pd.DataFrame:
        """Sensor poses in the rig frame (qx, qy, qz, qw, x, y, z), one row per sensor."""
        return self._calibration(clip_id, L.SENSOR_EXTRINSICS)

    def vehicle_dimensions(self, clip_id: str) -> dict:
        row = self._calibration(clip_id, L.VEHICLE_DIMENSIONS)
        if isinstance(row, pd.DataFrame):
            row = row.iloc[0]
        return {c: float(row[c]) for c in K.VEHICLE_DIMENSION_COLUMNS if c in row.index}

    def camera_spec(self, clip_id: str, camera: str):
        """Our ``render.rig.CameraSpec`` for a camera, from its intrinsics and extrinsics."""
        from cordillera.geometry.pose import Pose
        from cordillera.render.rig import CameraSpec

        intr = self.camera_intrinsics(clip_id)
        extr = self.sensor_extrinsics(clip_id)
        if camera not in intr.index or camera not in extr.index:
            raise ValueError(f"clip {clip_id}: no calibration for camera {camera!r}")
        i, e = intr.loc[camera], extr.loc[camera]
        return CameraSpec(camera, "ftheta", int(i[K.WIDTH]), int(i[K.HEIGHT]), float(i[K.CX]), float(i[K.CY]),
                          Pose(e[list(K.XYZ)].to_numpy(float), e[list(K.QUAT_XYZW)].to_numpy(float)),
                          fw_poly=tuple(float(i[c]) for c in K.FW_POLY), bw_poly=tuple(float(i[c]) for c in K.BW_POLY))

    def obstacles(self, clip_id: str) -> pd.DataFrame:
        return self.member_parquet(clip_id, L.OBSTACLE, "obstacle")[0]

    def cameras(self) -> list[str]:
        return [f for f in self.features.index if self.features.at[f, K.DIRECTORY] == "camera"]

    def close(self) -> None:
        for vs in self._streams.values():
            vs.close()
        for zf in self._zips.values():
            zf.close()
        self._streams, self._zips = OrderedDict(), {}
