"""Does the model's vision tower see the road? The vision probe (`model.modeling.VisionProbe`, a
stage-1 head that reads only the image tokens) on held-out samples: its errors with the real camera
images, with flat grey images, and two baselines that use no image at all.

- bearing: |error| of the path's bearing at 5/10/20/30/40 m of arc length [deg] (only where the
  path is that long); baseline "straight" = the road goes straight ahead (bearing 0).
- speed: |error| of the mean speed from t0 to 1/2/4/6.4 s [m/s]; baseline "hold" = the last
  history step's speed (this baseline reads the motion history, which the probe cannot).

Two controls: flat grey images (out of distribution, so they overstate the use of the pixels) and
"swapped" images (each sample gets the cameras of the next sample in its batch, another clip: a
probe that only learned the average road scores the same with them). The control − real
differences carry 95 % bootstrap intervals over clips (samples of one clip are correlated).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/vision_probe_paired.py CKPT --data DIR [--samples 300]
       [--threads 2]   (DIR: a dataset the model was not trained on, e.g. held-out `standard` clips)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from openloop_paired import clip_bootstrap  # noqa: E402

from cordillera.data.dataset import PaiDataset  # noqa: E402
from cordillera.data.samples import HISTORY_OFFSETS_US  # noqa: E402
from cordillera.model.modeling import CordilleraVLA, vision_probe_targets, vision_probe_units  # noqa: E402
from cordillera.model.processor import EGO_FUTURE_XYZ, EGO_HISTORY_XYZ, PIXEL_VALUES, VLAProcessor  # noqa: E402
from cordillera.model.tokenizer import load_tokenizer  # noqa: E402
from cordillera.train import loop  # noqa: E402
from cordillera.train.config import EvalSettings  # noqa: E402
from cordillera.train.data import CLIP_IDS, PROMPT_BATCH, Collate  # noqa: E402


CONTROLS = ("grey", "swapped")


def probe_errors(checkpoint: str, data_dir: str, n: int) -> dict[str, np.ndarray | list]:
    """Per-sample mean |error| (bearing deg over the valid arc lengths, NaN when none; speed m/s)
    for the probe on real and on grey images and for the no-image baselines, plus the clip ids."""
    vla = CordilleraVLA.from_pretrained(checkpoint).eval()
    if vla.model.vision_probe is None:
        raise SystemExit(f"{checkpoint}: the model has no vision probe (trained with vision_probe_weight = 0)")
    inp = vla.cfg.inputs
    ds = PaiDataset(data_dir, image_hw=(inp.image_height, inp.image_width), cameras=inp.cameras, per="event")
    collate = Collate(VLAProcessor(vla.cfg, load_tokenizer(vla.cfg, checkpoint)), inp.use_coc, with_prompt=True)
    batches = loop.val_batches_fn(ds, collate, EvalSettings(num_samples=n, batch_size=8))
    dt_s = (HISTORY_OFFSETS_US[-1] - HISTORY_OFFSETS_US[-2]) / 1e6
    cols: dict[str, list] = {f"{w}_{c}": [] for w in ("bearing", "speed") for c in ("real", *CONTROLS, "base")}
    cols["clips"] = []
    with torch.no_grad():
        for b in batches():
            target, valid = vision_probe_targets(b[EGO_FUTURE_XYZ])
            tb, ts = vision_probe_units(target)
            ok = valid[:, : tb.shape[1]]
            prompt = b[PROMPT_BATCH]
            px = prompt[PIXEL_VALUES]  # (B · rows per sample, patch): every sample has the same cameras
            grey = {**prompt, PIXEL_VALUES: torch.zeros_like(px)}  # the normalisation mean
            swapped = {**prompt, PIXEL_VALUES: px.roll(-(px.shape[0] // tb.shape[0]), dims=0)}
            hist = b[EGO_HISTORY_XYZ]
            v0 = (hist[:, -1, :2] - hist[:, -2, :2]).norm(dim=-1, keepdim=True) / dt_s  # (B, 1) m/s
            for name, (pb, ps) in (("real", vla.read_road(prompt)), ("grey", vla.read_road(grey)),
                                   ("swapped", vla.read_road(swapped)),
                                   ("base", (torch.zeros_like(tb), v0.expand_as(ts)))):  # fmt: skip
                cols[f"bearing_{name}"].append(torch.where(ok, (pb - tb).abs(), torch.nan).nanmean(1).rad2deg().numpy())
                cols[f"speed_{name}"].append((ps - ts).abs().mean(1).numpy())
            cols["clips"] += list(b[CLIP_IDS])
    return {k: (v if k == "clips" else np.concatenate(v)) for k, v in cols.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tic = time.perf_counter()
    r = probe_errors(a.checkpoint, a.data, a.samples)
    clips = r["clips"]
    print(f"{a.checkpoint} on {a.data}: {len(clips)} samples of {len(set(clips))} clips "
          f"({time.perf_counter() - tic:.0f} s)\n")  # fmt: skip
    print("| target | probe, real images | " + " | ".join(f"{c} images: MAE, − real [95 % CI, clips]" for c in CONTROLS)
          + " | no-image baseline |")  # fmt: skip
    print("|---|---:|" + "---|" * len(CONTROLS) + "---:|")
    for what, unit, base in (("bearing", "deg", "straight ahead"), ("speed", "m/s", "hold speed")):
        real, bl = r[f"{what}_real"], r[f"{what}_base"]
        keep = np.isfinite(real)
        kept_clips = [c for c, k in zip(clips, keep) if k]
        diffs = []
        for c in CONTROLS:
            ctl = r[f"{what}_{c}"][keep]
            lo, hi = clip_bootstrap(real[keep], ctl, kept_clips)
            diffs.append(f"{ctl.mean():.2f}: {(ctl - real[keep]).mean():+.2f} [{lo:+.2f}, {hi:+.2f}]")
        print(f"| {what} MAE [{unit}] (n={int(keep.sum())}) | {real[keep].mean():.2f} | " + " | ".join(diffs)
              + f" | {base} {bl[keep].mean():.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
