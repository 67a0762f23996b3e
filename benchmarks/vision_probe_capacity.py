"""Can the nano model's vision tower learn to see the lane at all? Trains a fresh model on the vision
probe's loss alone (`model.modeling.VisionProbe` on the ego's lane, `train.data.LaneAhead`; no CoC
or trajectory loss), then prints the probe's held-out errors against the no-image baseline
"centred and straight" every `--eval-every` steps.

It separates two questions the joint stage-1 run mixes: whether the pixels (96×160, 15 tokens per
frame) and this vision tower can carry the lane's shape, and whether the token losses leave the
probe enough of the shared weights' attention.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/vision_probe_capacity.py --data TRAIN_DIR --heldout DIR
       [--steps 300] [--lr 1e-3] [--batch 8] [--eval-every 100] [--eval-samples 96] [--threads 2]
"""

# make bench: skip — needs checkpoints or data given as arguments (see Usage above)
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from cordillera.data.dataset import PaiDataset
from cordillera.model.configuration import get_preset
from cordillera.model.modeling import (
    LANE_AHEAD,
    LANE_AHEAD_VALID,
    CordilleraVLA,
    vision_probe_loss,
    vision_probe_units,
)
from cordillera.model.processor import ATTENTION_MASK, IMAGE_GRID_THW, INPUT_IDS, MM_TOKEN_TYPE_IDS, PIXEL_VALUES
from cordillera.model.processor import VLAProcessor
from cordillera.model.tokenizer import load_tokenizer
from cordillera.train import loop
from cordillera.train.config import DataSettings, EvalSettings
from cordillera.train.data import PROMPT_BATCH, Collate, LaneAhead, open_splits
from cordillera.train.evaluate import PROBE_GROUPS


class AttentionPoolHead(torch.nn.Module):
    """The first `VisionProbe` design, kept for comparison: attention pooling with 8 learned
    queries over all image tokens (it starts as their mean), then an MLP."""

    def __init__(self, hidden: int, n_out: int, num_queries: int = 8, width: int = 256):
        super().__init__()
        self.queries = torch.nn.Parameter(torch.randn(num_queries, hidden) * hidden**-0.5)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(num_queries * hidden, width), torch.nn.GELU(),
                                       torch.nn.Linear(width, n_out))  # fmt: skip

    def forward(self, tokens):
        scores = (tokens @ self.queries.T).float() / tokens.shape[-1] ** 0.5  # (B, N, Q)
        return self.mlp(torch.einsum("bnq,bnd->bqd", scores.softmax(dim=1), tokens).flatten(1)).float()


def probe_inputs(vla, prompt, read: str) -> torch.Tensor:
    """The image tokens (B, N, D) the head reads: the text layers' last hidden states at the image
    positions (`prompt`, the model's probe before session 8) or the vision tower's merged outputs
    (`vision`, the model's probe since), which skip the text layers."""
    if read == "vision":
        return vla.image_tokens(prompt)
    m = vla.model
    ids, am, mm = prompt[INPUT_IDS], prompt[ATTENTION_MASK], prompt[MM_TOKEN_TYPE_IDS]
    pos = m.rope_positions(ids, mm, prompt[IMAGE_GRID_THW], am)
    h, _ = m.backbone(ids, am, pos, m.image_features(prompt[PIXEL_VALUES], prompt[IMAGE_GRID_THW]), mm)
    return h[mm.bool()].reshape(ids.shape[0], -1, h.shape[-1])


