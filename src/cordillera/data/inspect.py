"""`cordillera data inspect DIR`: a summary table of a dataset and a contact sheet of one sample.

The contact sheet shows the sample's cameras (rows) × 4 frames (t0 − 0.3 … t0, columns) and a
bird's-eye plot of the 16 history poses and the 64 future poses in the rig frame at t0 (x forward
drawn upwards, y left drawn leftwards), titled with the clip, t0 and the CoC text.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from cordillera.data import keys as K
from cordillera.data.reader import PaiReader
from cordillera.data.samples import build_sample, sample_points, sort_cameras
from cordillera.render.rig import DEFAULT_MODEL_CAMERAS

__all__ = ["summarize", "pick_sample", "contact_sheet", "main_inspect"]


def summarize(reader: PaiReader) -> dict:
    clips = reader.clips(clip_is_valid=[True, False]) if K.CLIP_IS_VALID in reader.clip_index.columns else reader.clips()
    t = reader.table.loc[clips]
    ends = [reader.end_timestamp(c) for c in clips]
    n_events = sum(len(reader.reasoning_events(c)) for c in clips)
    return {
        "clips": len(clips),
        "chunks": int(t[K.CHUNK].nunique()) if len(t) else 0,
        "cameras": reader.cameras(),
        "families": dict(Counter(t[K.FAMILY])) if K.FAMILY in t.columns else {},
        "splits": dict(Counter(t[K.SPLIT])) if K.SPLIT in t.columns else {},
        "duration_s": float(np.sum(ends)) * 1e-6,
        "events": n_events,
        "clips_with_events": sum(1 for c in clips if reader.reasoning_events(c)),
    }


def pick_sample(reader: PaiReader) -> tuple[str, int, str | None] | None:
    """The first (clip, t0, cot) with a reasoning event, else the first clip's default keyframe."""
    for default in (False, True):
        for cid in reader.clips():
            pts = sample_points(reader, cid, use_default_keyframe=default)
            if pts:
                return cid, pts[0][0], pts[0][1]
    return None


def contact_sheet(reader: PaiReader, clip_id: str, t0_us: int, out_png, cot: str | None = None,
                  image_hw=(160, 288)) -> Path:
    from cordillera.report.mpl import pyplot

    plt = pyplot()

    cams = sort_cameras(reader.cameras())
    default4 = [c for c in cams if c in DEFAULT_MODEL_CAMERAS]
    cams = default4 or cams[:4]
    s = build_sample(reader, clip_id, t0_us, cameras=cams, image_hw=image_hw, cot=cot)
    imgs = s[K.IMAGE_FRAMES]  # (N, 4, 3, H, W)
    n = imgs.shape[0]
    fig = plt.figure(figsize=(4 * 2.6 + 4, max(n, 2) * 1.6 + 0.8))
    gs = fig.add_gridspec(max(n, 2), 5, width_ratios=[1, 1, 1, 1, 1.4])
    for i in range(n):
        for j in range(4):
            ax = fig.add_subplot(gs[i, j])
            ax.imshow(imgs[i, j].transpose(1, 2, 0))
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t0{(j - 3) * 0.1:+.1f} s", fontsize=8)
            if j == 0:
                ax.set_ylabel(s[K.CAMERA_NAMES_KEY][i].replace("camera_", ""), fontsize=7)
    ax = fig.add_subplot(gs[:, 4])
    h, f = s[K.EGO_HISTORY_XYZ], s[K.EGO_FUTURE_XYZ]
    ax.plot(-h[:, 1], h[:, 0], ".-", color="tab:blue", label="history (16)")
    ax.plot(-f[:, 1], f[:, 0], ".-", color="tab:green", label="future (64)")
    ax.plot([0], [0], "k^", ms=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("-y (right) [m]"), ax.set_ylabel("x (forward) [m]")
    ax.grid(alpha=0.3), ax.legend(fontsize=7, loc="lower right")
    title = f"{clip_id}  t0 = {t0_us / 1e6:.1f} s"
    if s[K.COT_KEY]:
        title += f"\nCoC: {s[K.COT_KEY]}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def main_inspect(path, out_png=None) -> dict:
    """CLI entry (`cordillera data inspect DIR`): print the summary, write ``DIR/contact_sheet.png``."""
    from rich.console import Console
    from rich.table import Table

    reader = PaiReader(path)
    summ = summarize(reader)
    con = Console()
    t = Table(title=f"PhysicalAI-AV dataset {path}")
    t.add_column("item")
    t.add_column("value")
    t.add_row("clips", str(summ["clips"]))
    t.add_row("chunks", str(summ["chunks"]))
    t.add_row("cameras", ", ".join(c.replace("camera_", "") for c in summ["cameras"]))
    t.add_row("duration", f"{summ['duration_s']:.0f} s ({summ['duration_s'] / 3600:.2f} h)")
    t.add_row("reasoning events", f"{summ['events']} in {summ['clips_with_events']} clips")
    t.add_row("splits", ", ".join(f"{k}: {v}" for k, v in sorted(summ["splits"].items())))
    con.print(t)
    if summ["families"]:
        ft = Table(title="families")
        ft.add_column("family")
        ft.add_column("clips", justify="right")
        for k, v in sorted(summ["families"].items()):
            ft.add_row(str(k), str(v))
        con.print(ft)
    pick = pick_sample(reader)
    if pick is None:
        con.print("[yellow]no clip long enough for a sample (t0 ≥ 1.6 s and t0 + 6.4 s ≤ end): no contact sheet")
        summ["contact_sheet"] = None
    else:
        png = contact_sheet(reader, *pick[:2], out_png or Path(path) / "contact_sheet.png", cot=pick[2])
        con.print(f"contact sheet: {png}  (clip {pick[0]}, t0 {pick[1] / 1e6:.1f} s)")
        summ["contact_sheet"] = str(png)
    return summ
