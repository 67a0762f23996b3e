"""Does the model's vision tower see the road? The vision probe (`model.modeling.VisionProbe`, a
stage-1 head that reads only the image tokens), or a model's stage-2 lane reader (`LaneReader`,
what its action expert receives), on held-out samples: its errors reading the ego's
lane (`train.data.LaneAhead`: lateral offset from the lane centre [m], heading relative to the lane
[deg], bearings of the lane centre 10–40 m ahead [deg]) with the real camera images, two controls,
and the no-image baseline "centred and straight" (all zeros).

Controls: flat grey images (out of distribution, so they overstate the use of the pixels) and
"swapped" images (each sample gets the cameras of another sample of its batch from another clip,
`openloop_paired.swapped_cameras`: a probe that only learned the average road scores the same with
them). The control − real
differences carry 95 % bootstrap intervals over clips (samples of one clip are correlated).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/vision_probe_paired.py CKPT --data DIR [--samples 300]
       [--threads 2]   (DIR: simulated clips the model was not trained on, e.g. held-out `standard` clips)
"""

# make bench: skip — needs checkpoints or data given as arguments (see Usage above)
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from openloop_paired import swapped_cameras  # noqa: E402

from cordillera.data.dataset import PaiDataset  # noqa: E402
from cordillera.model.modeling import LANE_AHEAD, LANE_AHEAD_VALID, LEAD_FIELDS, CordilleraVLA  # noqa: E402
from cordillera.model.processor import PIXEL_VALUES, VLAProcessor  # noqa: E402
from cordillera.model.tokenizer import load_tokenizer  # noqa: E402
from cordillera.train import loop  # noqa: E402
from cordillera.train.config import EvalSettings  # noqa: E402
from cordillera.train.data import CLIP_IDS, PROMPT_BATCH, Collate, LaneAhead  # noqa: E402
from cordillera.train.evaluate import PROBE_GROUPS, probe_group_errors, sample_mean_difference_ci  # noqa: E402

CONDITIONS = ("real", "grey", "swapped", "zero")


def probe_errors(checkpoint: str, data_dir: str, n: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per-sample mean |error| per `PROBE_GROUPS` group (NaN where no target is valid) for each of
    `CONDITIONS` ("zero" = the no-image baseline), keyed "group/condition"; and the clip ids."""
    vla = CordilleraVLA.from_pretrained(checkpoint).eval()
    fields = vla.road_fields()
    if fields is None:
        raise SystemExit(f"{checkpoint}: the model has no vision probe or lane reader (vision_probe_weight and "
                         f"lane_reader_weight 0)")  # fmt: skip
    inp = vla.cfg.inputs
    ds = PaiDataset(data_dir, image_hw=(inp.image_height, inp.image_width), cameras=inp.cameras, per="event")
    collate = Collate(VLAProcessor(vla.cfg, load_tokenizer(vla.cfg, checkpoint)), inp.use_coc, with_prompt=True,
                      lane_ahead=LaneAhead(ds.reader, lead=LEAD_FIELDS[0] in fields))  # fmt: skip
    batches = loop.val_batches_fn(ds, collate, EvalSettings(num_samples=n, batch_size=8))
    out: dict[str, list] = {f"{g}/{c}": [] for g, _, _ in PROBE_GROUPS for c in CONDITIONS}
    clips: list[str] = []
    with torch.no_grad():
        for b in batches():
            target, valid = b[LANE_AHEAD], b[LANE_AHEAD_VALID]
            prompt = b[PROMPT_BATCH]
            px = prompt[PIXEL_VALUES]
            reads = {"real": vla.read_road(prompt),
                     "grey": vla.read_road({**prompt, PIXEL_VALUES: torch.zeros_like(px)}),  # normalisation mean
                     "swapped": vla.read_road({**prompt, PIXEL_VALUES: swapped_cameras(px, list(b[CLIP_IDS]))[0]}),
                     "zero": torch.zeros_like(target)}  # fmt: skip
            for c, pred in reads.items():
                for g, err in probe_group_errors(pred, target, valid).items():
                    out[f"{g}/{c}"].append(err)
            clips += list(b[CLIP_IDS])
    return {k: np.concatenate(v) for k, v in out.items()}, clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tic = time.perf_counter()
    r, clips = probe_errors(a.checkpoint, a.data, a.samples)
    print(f"{a.checkpoint} on {a.data}: {len(clips)} samples of {len(set(clips))} clips "
          f"({time.perf_counter() - tic:.0f} s)\n")  # fmt: skip
    print("| lane quantity (MAE) | probe, real images | grey images: MAE, − real [95 % CI, clips] | "
          "swapped images: MAE, − real [95 % CI, clips] | no image: centred and straight |")
    print("|---|---:|---|---|---:|")
    for g, _, _ in PROBE_GROUPS:
        real = r[f"{g}/real"]
        keep = np.isfinite(real)
        if not keep.any():  # a field the model does not read (the lead gap of a lane-only reader)
            continue
        kept = [c for c, k in zip(clips, keep) if k]
        cells = []
        for c in ("grey", "swapped"):
            ctl = r[f"{g}/{c}"][keep]
            lo, hi = sample_mean_difference_ci(real[keep], ctl, kept)
            cells.append(f"{ctl.mean():.2f}: {(ctl - real[keep]).mean():+.2f} [{lo:+.2f}, {hi:+.2f}]")
        print(f"| {g} (n={int(keep.sum())}) | {real[keep].mean():.2f} | " + " | ".join(cells)
              + f" | {r[f'{g}/zero'][keep].mean():.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
