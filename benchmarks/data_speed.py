"""Data speed: clips generated per minute and training samples/s from the DataLoader.

1. Generation: ``data.generate.generate`` on the ``smoke`` suite, N clips of 20 s with the
   model's 4 cameras at 320×576 (expert rollout + GL/cv render at 10 Hz + H.264 at 30 fps), through
   a local Ray cluster with ``--workers`` CPUs. Clips per minute = clips / wall clock (Ray start-up
   included) and per clip in its worker.
2. Loading: ``PaiDataset`` at 320×576, 4 cameras × 4 frames, 2 DataLoader worker processes,
   batch 8, clip-grouped order, t0 on a 0.5 s grid over every clip's valid range (2.0–13.5 s, the
   autolabeler's keyframe range) — samples/s after one warm-up batch.
3. Ratio: loading samples/s ÷ the nano model's training samples/s (``benchmarks/RESULTS.md``
   ``## model_train`` if present, else 8 samples/s from spec/environment.md).

    PYTHONPATH=src .venv/bin/python benchmarks/data_speed.py [--clips 4] [--workers 2] [--batches 12]
"""

from __future__ import annotations

import argparse
import platform
import re
import tempfile
import time
from pathlib import Path

import torch

from cordillera.data.dataset import PaiDataset, make_dataloader
from cordillera.data.generate import generate
from cordillera.data.samples import valid_t0s

NANO_TRAIN_SAMPLES_PER_S_FALLBACK = 8.0  # spec/environment.md: ~10M model, batch 8, fwd+bwd+AdamW


def nano_train_rate() -> tuple[float, str]:
    res = Path(__file__).with_name("RESULTS.md")
    if res.exists():
        m = re.search(r"## model_train.*?nano.*?([\d.]+)\s*samples/s", res.read_text(), re.S)
        if m:
            return float(m.group(1)), "benchmarks/RESULTS.md ## model_train"
    return NANO_TRAIN_SAMPLES_PER_S_FALLBACK, "spec/environment.md (8 samples/s; model figure not measured yet)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--out", default=None, help="dataset dir (default: a temp dir)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out or tempfile.mkdtemp(prefix="data_speed_"))
    rep = generate("smoke", a.clips, out, workers=a.workers, progress=False)
    if rep["failed"]:
        print("failed:", rep["failed"])
    n = len(rep["written"])
    per_clip = sum(rep["clip_wall_s"]) / max(n, 1)
    gen_rate = 60 * n / rep["wall_s"]

    ds = PaiDataset(out, image_hw=(320, 576))
    index = []
    for cid in ds.reader.clips():
        end = ds.reader.end_timestamp(cid)
        for t0 in valid_t0s(range(2_000_000, 13_500_001, 500_000), end):
            index.append((cid, t0, None))
    ds.index = index
    dl = make_dataloader(ds, batch_size=8, num_workers=2, seed=0)
    it = iter(dl)
    next(it)  # warm-up: worker start, first containers
    t = time.perf_counter()
    got = 0
    for _ in range(a.batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(dl)
            b = next(it)
        got += b["image_frames"].shape[0]
    load_rate = got / (time.perf_counter() - t)
    del it, dl  # stop the persistent workers before the interpreter exits
    train_rate, src = nano_train_rate()

    print(f"machine: {platform.machine()}, python {platform.python_version()}, torch {torch.__version__}")
    print(f"| measure | value |\n|---|---:|")
    print(f"| clips generated (20 s, 4 cams 320×576) | {n} |")
    print(f"| wall clock, {a.workers} Ray workers (incl. start-up) | {rep['wall_s']:.1f} s |")
    print(f"| **clips / minute** | **{gen_rate:.2f}** |")
    print(f"| per clip in its worker (rollout + render + encode) | {per_clip:.1f} s |")
    print(f"| dataset samples (t0 grid, 0.5 s) | {len(index)} |")
    print(f"| **training samples / s** (DataLoader, 2 workers, batch 8, 320×576, 4×4 frames) | **{load_rate:.1f}** |")
    print(f"| nano training samples / s ({src}) | {train_rate:.1f} |")
    print(f"| **ratio loading / training** | **{load_rate / train_rate:.2f}×** |")


if __name__ == "__main__":
    main()
