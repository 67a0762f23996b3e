"""Write clips in the PhysicalAI-AV layout (see :mod:`cordillera.data.layout` for the tree).

API: ``create(root, cameras, ...) -> DatasetWriter``; ``writer.add_clip(clip)``; ``writer.finalize()``.

Crash safety and resume. A clip is first *staged*: its files are written into
``.cordillera/staging/.<clip_id>.tmp/`` and the directory is renamed to ``staging/<clip_id>`` once
complete (``record.json`` written last), so a staged clip is either whole or absent. When a chunk
has ``chunk_size`` clips (or at ``finalize``) it is *packed*: each per-chunk zip/parquet is written
under a temporary name and ``os.replace``-d into place, then ``chunks/chunk_NNNN.json`` records
the chunk, and only then are the staged files removed. A killed run therefore never leaves a
corrupt chunk; ``create`` on an existing directory picks up packed chunks and staged clips and
``has_clip`` lets a generator skip clips already written. ``stage_clip`` is a plain function so
that worker processes can encode their own clips and hand the small record to the writer.

Video: H.264 (libx264, yuv420p, ``crf`` 18 by default) at 30 fps with ``tune=zerolatency`` (no
B-frames, no look-ahead) so that each encoded frame depends only on frames at or before it: the
decoded past of a clip does not change when its future does. Input frames come with the time
they show; each 30 fps output frame repeats the latest input frame at or before its timestamp
(10 Hz renders appear three times each).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cordillera.data import keys as K
from cordillera.data import layout as L
from cordillera.data.reader import parse_events
from cordillera.render.video import Mp4Writer

__all__ = [
    "CameraStream", "ClipData", "ClipRecord", "DatasetWriter", "create", "stage_clip", "encode_video",
    "video_timestamps", "intrinsics_rows", "extrinsics_rows", "atomic_write_bytes", "atomic_write_parquet",
    "write_reasoning", "replace_events",
]

DEFAULT_CHUNK_SIZE = 100  # clips per chunk; PAI chunks hold ~80-100 (spec/alpamayo_training_data.md §7.2)
DEFAULT_CRF = 18
DEFAULT_GOP = 15  # [frames] keyframe every 0.5 s at 30 fps: bounds the decode work of a random seek


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CameraStream:
    """Frames of one camera: ``frames`` (N, H, W, 3) uint8 RGB (array or list), ``t_us`` (N,) the
    clip-relative time each frame shows (strictly increasing, first = 0)."""

    frames: object
    t_us: np.ndarray


@dataclass(eq=False)
class ClipData:
    """Everything one clip needs. ``egomotion`` has exactly :data:`keys.EGOMOTION_COLUMNS` (anchor
    frame, clip-relative µs from 0). ``camera_specs`` maps camera name → an f-theta
    ``render.rig.CameraSpec``-like object (width, height, cx, cy, fw_poly, bw_poly, T_rig_camera).
    ``vehicle`` maps each of :data:`keys.VEHICLE_DIMENSION_COLUMNS` to metres. ``events`` are
    ``{event_start_timestamp, cot}`` dicts; ``event_t0s`` defaults to their start times."""

    clip_id: str
    egomotion: pd.DataFrame
    cameras: dict
    camera_specs: dict
    vehicle: dict
    obstacles: pd.DataFrame | None = None
    events: list = field(default_factory=list)
    event_t0s: list | None = None
    metadata: dict = field(default_factory=dict)
    split: str = "train"
    clip_is_valid: bool = True


@dataclass(frozen=True)
class ClipRecord:
    """The small, JSON-able summary of a staged clip (what the index files are built from)."""

    clip_id: str
    event_t0s: tuple
    end_timestamp: int
    split: str
    clip_is_valid: bool
    metadata: dict
    events: tuple
    cameras: tuple

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "event_t0s": list(self.event_t0s), "events": list(self.events),
                           "cameras": list(self.cameras)}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "ClipRecord":
        d = json.loads(text)
        return ClipRecord(d["clip_id"], tuple(int(t) for t in d["event_t0s"]), int(d["end_timestamp"]), d["split"],
                          bool(d["clip_is_valid"]), d["metadata"], tuple(d["events"]), tuple(d["cameras"]))


# ---------------------------------------------------------------------------------------------
# Atomic file writes
# ---------------------------------------------------------------------------------------------
def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_parquet(df: pd.DataFrame | pa.Table, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    if isinstance(df, pa.Table):
        pq.write_table(df, tmp)
    else:
        df.to_parquet(tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------
def video_timestamps(frame_t_us, fps: int = L.VIDEO_FPS) -> np.ndarray:
    """Output timestamps (µs) of a constant-rate video covering [frame_t_us[0], frame_t_us[-1]]."""
    t = np.asarray(frame_t_us, dtype=np.int64)
    n = int(np.floor((t[-1] - t[0]) * fps / 1e6 + 1e-9)) + 1
    return t[0] + np.round(np.arange(n) * 1e6 / fps).astype(np.int64)


def encode_video(frames, frame_t_us, path, fps: int = L.VIDEO_FPS, crf: int = DEFAULT_CRF,
                 gop: int = DEFAULT_GOP) -> np.ndarray:
    """Encode frames (shown from ``frame_t_us``) as a constant-rate H.264 MP4 at ``path``.

    Returns the timestamps (µs) of the written video frames: output frame j at
    ``t0 + round(j·1e6/fps)`` shows the latest input frame at or before it.
    """
    t = np.asarray(frame_t_us, dtype=np.int64)
    if len(frames) != len(t) or len(t) == 0:
        raise ValueError(f"need one timestamp per frame, got {len(frames)} frames and {len(t)} timestamps")
    if np.any(np.diff(t) <= 0):
        raise ValueError("frame timestamps must be strictly increasing")
    h, w = np.asarray(frames[0]).shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"frame size must be even for yuv420p H.264, got {h}x{w}")
    ts = video_timestamps(t, fps)
    src = np.searchsorted(t, ts, side="right") - 1  # latest input frame at or before each output time
    # zerolatency: no B-frames and no look-ahead/mb-tree, so frame j depends on frames <= j only.
    with Mp4Writer(path, fps, crf=crf, preset="veryfast", tune="zerolatency", gop=gop, threads=1) as writer:
        for i in src:
            img = np.ascontiguousarray(frames[i], dtype=np.uint8)
            if img.shape != (h, w, 3):
                raise ValueError(f"frame {i} has shape {img.shape}, expected {(h, w, 3)}")
            writer.write(img)
    return ts


# ---------------------------------------------------------------------------------------------
# Calibration rows
# ---------------------------------------------------------------------------------------------
def _poly5(coeffs, name: str, camera: str) -> list[float]:
    c = [float(v) for v in coeffs]
    if len(c) > K.POLY_DEGREE + 1:
        if any(abs(v) > 0 for v in c[K.POLY_DEGREE + 1:]):
            raise ValueError(f"camera {camera}: {name} has degree > {K.POLY_DEGREE}")
        c = c[: K.POLY_DEGREE + 1]
    return c + [0.0] * (K.POLY_DEGREE + 1 - len(c))


def intrinsics_rows(clip_id: str, camera_specs: dict) -> pd.DataFrame:
    """f-theta intrinsics, index (clip_id, camera_id), columns :data:`keys.INTRINSICS_COLUMNS`."""
    rows = []
    for name, spec in camera_specs.items():
        if getattr(spec, "model", "ftheta") != "ftheta":
            raise ValueError(f"camera {name}: PhysicalAI-AV intrinsics are f-theta, got model {spec.model!r}")
        rows.append([clip_id, name, int(spec.width), int(spec.height), float(spec.cx), float(spec.cy),
                     *_poly5(spec.fw_poly, "fw_poly", name), *_poly5(spec.bw_poly, "bw_poly", name)])
    df = pd.DataFrame(rows, columns=[K.CLIP_ID, K.CAMERA_ID, *K.INTRINSICS_COLUMNS])
    return df.set_index([K.CLIP_ID, K.CAMERA_ID])


def extrinsics_rows(clip_id: str, camera_specs: dict) -> pd.DataFrame:
    """Sensor poses in the rig frame (``T_rig_camera``, optical frame), index (clip_id, sensor_id)."""
    rows = []
    for name, spec in camera_specs.items():
        T = spec.T_rig_camera
        rows.append([clip_id, name, *map(float, T.quat_xyzw), *map(float, T.translation)])
    df = pd.DataFrame(rows, columns=[K.CLIP_ID, K.SENSOR_ID, *K.EXTRINSICS_COLUMNS])
    return df.set_index([K.CLIP_ID, K.SENSOR_ID])


def _vehicle_row(clip_id: str, vehicle: dict) -> pd.DataFrame:
    missing = [c for c in K.VEHICLE_DIMENSION_COLUMNS if c not in vehicle]
    if missing:
        raise ValueError(f"clip {clip_id}: vehicle dimensions miss {missing}")
    df = pd.DataFrame([[clip_id, *(float(vehicle[c]) for c in K.VEHICLE_DIMENSION_COLUMNS)]],
                      columns=[K.CLIP_ID, *K.VEHICLE_DIMENSION_COLUMNS])
    return df.set_index(K.CLIP_ID)


# ---------------------------------------------------------------------------------------------
# Staging one clip
# ---------------------------------------------------------------------------------------------
def _check_egomotion(clip_id: str, ego: pd.DataFrame) -> pd.DataFrame:
    if tuple(ego.columns) != K.EGOMOTION_COLUMNS:
        raise ValueError(f"clip {clip_id}: egomotion columns must be exactly {K.EGOMOTION_COLUMNS}, "
                         f"got {tuple(ego.columns)}")
    t = ego[K.TIMESTAMP].to_numpy()
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"clip {clip_id}: egomotion timestamp must be integer µs, got {t.dtype}")
    if len(t) < 2 or t[0] != 0 or np.any(np.diff(t) <= 0):
        raise ValueError(f"clip {clip_id}: egomotion timestamps must start at 0 and strictly increase")
    vals = ego[list(K.EGOMOTION_COLUMNS[1:])].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(vals)):
        bad = int(np.argmax(~np.all(np.isfinite(vals), axis=1)))
        raise ValueError(f"clip {clip_id}: egomotion row {bad} (t={t[bad]} µs) contains NaN/inf")
    out = ego.reset_index(drop=True).copy()
    out[K.TIMESTAMP] = out[K.TIMESTAMP].astype(np.int64)
    for c in K.EGOMOTION_COLUMNS[1:]:
        out[c] = out[c].astype(np.float64)
    return out


def _empty_obstacles() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in K.OBSTACLE_COLUMNS})
    df[K.TIMESTAMP] = df[K.TIMESTAMP].astype(np.int64)
    df[K.TRACK_ID] = df[K.TRACK_ID].astype(str)
    df[K.LABEL_CLASS] = df[K.LABEL_CLASS].astype(str)
    return df


def stage_clip(root, clip: ClipData, crf: int = DEFAULT_CRF, gop: int = DEFAULT_GOP) -> ClipRecord:
    """Encode and write one clip into ``root/.cordillera/staging/<clip_id>/`` (atomically) and
    return its record. Safe to run in a worker process; raises ValueError on malformed input."""
    root = Path(root)
    cid = clip.clip_id
    if not cid or "/" in cid or cid.startswith("."):
        raise ValueError(f"bad clip id {cid!r}")
    ego = _check_egomotion(cid, clip.egomotion)
    if set(clip.cameras) != set(clip.camera_specs):
        raise ValueError(f"clip {cid}: cameras {sorted(clip.cameras)} and camera_specs "
                         f"{sorted(clip.camera_specs)} differ")
    final = root / L.STAGING_DIR / cid
    tmp = root / L.STAGING_DIR / f".{cid}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for cam, stream in clip.cameras.items():
            t = np.asarray(stream.t_us, dtype=np.int64)
            if len(t) == 0 or t[0] != 0:
                raise ValueError(f"clip {cid}: camera {cam} frame times must start at 0")
            members = L.camera_members(cam)
            ts = encode_video(stream.frames, t, tmp / members[L.VIDEO].format(clip_id=cid), crf=crf, gop=gop)
            pd.DataFrame({K.TIMESTAMP: ts}).to_parquet(tmp / members[L.FRAME_TIMESTAMPS].format(clip_id=cid))
        ego.to_parquet(tmp / L.EGOMOTION_MEMBER.format(clip_id=cid), index=False)
        obs = _empty_obstacles() if clip.obstacles is None else clip.obstacles
        if tuple(obs.columns) != K.OBSTACLE_COLUMNS:
            raise ValueError(f"clip {cid}: obstacle columns must be {K.OBSTACLE_COLUMNS}, got {tuple(obs.columns)}")
        obs.reset_index(drop=True).to_parquet(tmp / L.OBSTACLE_MEMBER.format(clip_id=cid), index=False)
        intrinsics_rows(cid, clip.camera_specs).to_parquet(tmp / f"{L.CAMERA_INTRINSICS}.parquet")
        extrinsics_rows(cid, clip.camera_specs).to_parquet(tmp / f"{L.SENSOR_EXTRINSICS}.parquet")
        _vehicle_row(cid, clip.vehicle).to_parquet(tmp / f"{L.VEHICLE_DIMENSIONS}.parquet")
        events = tuple({K.EVENT_START_TIMESTAMP: int(e[K.EVENT_START_TIMESTAMP]), K.COT: str(e[K.COT])}
                       for e in clip.events)
        t0s = clip.event_t0s if clip.event_t0s is not None else [e[K.EVENT_START_TIMESTAMP] for e in events]
        record = ClipRecord(cid, tuple(int(v) for v in t0s), int(ego[K.TIMESTAMP].iloc[-1]), str(clip.split),
                            bool(clip.clip_is_valid), dict(clip.metadata), events, tuple(clip.cameras))
        (tmp / L.CLIP_RECORD_NAME).write_text(record.to_json())
        if final.exists():  # a complete earlier staging of the same clip: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


# ---------------------------------------------------------------------------------------------
# The writer
# ---------------------------------------------------------------------------------------------
class DatasetWriter:
    """Packs staged clips into chunks and maintains the index files. Use :func:`create`."""

    def __init__(self, root, cameras, chunk_size: int = DEFAULT_CHUNK_SIZE, crf: int = DEFAULT_CRF,
                 gop: int = DEFAULT_GOP):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.root = Path(root)
        self.cameras = tuple(cameras)
        if not self.cameras:
            raise ValueError("a dataset needs at least one camera")
        self.chunk_size, self.crf, self.gop = int(chunk_size), int(crf), int(gop)
        self.features = L.features_table(self.cameras)
        self.packed: dict[int, list[ClipRecord]] = {}
        self.open: list[ClipRecord] = []
        self._load_state()

    # -- state ----------------------------------------------------------------------------------
    def _load_state(self) -> None:
        fcsv = self.root / L.FEATURES_CSV
        if fcsv.exists():
            fdf = L.read_features_csv(self.root)
            have = [f for f in fdf.index if fdf.at[f, K.DIRECTORY] == "camera"]
            if sorted(have) != sorted(self.cameras):
                raise ValueError(f"{self.root}: existing dataset has cameras {have}, writer asked for "
                                 f"{list(self.cameras)}")
        for p in sorted((self.root / L.CHUNK_RECORDS_DIR).glob("chunk_*.json")):
            d = json.loads(p.read_text())
            self.packed[int(d["chunk"])] = [ClipRecord.from_json(json.dumps(r)) for r in d["clips"]]
        packed_ids = {r.clip_id for recs in self.packed.values() for r in recs}
        staging = self.root / L.STAGING_DIR
        if staging.exists():
            for d in sorted(staging.iterdir()):
                if d.name.startswith("."):  # an interrupted staging: never complete, discard
                    shutil.rmtree(d, ignore_errors=True)
                    continue
                rec_path = d / L.CLIP_RECORD_NAME
                if not rec_path.exists():
                    shutil.rmtree(d, ignore_errors=True)
                    continue
                rec = ClipRecord.from_json(rec_path.read_text())
                if rec.clip_id in packed_ids:  # killed after the chunk record, before cleanup
                    shutil.rmtree(d, ignore_errors=True)
                else:
                    self.open.append(rec)

    @property
    def next_chunk(self) -> int:
        return max(self.packed) + 1 if self.packed else 0

    def has_clip(self, clip_id: str) -> bool:
        return any(r.clip_id == clip_id for r in self.open) or any(
            r.clip_id == clip_id for recs in self.packed.values() for r in recs)

    @property
    def clip_ids(self) -> list[str]:
        return [r.clip_id for c in sorted(self.packed) for r in self.packed[c]] + [r.clip_id for r in self.open]

    # -- adding ---------------------------------------------------------------------------------
    def add_clip(self, clip: ClipData) -> ClipRecord:
        """Stage ``clip`` (encode videos, write its files) and register it."""
        if tuple(sorted(clip.cameras)) != tuple(sorted(self.cameras)):
            raise ValueError(f"clip {clip.clip_id}: cameras {sorted(clip.cameras)} differ from the dataset's "
                             f"{sorted(self.cameras)}")
        rec = stage_clip(self.root, clip, crf=self.crf, gop=self.gop)
        self.add_staged(rec)
        return rec

    def add_staged(self, rec: ClipRecord) -> None:
        """Register a clip staged by :func:`stage_clip` (possibly in another process)."""
        if not (self.root / L.STAGING_DIR / rec.clip_id / L.CLIP_RECORD_NAME).exists():
            raise ValueError(f"clip {rec.clip_id} is not staged under {self.root / L.STAGING_DIR}")
        if any(r.clip_id == rec.clip_id for recs in self.packed.values() for r in recs):
            raise ValueError(f"clip {rec.clip_id} is already in a packed chunk")
        self.open = [r for r in self.open if r.clip_id != rec.clip_id] + [rec]
        while len(self.open) >= self.chunk_size:
            self._pack(self.open[: self.chunk_size])
            self.open = self.open[self.chunk_size:]

    # -- packing --------------------------------------------------------------------------------
    def _pack(self, recs: list[ClipRecord]) -> None:
        chunk = self.next_chunk
        staging = self.root / L.STAGING_DIR
        for feature, row in self.features.iterrows():
            path = self.root / row[K.CHUNK_PATH].format(chunk_id=chunk)
            path.parent.mkdir(parents=True, exist_ok=True)
            members = row[K.CLIP_FILES_IN_ZIP]
            members = json.loads(members) if isinstance(members, str) else None
            if members:  # zip feature
                tmp = _tmp_name(path)
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                    for r in recs:
                        for template in members.values():
                            name = template.format(clip_id=r.clip_id)
                            zf.write(staging / r.clip_id / name, arcname=name)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            else:  # calibration parquet: rows of every clip
                df = pd.concat([pd.read_parquet(staging / r.clip_id / f"{feature}.parquet") for r in recs])
                atomic_write_parquet(df, path)
        record = {"chunk": chunk, "clips": [json.loads(r.to_json()) for r in recs]}
        atomic_write_bytes(self.root / L.CHUNK_RECORD.format(chunk_id=chunk), json.dumps(record).encode())
        self.packed[chunk] = list(recs)
        for r in recs:
            shutil.rmtree(staging / r.clip_id, ignore_errors=True)
        self._write_index()

    def _write_index(self) -> None:
        """features.csv, clip_index, metadata and reasoning for every packed clip."""
        rows = [(c, r) for c in sorted(self.packed) for r in self.packed[c]]
        atomic_write_bytes(self.root / L.FEATURES_CSV, self.features.to_csv().encode())
        ids = [r.clip_id for _, r in rows]
        clip_index = pa.table({
            K.CLIP_ID: pa.array(ids, pa.string()),
            K.CHUNK: pa.array([c for c, _ in rows], pa.int64()),
            K.EVENT_T0S: pa.array([list(r.event_t0s) for _, r in rows], pa.list_(pa.int64())),
            K.END_TIMESTAMP: pa.array([r.end_timestamp for _, r in rows], pa.int64()),
            K.SPLIT: pa.array([r.split for _, r in rows], pa.string()),
            K.CLIP_IS_VALID: pa.array([r.clip_is_valid for _, r in rows], pa.bool_()),
        })
        atomic_write_parquet(_with_index(clip_index, K.CLIP_ID), self.root / L.CLIP_INDEX)
        is_cam = self.features[K.DIRECTORY] == "camera"
        presence = pd.DataFrame({f: [(not is_cam[f]) or f in r.cameras for _, r in rows]
                                 for f in self.features.index}, index=pd.Index(ids, name=K.CLIP_ID))
        atomic_write_parquet(presence, self.root / L.FEATURE_PRESENCE)
        meta = pd.DataFrame([r.metadata for _, r in rows], index=pd.Index(ids, name=K.CLIP_ID))
        atomic_write_parquet(meta, self.root / L.DATA_COLLECTION)
        write_reasoning(self.root, {r.clip_id: r.events for _, r in rows})

    def finalize(self) -> list[str]:
        """Pack the remaining staged clips (a last, possibly smaller chunk) and write the index.
        Returns every clip id in the dataset."""
        while self.open:
            self._pack(self.open[: self.chunk_size])
            self.open = self.open[self.chunk_size:]
        self._write_index()
        return self.clip_ids


def write_reasoning(root, events_by_clip: dict[str, list[dict]]) -> None:
    """Atomically (re)write ``reasoning/ood_reasoning.parquet`` of the dataset at ``root``: index
    ``clip_id``, ``events`` = list of {event_start_timestamp (int64 µs), cot}; clips without events
    are left out (as in the release)."""
    with_events = [(c, sorted(evs, key=lambda e: int(e[K.EVENT_START_TIMESTAMP])))
                   for c, evs in events_by_clip.items() if evs]
    ev_type = pa.list_(pa.struct([(K.EVENT_START_TIMESTAMP, pa.int64()), (K.COT, pa.string())]))
    reasoning = pa.table({K.CLIP_ID: pa.array([str(c) for c, _ in with_events], pa.string()),
                          K.EVENTS: pa.array([[{K.EVENT_START_TIMESTAMP: int(e[K.EVENT_START_TIMESTAMP]),
                                                K.COT: str(e[K.COT])} for e in evs] for _, evs in with_events],
                                             ev_type)})
    atomic_write_parquet(_with_index(reasoning, K.CLIP_ID), Path(root) / L.REASONING)


def replace_events(root, events_by_clip: dict[str, list[dict]]) -> None:
    """Replace the reasoning events of the given clips everywhere the dataset at ``root`` keeps
    them — the reasoning parquet, ``clip_index.event_t0s`` (the sample points; the new events' t0s,
    as the generator writes them) and our chunk records (which a resumed writer re-indexes from,
    so it would otherwise bring the old labels back). Each file is rewritten atomically; clips
    not named keep theirs."""
    root = Path(root)
    new = {str(c): sorted(evs, key=lambda e: int(e[K.EVENT_START_TIMESTAMP])) for c, evs in events_by_clip.items()}
    t0s = {c: [int(e[K.EVENT_START_TIMESTAMP]) for e in evs] for c, evs in new.items()}
    for path in sorted((root / L.CHUNK_RECORDS_DIR).glob("chunk_*.json")):
        record = json.loads(path.read_text())
        hit = [r for r in record["clips"] if r["clip_id"] in new]
        for r in hit:
            r["events"], r["event_t0s"] = new[r["clip_id"]], t0s[r["clip_id"]]
        if hit:
            atomic_write_bytes(path, json.dumps(record).encode())
    index_path = root / L.CLIP_INDEX
    if index_path.exists():
        table = pq.read_table(index_path)
        if K.EVENT_T0S in table.column_names:
            ids = table.column(K.CLIP_ID).to_pylist()
            old = table.column(K.EVENT_T0S).to_pylist()
            col = pa.array([t0s.get(c, o) for c, o in zip(ids, old)], pa.list_(pa.int64()))
            i = table.schema.get_field_index(K.EVENT_T0S)
            atomic_write_parquet(table.set_column(i, pa.field(K.EVENT_T0S, col.type), col), index_path)
    reasoning_path = root / L.REASONING
    kept = {}
    if reasoning_path.exists():
        df = pd.read_parquet(reasoning_path)
        df = df.set_index(K.CLIP_ID) if K.CLIP_ID in df.columns else df
        kept = {str(c): parse_events(evs, str(c)) for c, evs in df[K.EVENTS].items()}
    write_reasoning(root, {**kept, **new})


def _with_index(table: pa.Table, index: str) -> pa.Table:
    """Mark column ``index`` as the pandas index (``pd.read_parquet`` returns it as the index),
    keeping the explicit Arrow types (lists of int64, lists of structs) even for empty tables."""
    df = table.to_pandas().set_index(index)
    return pa.Table.from_pandas(df, schema=table.schema, preserve_index=True)


def create(root, cameras, chunk_size: int = DEFAULT_CHUNK_SIZE, crf: int = DEFAULT_CRF,
           gop: int = DEFAULT_GOP) -> DatasetWriter:
    """Open (or resume) a dataset directory for writing."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return DatasetWriter(root, cameras, chunk_size=chunk_size, crf=crf, gop=gop)
