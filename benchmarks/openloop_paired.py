"""Two checkpoints on the same held-out samples: per-sample minADE₆ and a bootstrap CI of the
paired difference (is a retrain / an ablation different beyond the evaluation's sampling noise?).

Both models see the same 200 (``--samples``) samples of one dataset, spread as in
``train.loop.val_batches_fn``, with the recipe's evaluation settings (``configs/train_nano.yaml``
stage 2: K = 6, CoC sampled at temperature 0.6 / top-p 0.98, 10 flow steps) and the same noise seed:
by default the training split's validation samples (``train.data.split_clips``: only fair when both
models were trained on that same split), with ``--all`` every sample of a dataset neither model
was trained on (e.g. clips of the held-out ``standard`` suite). The bootstrap resamples clips
(samples of one clip are correlated).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/openloop_paired.py CKPT_A CKPT_B --data DIR
       [--all] [--blind-b | --swap-b] [--samples 200] [--threads 2]
       (CKPT_A = CKPT_B with --blind-b / --swap-b: the model with real vs flat-grey / another clip's
       camera images)
"""

# make bench: skip — needs checkpoints or data given as arguments (see Usage above)
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cordillera.metrics.openloop import min_ade
from cordillera.model.modeling import CordilleraVLA
from cordillera.model.processor import EGO_FUTURE_XYZ, PIXEL_VALUES, VLAProcessor
from cordillera.model.tokenizer import load_tokenizer
from cordillera.train import loop
from cordillera.train.config import NanoConfig, load_train_config
from cordillera.train.data import CLIP_IDS, PROMPT_BATCH, Collate
from cordillera.train.evaluate import sample_mean_difference_ci


CAMERA_CONDITIONS = ("real", "grey", "swapped")