@torch.no_grad()
def heldout_errors(vla, batches, read: str = "prompt") -> dict[str, tuple[float, float]]:
    """Group → (probe MAE, zero-baseline MAE) over the held-out batches."""
    vla.eval()
    acc: dict[str, list] = {g: [[], []] for g, _, _ in PROBE_GROUPS}
    for b in batches():
        read_si = vision_probe_units(vla.model.vision_probe(probe_inputs(vla, b[PROMPT_BATCH], read)))
        t, ok = b[LANE_AHEAD], b[LANE_AHEAD_VALID]
        for g, cols, unit in PROBE_GROUPS:
            v = ok[:, cols]
            acc[g][0].append(((read_si[:, cols] - t[:, cols]).abs()[v] * unit).numpy())
            acc[g][1].append((t[:, cols].abs()[v] * unit).numpy())
    vla.train()
    return {g: (float(np.concatenate(a).mean()), float(np.concatenate(z).mean())) for g, (a, z) in acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="training data (the split's training clips are used)")
    ap.add_argument("--heldout", required=True, help="simulated clips never trained on")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vision-lr", type=float, default=None, help="the vision tower's rate (default: --lr)")
    ap.add_argument("--read", choices=("prompt", "vision"), default="prompt",
                    help="prompt = the text layers' states at the image tokens (the model's probe before session 8); "
                         "vision = the vision tower's outputs (the model's probe now; the text layers are skipped and "
                         "not trained)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-samples", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overfit", action="store_true", help="train on the first batch only (can the head fit at all?)")
    ap.add_argument("--head", choices=("flatten", "attention"), default="flatten",
                    help="flatten = the model's VisionProbe (keeps the image layout); attention = AttentionPoolHead")
    ap.add_argument("--loss", choices=("smooth_l1", "mse"), default="smooth_l1",
                    help="smooth_l1 = the model's VisionProbe.loss; mse weights the rare large targets more")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    base = get_preset("nano")
    cfg = base.replace(loss=dataclasses.replace(base.loss, vision_probe_weight=1.0))
    torch.manual_seed(a.seed)
    vla = CordilleraVLA(cfg)
    proc = VLAProcessor(cfg, load_tokenizer(cfg))
    hw = (cfg.inputs.image_height, cfg.inputs.image_width)
    ds, train, _ = open_splits(DataSettings(dir=a.data), hw, cfg.inputs.cameras, seed=0)
    collate = Collate(proc, with_prompt=True, lane_ahead=LaneAhead(ds.reader))
    held = PaiDataset(a.heldout, image_hw=hw, cameras=cfg.inputs.cameras, per="event")
    held_batches = loop.val_batches_fn(held, Collate(proc, with_prompt=True, lane_ahead=LaneAhead(held.reader)),
                                       EvalSettings(num_samples=a.eval_samples, batch_size=8))  # fmt: skip
    if a.head == "attention":
        from cordillera.model.modeling import PROBE_FIELDS

        vla.model.vision_probe = AttentionPoolHead(cfg.text.hidden_size, len(PROBE_FIELDS))
    head = vla.model.vision_probe
    visual = list(vla.model.vlm.model.visual.parameters())
    rest = list(vla.model.vlm.model.language_model.parameters()) + list(head.parameters())
    params = visual + rest
    opt = torch.optim.AdamW([{"params": visual, "lr": a.vision_lr or a.lr}, {"params": rest, "lr": a.lr}],
                            weight_decay=0.01)  # fmt: skip
    stream = loop.BatchStream(train, collate, a.batch, seed=a.seed)
    print(f"{len(train)} training samples; probe-only training, {a.head} head reading {a.read}, {a.loss} loss, lr {a.lr} (vision tower {a.vision_lr or a.lr}), batch {a.batch}")
    print("| step | s | train loss | " + " | ".join(f"{g}: probe / zero" for g, _, _ in PROBE_GROUPS) + " |")
    print("|---:|---:|---:|" + "---|" * len(PROBE_GROUPS))
    tic, losses, first = time.perf_counter(), [], None
    for step in range(1, a.steps + 1):
        b = first if a.overfit and step > 1 else next(stream)
        first = b if step == 1 else first
        tokens = probe_inputs(vla, b[PROMPT_BATCH], a.read)
        crit = F.smooth_l1_loss if a.loss == "smooth_l1" else F.mse_loss
        loss = vision_probe_loss(head(tokens), b[LANE_AHEAD], b[LANE_AHEAD_VALID], crit)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if step % a.eval_every == 0 or step == a.steps:
            e = heldout_errors(vla, held_batches, a.read)
            print(f"| {step} | {time.perf_counter() - tic:.0f} | {np.mean(losses[-a.eval_every:]):.3f} | "
                  + " | ".join(f"{p:.2f} / {z:.2f}" for p, z in e.values()) + " |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
