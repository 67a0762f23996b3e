"""Where does the copycat live: in the reasoning or in the action expert? Open loop on held-out samples,
each model twice — decoding its own CoC, and with the label's CoC forced token by token (the expert then
conditions on the reasoning it was trained on). Per sample as `openloop_reaction.py`: Δx = x(3 s) − 3 s · v0
(t0 rig frame; negative: the ego slows), mean over K samples.

If the expert slows with the label's CoC where the ground truth slows and the history is steady, the
reasoning is what misses the hazard; if it does not slow even then, the expert ignores its reasoning.
Also: the share of samples whose own CoC states the label's longitudinal decision.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/openloop_oracle_coc.py CKPT [CKPT ...] --data DIR
       [--all] [--samples 200] [--threads 2]
"""

# make bench: skip — needs checkpoints or data given as arguments (see Usage above)
from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from openloop_paired import heldout_batches  # noqa: E402
from openloop_reaction import (  # noqa: E402
    GT_SLOWS_M,
    HORIZON_IDX,
    SLOWING_MPS,
    delta_x,
    history_speed,
    parse_args,
    slope_ci,
)

from cordillera.model.modeling import forcing  # noqa: E402
from cordillera.model.processor import EGO_FUTURE_XYZ  # noqa: E402
from cordillera.model.tokenizer import load_tokenizer  # noqa: E402
from cordillera.reasoning.schema import parse  # noqa: E402
from cordillera.train.data import CLIP_IDS, COT_TEXT, PROMPT_BATCH  # noqa: E402


def per_sample(checkpoint: str, data_dir: str, n: int, all_clips: bool, seed: int = 1234) -> dict:
    vla, ev, batches = heldout_batches(checkpoint, data_dir, n, all_clips)
    tok = load_tokenizer(vla.cfg, checkpoint)
    cot_end, tfs = vla.ids["<|cot_end|>"], vla.ids["<|traj_future_start|>"]
    out: dict[str, list] = {k: [] for k in ("gt", "own", "oracle", "a0", "clip", "own_lon", "label_lon")}
    with torch.no_grad():
        for b in batches():
            v0, a0 = history_speed(b)
            labels = list(b[COT_TEXT])
            seqs = [tok.encode(c, add_special_tokens=False) + [cot_end, tfs] for c in labels]
            L = max(map(len, seqs))
            tgt = torch.tensor([s + [tfs] * (L - len(s)) for s in seqs]).repeat_interleave(ev.k, dim=0)
            common = dict(num_samples=ev.k, top_p=ev.top_p, flow_steps=ev.flow_steps)
            own = vla.sample_trajectories(b[PROMPT_BATCH], temperature=ev.temperature, max_new_tokens=ev.max_new_tokens,
                                          generator=torch.Generator().manual_seed(seed), **common)  # fmt: skip
            orc = vla.sample_trajectories(b[PROMPT_BATCH], temperature=1.0, max_new_tokens=L,
                                          logits_processor=forcing(tgt), generator=torch.Generator().manual_seed(seed),
                                          **common)  # fmt: skip
            for i, seq in enumerate(seqs):  # the forced CoC is the label's, token for token
                assert orc.coc_token_ids[i, 0, :len(seq)].tolist() == seq, (labels[i], orc.coc_token_ids[i, 0])
            out["gt"].append(delta_x(b[EGO_FUTURE_XYZ][:, HORIZON_IDX, 0], v0))
            out["own"].append(delta_x(own.xyz[:, :, HORIZON_IDX, 0].double().mean(1), v0))
            out["oracle"].append(delta_x(orc.xyz[:, :, HORIZON_IDX, 0].double().mean(1), v0))
            out["a0"].append(a0.numpy())
            out["clip"] += list(b[CLIP_IDS])
            texts = tok.batch_decode(own.coc_token_ids[:, 0].tolist(), skip_special_tokens=True)
            out["own_lon"] += [parse(t).longitudinal for t in texts]
            out["label_lon"] += [parse(c).longitudinal for c in labels]
    return {k: (np.concatenate(v) if k in ("gt", "own", "oracle", "a0") else np.asarray(v, dtype=object))
            for k, v in out.items()}


def main() -> int:
    a = parse_args(__doc__)
    print("| checkpoint | CoC | GT slows, history steady: GT / model Δx(3 s) [m] | steady history: slope model on GT "
          "[95 % CI, clips] | own CoC states the label's longitudinal decision |\n|---|---|---|---|---:|")
    for ck in a.checkpoints:
        tic = time.perf_counter()
        r = per_sample(ck, a.data, a.samples, a.all)
        steady = r["a0"] > SLOWING_MPS
        m = steady & (r["gt"] <= GT_SLOWS_M)
        agree = float(np.mean(r["own_lon"] == r["label_lon"]))
        for which in ("own", "oracle"):
            sl, lo, hi = slope_ci(r["gt"][steady], r[which][steady], r["clip"][steady].astype(str))
            cell = f"n={int(m.sum())}: {r['gt'][m].mean():+.2f} / {r[which][m].mean():+.2f}" if m.any() else "–"
            print(f"| {ck} | {which} | {cell} | {sl:+.2f} [{lo:+.2f}, {hi:+.2f}] (n={int(steady.sum())}) | "
                  f"{f'{agree:.0%}' if which == 'own' else '–'} |", flush=True)
        pairs = Counter(zip(r["label_lon"].tolist(), r["own_lon"].tolist()))
        print(f"({ck}: {time.perf_counter() - tic:.0f} s; label → own CoC longitudinal decision, most common: "
              + ", ".join(f"{a} → {b}: {c}" for (a, b), c in pairs.most_common(12)) + ")", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
