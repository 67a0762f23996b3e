"""How much of the CoC's longitudinal decision does the backbone hold before it writes the CoC?

A linear probe (multinomial logistic regression, L2, LBFGS on standardised features) on the backbone's last
hidden state at the prompt's end (`<|cot_start|>`: the state the first CoC token is decoded from), fitted on
the samples of TRAIN_DIR and scored on every sample of HELD_OUT_DIR, against always answering the training
set's most common decision. Compare with how often the model's decoded CoC states the label's decision
(`openloop_oracle_coc.py`): the probe bounds what the representation holds, decoding may lose some of it.
A model trained with a decision head (`decision_head_weight > 0`) also reports that head's own answers.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/decision_probe.py CKPT --train TRAIN_DIR --held-out DIR
       [--train-samples N] [--l2 1e-3] [--threads 2]
"""

# make bench: skip — needs checkpoints or data given as arguments (see Usage above)
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from openloop_paired import heldout_batches  # noqa: E402

from cordillera.model.processor import COT_TEXT  # noqa: E402
from cordillera.reasoning.schema import LONGITUDINAL_CLASSES, parse  # noqa: E402
from cordillera.train.data import PROMPT_BATCH  # noqa: E402


def prompt_states(checkpoint: str, data_dir: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(hidden state at the prompt's last position (N, D), the label's longitudinal decision (N,),
    the model's own decision head's longitudinal answer (N,), None without a head)."""
    vla, _, batches = heldout_batches(checkpoint, data_dir, n, all_clips=True)
    head = vla.model.decision_head
    states, decisions, answers = [], [], []
    tic = time.perf_counter()
    for b in batches():
        state = vla.prompt_state(b[PROMPT_BATCH])  # prompts end at `<|cot_start|>`
        states.append(state.float().numpy())
        decisions += [parse(c).longitudinal for c in b[COT_TEXT]]
        if head is not None:
            with torch.no_grad():
                answers += [LONGITUDINAL_CLASSES[i] for i in head(state)[0].argmax(1).tolist()]
    print(f"{data_dir}: {len(decisions)} samples in {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    return (np.concatenate(states), np.asarray(decisions, dtype=object),
            np.asarray(answers, dtype=object) if head is not None else None)  # fmt: skip


def fit_linear_probe(x: np.ndarray, y: np.ndarray, l2: float) -> torch.nn.Linear:
    """Multinomial logistic regression of class indices y on x (already standardised)."""
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    probe = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(xt), yt) + l2 * probe.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--train", required=True, help="data dir the probe is fitted on (e.g. the model's own training data)")
    ap.add_argument("--held-out", required=True, help="data dir it is scored on (every sample)")
    ap.add_argument("--train-samples", type=int, default=100_000)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x_tr, d_tr, head_tr = prompt_states(a.checkpoint, a.train, a.train_samples)
    x_te, d_te, head_te = prompt_states(a.checkpoint, a.held_out, 100_000)
    classes = sorted(set(d_tr.tolist()) | set(d_te.tolist()), key=str)
    index = {c: i for i, c in enumerate(classes)}
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    z_tr, z_te = (x_tr - mu) / sd, (x_te - mu) / sd
    y_tr, y_te = (np.array([index[c] for c in d]) for d in (d_tr, d_te))
    probe = fit_linear_probe(z_tr, y_tr, a.l2)
    with torch.no_grad():
        pred_tr, pred_te = (probe(torch.tensor(z, dtype=torch.float32)).argmax(1).numpy() for z in (z_tr, z_te))
    majority = Counter(d_tr.tolist()).most_common(1)[0][0]
    head = "–" if head_te is None else f"{np.mean(head_tr == d_tr):.1%} / {np.mean(head_te == d_te):.1%}"
    print("| checkpoint | train / held-out samples | probe accuracy train | probe accuracy held-out | "
          "the model's decision head, train / held-out | always the most common decision, held-out |\n"
          "|---|---|---:|---:|---:|---:|")
    print(f"| {a.checkpoint} | {len(d_tr)} / {len(d_te)} | {np.mean(pred_tr == y_tr):.1%} | {np.mean(pred_te == y_te):.1%} "
          f"| {head} | {np.mean(d_te == majority):.1%} ({majority}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
