"""Corrupt inputs raise ValueErrors that name the clip and the file."""

import io
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from data_synth import SMALL_CAMERAS, make_clip

from cordillera.data import layout as L
from cordillera.data import writer as W
from cordillera.data.reader import PaiReader
from cordillera.data.samples import build_sample

CID = "00000000-0000-4000-8000-0000000000cc"
EGO_ZIP = "labels/egomotion/egomotion.chunk_0000.zip"
CAM = "camera_front_wide_120fov"
CAM_ZIP = f"camera/{CAM}/{CAM}.chunk_0000.zip"


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    w = W.create(root, SMALL_CAMERAS)
    w.add_clip(make_clip(CID, duration_s=9.0))
    w.finalize()
    return root


@pytest.fixture
def ds(clean, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(clean, root)
    return root


def _rewrite_member(root, zip_rel, member, data: bytes):
    path = root / zip_rel
    with zipfile.ZipFile(path) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    items[member] = data
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in items.items():
            zf.writestr(n, d)


def _ego_df(root):
    with zipfile.ZipFile(root / EGO_ZIP) as zf:
        return pd.read_parquet(io.BytesIO(zf.read(f"{CID}.egomotion.parquet")))


def _parquet_bytes(df):
    b = io.BytesIO()
    df.to_parquet(b, index=False)
    return b.getvalue()


def test_truncated_zip(ds):
    path = ds / CAM_ZIP
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    r = PaiReader(ds)
    with pytest.raises(ValueError, match=rf"clip {CID}: .*{CAM}\.chunk_0000\.zip.*(truncated|corrupt)"):
        r.frames_at(CID, CAM, [0])
    with pytest.raises(ValueError, match=CID):
        build_sample(r, CID, 2_000_000, cameras=SMALL_CAMERAS)


def test_truncated_video_member(ds):
    with zipfile.ZipFile(ds / CAM_ZIP) as zf:
        mp4 = zf.read(f"{CID}.{CAM}.mp4")
    _rewrite_member(ds, CAM_ZIP, f"{CID}.{CAM}.mp4", mp4[: len(mp4) // 3])
    r = PaiReader(ds)
    with pytest.raises(ValueError, match=rf"clip {CID}: .*{CID}\.{CAM}\.mp4"):
        r.frames_at(CID, CAM, [8_000_000])


def test_missing_feature_and_missing_file(ds):
    r = PaiReader(ds)
    with pytest.raises(ValueError, match=rf"clip {CID}: feature 'camera_rear_tele_30fov' is not in .*features.csv"):
        r.frames_at(CID, "camera_rear_tele_30fov", [0])
    (ds / EGO_ZIP).unlink()
    with pytest.raises(ValueError, match=rf"clip {CID}: feature 'egomotion': file .*egomotion.chunk_0000.zip is missing"):
        r.egomotion(CID)
    # a feature the presence table marks absent
    fp = pd.read_parquet(ds / L.FEATURE_PRESENCE)
    fp.loc[CID, CAM] = False
    fp.to_parquet(ds / L.FEATURE_PRESENCE)
    with pytest.raises(ValueError, match=rf"clip {CID}: feature '{CAM}' is absent"):
        PaiReader(ds).frames_at(CID, CAM, [0])


def test_nan_egomotion_rows(ds):
    df = _ego_df(ds)
    df.loc[[40, 41], "y"] = np.nan
    _rewrite_member(ds, EGO_ZIP, f"{CID}.egomotion.parquet", _parquet_bytes(df))
    with pytest.raises(ValueError, match=rf"clip {CID}: .*{CID}\.egomotion\.parquet: 2 egomotion row\(s\) contain NaN"):
        PaiReader(ds).egomotion(CID)


def test_non_monotonic_egomotion_timestamps(ds):
    df = _ego_df(ds)
    df.loc[100, "timestamp"] = df.loc[99, "timestamp"]
    _rewrite_member(ds, EGO_ZIP, f"{CID}.egomotion.parquet", _parquet_bytes(df))
    with pytest.raises(ValueError, match=rf"clip {CID}: .*egomotion\.parquet: egomotion timestamps not strictly "
                                         r"increasing at row 100"):
        PaiReader(ds).egomotion(CID)


def test_non_monotonic_frame_timestamps(ds):
    ts = pd.DataFrame({"timestamp": np.array([0, 33_333, 33_333, 100_000], dtype=np.int64)})
    _rewrite_member(ds, CAM_ZIP, f"{CID}.{CAM}.timestamps.parquet", _parquet_bytes(ts))
    with pytest.raises(ValueError, match=rf"clip {CID}: .*{CID}\.{CAM}\.timestamps\.parquet: frame timestamps not "
                                         "strictly increasing"):
        PaiReader(ds).frames_at(CID, CAM, [0])


def test_missing_member_and_unknown_clip(ds):
    with zipfile.ZipFile(ds / EGO_ZIP) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(ds / EGO_ZIP, "w") as zf:
        zf.writestr("other.egomotion.parquet", items[f"{CID}.egomotion.parquet"])
    with pytest.raises(ValueError, match=rf"clip {CID}: .*{CID}\.egomotion\.parquet is missing from the zip"):
        PaiReader(ds).egomotion(CID)
    with pytest.raises(ValueError, match="clip nope: not in"):
        PaiReader(ds).egomotion("nope")
