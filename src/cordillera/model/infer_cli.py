"""``cordillera infer``: one data sample through the model — CoC on stdout, a PNG with the camera
grid (last frame of each camera) and the K predicted vs the ground-truth trajectories.

    cordillera infer --checkpoint checkpoints/nano --clip DATA_DIR/CLIP_ID --t0 5100000 --out infer.png

The sample is assembled exactly as for training (:func:`cordillera.data.samples.build_sample`,
images resized to the model's input size); the ground-truth future and the CoC label are removed
from the model's inputs (the processor would otherwise append them as training targets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cordillera.data import keys as K
from cordillera.model.inference import PlanResult, Planner

__all__ = ["INPUT_KEYS", "model_inputs", "predict", "load_clip_sample", "plot_prediction", "main_infer"]

# What the model may see of a sample (spec/alpamayo_model.md §5.1: images + ego history [+ nav]).
INPUT_KEYS = (K.IMAGE_FRAMES, K.CAMERA_INDICES, K.EGO_HISTORY_XYZ, K.EGO_HISTORY_ROT, "nav_text")


def model_inputs(sample: dict) -> dict:
    """The inference view of a data sample: no future, no CoC label."""
    return {k: sample[k] for k in INPUT_KEYS if k in sample}


def predict(planner: Planner, sample: dict, num_samples: int = 6, seed: int = 0, fast: bool = False,
            max_new_tokens: int | None = None, flow_steps: int = 10) -> PlanResult:
    """K trajectories (+ CoC) for one data sample, seeded."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.inference_mode():
        return planner.plan(model_inputs(sample), num_samples=num_samples, fast=fast, generator=gen,
                            max_new_tokens=max_new_tokens, flow_steps=flow_steps)


def load_clip_sample(clip: str | Path, t0_us: int, planner: Planner) -> tuple[dict, object, str]:
    """(sample at t0 with images at the model's size, reader, clip id) for ``DATA_DIR/CLIP_ID``."""
    from cordillera.data.reader import PaiReader
    from cordillera.data.samples import build_sample

    clip = Path(clip)
    root, clip_id = clip.parent, clip.name
    reader = PaiReader(root)
    if clip_id not in reader.clip_index.index:
        raise ValueError(f"clip {clip_id!r} not in {root} (clips: {list(reader.clip_index.index)[:5]} ...)")
    inp = planner.model.cfg.inputs
    sample = build_sample(reader, clip_id, int(t0_us), cameras=inp.cameras, image_hw=(inp.image_height, inp.image_width))
    return sample, reader, clip_id


def plot_prediction(out: str | Path, camera_images: dict[str, np.ndarray], hist_xyz, gt_xyz, pred_xyz,
                    coc: str | None = None, title: str = "") -> Path:
    """PNG: cameras in a row (last frame) above a top-down plot of history, ground truth and the K
    predictions in the rig frame at t0 (x forward is up, y left is left)."""
    import matplotlib.ticker

    from cordillera.model.configuration import CAMERA_DISPLAY_NAMES
    from cordillera.report.mpl import pyplot

    plt = pyplot()

    n = max(len(camera_images), 1)
    fig = plt.figure(figsize=(4 * n, 9.5))
    gs = fig.add_gridspec(2, n, height_ratios=[1, 2.2])
    for i, (cam, img) in enumerate(camera_images.items()):
        ax = fig.add_subplot(gs[0, i])
        ax.imshow(img)
        ax.set_title(CAMERA_DISPLAY_NAMES.get(cam, cam), fontsize=10)
        ax.axis("off")
    ax = fig.add_subplot(gs[1, :])
    h, g, p = np.asarray(hist_xyz), (None if gt_xyz is None else np.asarray(gt_xyz)), np.asarray(pred_xyz)
    ax.plot(-h[:, 1], h[:, 0], "o-", color="0.5", ms=3, label="history (1.5 s)")
    if g is not None:
        ax.plot(-g[:, 1], g[:, 0], "-", color="k", lw=2.5, label="ground truth (6.4 s)")
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, len(p)))
    for k, traj in enumerate(p):
        ax.plot(-traj[:, 1], traj[:, 0], "-", color=colors[k], lw=1.5, alpha=0.9, label=f"sample {k}")
    ax.plot([0], [0], "r^", ms=10, label="ego at t0")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("← left   lateral y [m] (rig frame at t0)   right →")
    ax.set_ylabel("forward x [m]")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    # the horizontal axis is −y (left of the ego drawn on the left); label it with y itself
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{-v + 0.0:g}"))
    if coc:
        wrapped = "\n".join(coc[i:i + 160] for i in range(0, min(len(coc), 480), 160))
        ax.set_title(f"CoC (sample 0): {wrapped}", fontsize=9, loc="left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main_infer(checkpoint: str | Path, clip: str | Path, t0: int, out: str | Path = "infer.png",
               num_samples: int = 6, seed: int = 0, fast: bool = False, dtype: str = "float32") -> dict:
    """Load, predict, print, plot. Returns {coc, min_ade, ade, png, xyz}.

    `dtype` "bfloat16" runs the weights in bf16 (opt-in reduced precision, outputs stay fp32).
    """
    from rich.console import Console

    from cordillera.metrics.openloop import min_ade

    console = Console()
    planner = Planner.from_pretrained(checkpoint, dtype=dtype)
    sample, reader, clip_id = load_clip_sample(clip, t0, planner)
    res = predict(planner, sample, num_samples=num_samples, seed=seed, fast=fast)
    pred = res.xyz[0].double().numpy()  # (K, 64, 3)
    gt = np.asarray(sample[K.EGO_FUTURE_XYZ], dtype=np.float64)
    m = min_ade(pred[None], gt[None])
    cocs = res.coc[0]
    console.print(f"[bold]{clip_id}[/bold] t0={int(t0)} µs · {planner.model.cfg.name} · K={num_samples} · "
                  f"{str(planner.model.dtype).removeprefix('torch.')}")
    for k, c in enumerate(cocs):
        console.print(f"CoC[{k}]: {c or '(none)'}", markup=False)
    if sample.get(K.COT_KEY):
        console.print(f"label  : {sample[K.COT_KEY]}", markup=False)
    console.print(f"minADE_{num_samples} {m['min_ade']:.2f} m · ADE {m['ade']:.2f} m · "
                  f"timings {', '.join(f'{k} {v:.0f}' for k, v in res.timings_ms.items())} ms")
    # display frames at the stored resolution (the model saw them resized)
    images = {}
    for cam in sample[K.CAMERA_NAMES_KEY]:
        fr, _ = reader.frames_at(clip_id, cam, [int(t0)])
        images[cam] = fr[0]
    png = plot_prediction(out, images, sample[K.EGO_HISTORY_XYZ], gt, pred, cocs[0],
                          title=f"{clip_id} · t0 = {int(t0) / 1e6:.1f} s · minADE_{num_samples} = {m['min_ade']:.2f} m")
    console.print(f"wrote {png}")
    return {"coc": cocs, "min_ade": m["min_ade"], "ade": m["ade"], "png": str(png), "xyz": pred}