def swapped_cameras(pixel_values: torch.Tensor, clip_ids: list[str]) -> tuple[torch.Tensor, int]:
    """Every sample of a batch gets the camera images of another sample, from another clip where
    the batch allows: the rows are rolled by the smallest whole-sample shift that moves every sample
    to a different clip (samples of one clip sit next to each other), else by half the batch.
    Returns (pixel values, number of samples that still see their own clip's images)."""
    n = len(clip_ids)
    rows = pixel_values.shape[0] // n  # every sample has the same cameras and frames
    shift = next((k for k in range(1, n) if all(clip_ids[i] != clip_ids[(i + k) % n] for i in range(n))), n // 2)
    same = sum(clip_ids[i] == clip_ids[(i + shift) % n] for i in range(n)) if n > 1 else n
    return pixel_values.roll(-shift * rows, dims=0), same


def camera_prompt(batch: dict, cameras: str) -> tuple[dict, int]:
    """The batch's prompt with its cameras as `cameras` says ("real", "grey": every image flat grey,
    the normalisation mean; "swapped": `swapped_cameras`) and how many samples kept their own images."""
    if cameras not in CAMERA_CONDITIONS:
        raise ValueError(f"cameras must be one of {CAMERA_CONDITIONS}, got {cameras!r}")
    prompt = batch[PROMPT_BATCH]
    if cameras == "grey":
        return {**prompt, PIXEL_VALUES: torch.zeros_like(prompt[PIXEL_VALUES])}, 0
    if cameras == "swapped":
        px, same = swapped_cameras(prompt[PIXEL_VALUES], list(batch[CLIP_IDS]))
        return {**prompt, PIXEL_VALUES: px}, same
    return prompt, 0


def heldout_batches(checkpoint: str, data_dir: str, n: int, all_clips: bool = False):
    """(model in eval mode, the recipe's stage-2 evaluation settings for `n` samples, a callable
    yielding the same held-out batches each time): the validation split of `data_dir` as the
    recipe splits it, or with `all_clips` every sample of it."""
    cfg = load_train_config("train_nano", NanoConfig, [])
    s2 = cfg.stage2.model_copy(update={"use_coc": True, "data": cfg.stage2.data.model_copy(
        update={"dir": data_dir, "val_fraction": cfg.val_fraction})})
    ev = s2.eval.model_copy(update={"num_samples": n})
    vla = CordilleraVLA.from_pretrained(checkpoint).eval()
    tok = load_tokenizer(vla.cfg, checkpoint)
    if all_clips:
        from cordillera.data.dataset import PaiDataset

        inp = vla.cfg.inputs
        held_out = PaiDataset(data_dir, image_hw=(inp.image_height, inp.image_width), cameras=inp.cameras,
                              per=s2.data.per)
    else:
        held_out = loop.open_data(s2, vla.cfg).val
    collate = Collate(VLAProcessor(vla.cfg, tok), vla.cfg.inputs.use_coc, nav_dropout=0.0 if s2.data.nav else 1.0,
                      with_prompt=True)
    return vla, ev, loop.val_batches_fn(held_out, collate, ev)


def per_sample_min_ade(checkpoint: str, data_dir: str, n: int, seed: int = 1234, all_clips: bool = False,
                       cameras: str = "real") -> tuple[np.ndarray, np.ndarray, list[str]]:  # fmt: skip
    """(minADE₆ per sample, lateral end bias per sample, clip id per sample) on `n` samples spread over
    the held-out set; the bias is the K samples' mean y(6.4 s) − GT y(6.4 s) in the t0 rig frame
    [m, left +] — a model that steers one way in closed loop shows it here first;
    `cameras`: "real", "grey" (every image flat grey, the normalisation mean) or "swapped"
    (`swapped_cameras`: another clip's images)."""
    if cameras not in CAMERA_CONDITIONS:
        raise ValueError(f"cameras must be one of {CAMERA_CONDITIONS}, got {cameras!r}")
    vla, ev, batches = heldout_batches(checkpoint, data_dir, n, all_clips)
    g = torch.Generator().manual_seed(seed)
    out, lateral, clips, own = [], [], [], 0
    with torch.no_grad():
        for b in batches():
            prompt, same = camera_prompt(b, cameras)
            own += same
            s = vla.sample_trajectories(prompt, num_samples=ev.k, temperature=ev.temperature, top_p=ev.top_p,
                                        flow_steps=ev.flow_steps, fast=not vla.cfg.inputs.use_coc,
                                        max_new_tokens=ev.max_new_tokens, generator=g)
            out.append(min_ade(s.xyz, b[EGO_FUTURE_XYZ], reduce=False)["min_ade"].numpy())
            lateral.append((s.xyz[:, :, -1, 1] - b[EGO_FUTURE_XYZ][:, None, -1, 1]).mean(1).double().numpy())
            clips += list(b[CLIP_IDS])
    if own:
        print(f"  ({own} of {len(clips)} samples kept their own clip's images: batches of one clip)")
    return np.concatenate(out), np.concatenate(lateral), clips


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--data", required=True)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--all", action="store_true", help="every sample of DATA (a set neither model trained on)")
    ap.add_argument("--blind-b", action="store_true",
                    help="B sees flat grey cameras (with B = A: does the model use its images at all?)")
    ap.add_argument("--swap-b", action="store_true",
                    help="B sees another clip's cameras (with B = A: does it use *this* scene's images? grey "
                         "images are out of distribution for a vision tower that learned features)")
    a = ap.parse_args(argv)
    if a.blind_b and a.swap_b:
        ap.error("--blind-b and --swap-b exclude each other")
    torch.set_num_threads(a.threads)
    b_cams = "grey" if a.blind_b else "swapped" if a.swap_b else "real"
    runs = [(a.a, "real", a.a), (a.b, b_cams, a.b + ("" if b_cams == "real" else f" ({b_cams} cameras)"))]
    vals, clips = [], []
    print("| checkpoint | minADE₆ [m] | lateral end bias [m, left +] [95 % CI, clips] | samples | clips | seconds |\n"
          "|---|---:|---|---:|---:|---:|")
    for ck, cams, name in runs:
        t = time.time()
        v, lat, c = per_sample_min_ade(ck, a.data, a.samples, all_clips=a.all, cameras=cams)
        vals.append(v)
        clips.append(c)
        lo, hi = sample_mean_difference_ci(np.zeros_like(lat), lat, c)
        print(f"| {name} | {v.mean():.3f} | {lat.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | {len(v)} | {len(set(c))} | "
              f"{time.time() - t:.0f} |", flush=True)  # fmt: skip
    if clips[0] != clips[1]:
        raise SystemExit("the two checkpoints saw different samples (different splits?) — nothing to pair")
    x, y = vals
    lo, hi = sample_mean_difference_ci(x, y, clips[0])
    print(f"\n{runs[1][2]} − {a.a}: {y.mean() - x.mean():+.3f} m [{lo:+.3f}, {hi:+.3f}] "
          f"(95 % bootstrap over clips), {100 * (y.mean() / x.mean() - 1):+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
