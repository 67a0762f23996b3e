"""Two checkpoints on the same validation samples: per-sample minADE₆ and a bootstrap CI of the
paired difference (is a retrain / an ablation different beyond the evaluation's sampling noise?).

Both models see the same 200 (``--samples``) validation samples of one dataset, spread as in
``train.loop.val_batches_fn``, with the recipe's evaluation settings (``configs/train_nano.yaml``
stage 2: K = 6, CoC sampled at temperature 0.6 / top-p 0.98, 10 flow steps) and the same noise seed.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/openloop_paired.py CKPT_A CKPT_B --data DIR
       [--samples 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cordillera.metrics.openloop import min_ade
from cordillera.model.modeling import CordilleraVLA
from cordillera.model.processor import EGO_FUTURE_XYZ, VLAProcessor
from cordillera.model.tokenizer import load_tokenizer
from cordillera.train import loop
from cordillera.train.config import NanoConfig, load_train_config
from cordillera.train.data import PROMPT_BATCH, Collate


def per_sample_min_ade(checkpoint: str, data_dir: str, n: int, seed: int = 1234) -> np.ndarray:
    cfg = load_train_config("train_nano", NanoConfig, [])
    s2 = cfg.stage2.model_copy(update={"use_coc": True, "data": cfg.stage2.data.model_copy(
        update={"dir": data_dir, "val_fraction": cfg.val_fraction})})
    ev = s2.eval.model_copy(update={"num_samples": n})
    vla = CordilleraVLA.from_pretrained(checkpoint).eval()
    tok = load_tokenizer(vla.cfg, checkpoint)
    data = loop.open_data(s2, vla.cfg)
    collate = Collate(VLAProcessor(vla.cfg, tok), vla.cfg.inputs.use_coc, nav_dropout=0.0 if s2.data.nav else 1.0,
                      with_prompt=True)
    batches = loop.val_batches_fn(data.val, collate, ev)
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for b in batches():
            s = vla.sample_trajectories(b[PROMPT_BATCH], num_samples=ev.k, temperature=ev.temperature, top_p=ev.top_p,
                                        flow_steps=ev.flow_steps, fast=not vla.cfg.inputs.use_coc,
                                        max_new_tokens=ev.max_new_tokens, generator=g)
            out.append(min_ade(s.xyz, b[EGO_FUTURE_XYZ], reduce=False)["min_ade"].numpy())
    return np.concatenate(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--data", required=True)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    vals = {}
    print("| checkpoint | val minADE₆ [m] | n | seconds |\n|---|---:|---:|---:|")
    for ck in (a.a, a.b):
        t = time.time()
        vals[ck] = per_sample_min_ade(ck, a.data, a.samples)
        print(f"| {ck} | {vals[ck].mean():.3f} | {len(vals[ck])} | {time.time() - t:.0f} |", flush=True)
    x, y = vals[a.a], vals[a.b]
    idx = np.random.default_rng(0).integers(0, len(x), (10_000, len(x)))
    d = (y[idx] - x[idx]).mean(1)
    print(f"\n{a.b} − {a.a}: {y.mean() - x.mean():+.3f} m [{np.percentile(d, 2.5):+.3f}, {np.percentile(d, 97.5):+.3f}] "
          f"(95 % bootstrap over samples), {100 * (y.mean() / x.mean() - 1):+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
