"""`cordillera label DIR`: re-labelling a generated dataset reproduces the generator's CoC parquet."""

import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cordillera.cli import app
from cordillera.data import layout as L
from cordillera.data.generate import clip_uuid, generate
from cordillera.data.reader import PaiReader
from cordillera.reasoning.cli import label_dataset

CLIPS = [("cut_in", 1000), ("construction_zone", 1000)]  # both label events within 10 s


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("label") / "ds"
    rep = generate(CLIPS, None, out, workers=1, cameras=("camera_front_wide_120fov",), image_hw=(48, 80),
                   duration_us=10_000_000, progress=False, backend="cv")  # labels do not depend on pixels
    assert not rep["failed"], rep["failed"]
    return out


def _events(root):
    r = PaiReader(root)
    return {c: r.reasoning_events(c) for c in r.clips()}


@pytest.mark.slow
def test_label_cli_reproduces_the_generator_labels_and_is_idempotent(dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    path = root / L.REASONING
    want_table = pq.read_table(path)
    want = _events(root)
    assert {clip_uuid(*c) for c in CLIPS} == set(want) and sum(map(len, want.values())) >= 3
    path.unlink()
    assert all(v == [] for v in _events(root).values())

    res = CliRunner().invoke(app, ["label", str(root)])
    assert res.exit_code == 0, res.output
    assert "2 clips labelled" in res.output
    assert _events(root) == want  # same t0s, same sentences (same rollout, same phrasing seed)
    got_table = pq.read_table(path)
    assert got_table.schema.equals(want_table.schema) and got_table.equals(want_table)

    # a re-run skips labelled clips and leaves the file alone; --overwrite redoes them identically
    mtime = path.stat().st_mtime_ns
    rep = label_dataset(root, progress=False)
    assert rep["labelled"] == [] and sorted(rep["skipped"]) == sorted(want) and path.stat().st_mtime_ns == mtime
    rep = label_dataset(root, overwrite=True, progress=False)
    assert sorted(rep["labelled"]) == sorted(want) and _events(root) == want
    assert not list(path.parent.glob("*.tmp*"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_label_cli_reports_a_clip_it_cannot_label_and_labels_the_rest(dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    want = _events(root)
    (root / L.REASONING).unlink()
    bad, good = clip_uuid(*CLIPS[0]), clip_uuid(*CLIPS[1])
    dc = pd.read_parquet(root / L.DATA_COLLECTION)
    dc.loc[bad, "family"] = None  # e.g. a real PhysicalAI-AV clip: no scenario to re-drive
    dc.to_parquet(root / L.DATA_COLLECTION)

    res = CliRunner().invoke(app, ["label", str(root)])
    assert res.exit_code == 1
    err = [ln for ln in res.output.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and bad in err[0] and L.DATA_COLLECTION in err[0] and "family" in err[0]
    assert _events(root) == {bad: [], good: want[good]}


@pytest.mark.slow
def test_label_names_the_missing_egomotion_file(dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    for z in (root / "labels" / L.EGOMOTION).glob("*.zip"):
        z.unlink()
    rep = label_dataset(root, overwrite=True, progress=False)
    assert rep["labelled"] == [] and set(rep["failed"]) == {clip_uuid(*c) for c in CLIPS}
    msg = rep["failed"][clip_uuid(*CLIPS[0])]
    assert clip_uuid(*CLIPS[0]) in msg and "egomotion" in msg and "missing" in msg and "\n" not in msg
    # a failed clip keeps the events it had
    assert all(_events(root)[c] for c in rep["failed"])


@pytest.mark.slow
def test_label_overwrite_replaces_the_sample_points_and_survives_a_resumed_writer(dataset, tmp_path):
    import json

    from cordillera.data.writer import create, replace_events

    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    want = _events(root)
    # an older labeler's output: one extra keyframe at 2.0 s with its own text, everywhere it is kept
    stale = {c: sorted(evs + [{"event_start_timestamp": 2_000_000, "cot": "Old label."}],
                       key=lambda e: e["event_start_timestamp"]) for c, evs in want.items()}
    replace_events(root, stale)
    r = PaiReader(root)
    assert all(2_000_000 in r.event_t0s(c) and r.reasoning_events(c) == stale[c] for c in want)
    records = [json.loads(p.read_text()) for p in sorted((root / L.CHUNK_RECORDS_DIR).glob("chunk_*.json"))]
    assert {c["clip_id"]: c["events"] for rec in records for c in rec["clips"]} == stale

    rep = label_dataset(root, overwrite=True, progress=False)
    assert sorted(rep["labelled"]) == sorted(want)
    r = PaiReader(root)
    for c in want:
        assert r.reasoning_events(c) == want[c]
        assert r.event_t0s(c) == [e["event_start_timestamp"] for e in want[c]]  # no sample at the stale 2.0 s
    # a writer resumed on this dataset (e.g. `data generate` adding clips) re-indexes from its chunk
    # records: the new labels stay
    create(root, ("camera_front_wide_120fov",)).finalize()
    assert _events(root) == want
    assert all(PaiReader(root).event_t0s(c) == [e["event_start_timestamp"] for e in want[c]] for c in want)


@pytest.mark.slow
def test_label_every_adds_a_t0_grid_to_the_keyframes_in_parallel_workers(dataset, tmp_path):
    from cordillera.reasoning.keyframes import dense_t0s

    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    keyframes = _events(root)
    res = CliRunner().invoke(app, ["label", str(root), "--overwrite", "--every", "0.5", "--start", "1.7",
                                   "--workers", "2"])
    assert res.exit_code == 0, res.output
    dense = _events(root)
    r = PaiReader(root)
    for c, evs in dense.items():
        t0s = [e["event_start_timestamp"] for e in evs]
        # 10 s clips: t0 + 6.4 s <= 10 s, so the grid is 1.7, 2.2, … 3.2 s (the warm-up ends by 1.7 s)
        assert set(dense_t0s(10_000_000, 1_700_000, 500_000)) <= set(t0s) == set(r.event_t0s(c))
        assert t0s == sorted(t0s) and len(set(t0s)) == len(t0s)
        # the keyframes keep their labels word for word (same rollout, same per-t0 phrasing seed)
        assert all(e in evs for e in keyframes[c]) and len(evs) > len(keyframes[c])
    # one process labels the same
    single = tmp_path / "single"
    shutil.copytree(dataset, single)
    rep = label_dataset(single, overwrite=True, every_us=500_000, start_us=1_700_000, progress=False)
    assert _events(single) == dense and rep["events"] == sum(map(len, dense.values()))
    res = CliRunner().invoke(app, ["label", str(root), "--start", "1.7"])
    assert res.exit_code != 0 and "--every" in str(res.exception)
