"""Speculative CoC decoding on a trained model: decode time and backbone forwards, plain vs drafted.

A random-init model writes no predictable text, so `model_latency.py` (forced 40 random tokens)
cannot show what drafting buys; this benchmark runs a trained checkpoint (default the shipped
`checkpoints/nano`) on camera frames of simulated clips, in order, as a policy driving through
them would: every sample is planned twice per round, plain (`draft=None`, the baseline) and
speculative (an `NgramDraft` that has learnt every CoC the model wrote before, starting empty),
with the same generator seed, interleaved so that load changes hit both alike. The first
`--warm` samples only teach the draft (both paths still run, not reported).

Rows: CoC sampled at the spec's temperature 0.6 / top-p 0.98 and greedy (temperature 0, where both
paths must write the same text — checked). Columns: p50 decode ms, tokens, forwards, tokens per
forward, p50 whole-step ms, and the plain / speculative ratio of the summed decode time. Then the
K = 6 step (rows decoded batched, no draft) against both K = 1 steps.

Data: `--data DIR` (clips in the PhysicalAI-AV layout, e.g. `cordillera data generate --suite
standard --clips 16 --out DIR --image-hw 160x288`); samples every `--every-s` seconds from 2 s on.

    PYTHONPATH=src .venv/bin/python benchmarks/coc_speculative.py --data DIR [--checkpoint checkpoints/nano]
"""

# make bench: skip (needs a data directory)

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from cordillera.model.drafting import NgramDraft
from cordillera.model.infer_cli import model_inputs
from cordillera.model.inference import Planner


def load_samples(planner: Planner, data: Path, every_s: float, limit: int | None) -> list[dict]:
    from cordillera.data.reader import PaiReader
    from cordillera.data.samples import build_sample

    reader = PaiReader(data)
    inp = planner.model.cfg.inputs
    out = []
    for clip in reader.clips():
        t, end = 2_000_000, reader.end_timestamp(clip) - 6_500_000  # history before, a future after
        while t <= end:
            try:
                s = build_sample(reader, clip, t, cameras=inp.cameras, image_hw=(inp.image_height, inp.image_width))
            except ValueError:
                break
            out.append(model_inputs(s))
            t += int(every_s * 1e6)
            if limit and len(out) >= limit:
                return out
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("checkpoints/nano"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--every-s", type=float, default=3.0)
    ap.add_argument("--limit", type=int, default=64, help="samples in all (warm-up included)")
    ap.add_argument("--warm", type=int, default=16, help="samples that only teach the draft")
    ap.add_argument("--max-draft", type=int, default=NgramDraft().max_draft)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    planner = Planner.from_pretrained(a.checkpoint)
    model = planner.model
    samples = load_samples(planner, a.data, a.every_s, a.limit)
    if len(samples) <= a.warm:
        raise SystemExit(f"{len(samples)} samples in {a.data}: need more than --warm {a.warm}")
    rows = {}
    for name, temp in (("sampled (T 0.6, top-p 0.98)", 0.6), ("greedy", 0.0)):
        draft = NgramDraft(max_draft=a.max_draft)
        res = {"plain": [], "speculative": []}
        same = 0
        with torch.inference_mode():
            for i, s in enumerate(samples):
                batch = planner.processor([s])
                outs = {}
                for path in ("plain", "speculative"):
                    g = torch.Generator().manual_seed(i)
                    tic = time.perf_counter()
                    out = model.sample_trajectories(batch, 1, temperature=temp, generator=g,
                                                    draft=draft if path == "speculative" else None)  # fmt: skip
                    outs[path] = out
                    if i >= a.warm:
                        res[path].append({"decode": out.timings_ms["decode_ms"], "total": (time.perf_counter() - tic) * 1e3,
                                          "tokens": out.coc_token_ids.shape[-1], "forwards": out.decode_forwards})  # fmt: skip
                if i >= a.warm:
                    same += torch.equal(outs["plain"].coc_token_ids, outs["speculative"].coc_token_ids)
                if i == a.warm - 1:
                    print(f"[{name}] draft after {a.warm} samples: {len(draft)} contexts", flush=True)
        rows[name] = (res, same)

    # K = 6 decodes its rows batched (no draft): its step against the drafted K = 1 step (issue #7: ≤ 2.5×)
    k6 = []
    with torch.inference_mode():
        for i, s in enumerate(samples[a.warm:]):
            tic = time.perf_counter()
            model.sample_trajectories(planner.processor([s]), 6, temperature=0.6, generator=torch.Generator().manual_seed(i))
            k6.append((time.perf_counter() - tic) * 1e3)
    n = len(samples) - a.warm
    print(f"\n{a.checkpoint}, {n} samples of {a.data} (after {a.warm} that only taught the draft), "
          f"{a.threads} threads, max_draft {a.max_draft}; load average {os.getloadavg()[0]:.1f}\n")
    print("| CoC | path | decode p50 ms | tokens (mean) | forwards (mean) | tokens / forward | step p50 ms | "
          "decode plain / speculative | same text |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (res, same) in rows.items():
        ratio = sum(r["decode"] for r in res["plain"]) / sum(r["decode"] for r in res["speculative"])
        for path, rs in res.items():
            tok, fw = sum(r["tokens"] for r in rs), sum(r["forwards"] for r in rs)
            print(f"| {name} | {path} | {statistics.median(r['decode'] for r in rs):.1f} | {tok / len(rs):.1f} | "
                  f"{fw / len(rs):.1f} | {tok / fw:.2f} | {statistics.median(r['total'] for r in rs):.1f} | "
                  f"{'**%.2f×**' % ratio if path == 'speculative' else '–'} | "
                  f"{f'{same}/{n}' if path == 'speculative' else '–'} |")  # fmt: skip
    k1 = {p: statistics.median(r["total"] for r in rows["sampled (T 0.6, top-p 0.98)"][0][p]) for p in ("plain", "speculative")}
    print(f"\nK = 6 step p50 {statistics.median(k6):.1f} ms (T 0.6, batched plain decode): "
          f"{statistics.median(k6) / k1['speculative']:.2f}× the speculative K = 1 step, "
          f"{statistics.median(k6) / k1['plain']:.2f}× the plain one (target ≤ 2.5×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
