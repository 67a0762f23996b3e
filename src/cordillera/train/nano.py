"""`cordillera train nano` / `make train-nano`: the whole nano pipeline in one command.

  (a) data: `cordillera.data.generate` renders expert rollouts of the `train` suite at a reduced
      resolution (the nano model reads 96×160), then `reasoning.cli.label_dataset` (`cordillera
      label DIR --overwrite --every 1`) re-drives each clip's scenario without cameras (same
      scenario, policy and seed → the same rollout; checked against the stored egomotion) and has
      the reasoning labeler compose a CoC at every t0 of a 1 s grid (`generate.t0_start_us` … clip
      end − 6.4 s) as well as at its keyframes, so every sample carries reasoning;
  (b) train/val split by scenario (family, seed);
  (c) stage 1 (CE on CoC + discrete trajectory tokens);
  (d) stage 2 (flow-matching expert on the frozen stage-1 backbone; `stage1_from: DIR` skips (c) and
      trains the expert on an existing stage-1 checkpoint — for expert / data ablations);
  (e) open-loop evaluation on the validation split (minADE_6 family, CoC decision accuracy);
  (f) export to `out` (config.json, model.safetensors, tokenizer, README.md with the command,
      data size, wall time and metrics, train_log.csv); with `ablation: true` the same recipe
      without CoC goes to `ablation_out`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from cordillera import code_version
from cordillera.train.config import NanoConfig, TrainConfig, load_train_config

__all__ = ["train_variant", "open_loop_eval", "data_code_versions", "write_readme", "run", "main"]

# ----------------------------------------------------------------------------------------------
def _with(m, **changes):
    return m.model_copy(update=changes)


def train_variant(cfg: NanoConfig, data_dir: Path, use_coc: bool) -> dict:
    """Stage 1 (unless `cfg.stage1_from`) then stage 2 for one variant; returns the two FitResults
    and the run dirs."""
    from cordillera.train import loop, stage1, stage2

    tag = "coc" if use_coc else "traj-only"
    run = Path(cfg.work_dir) / tag
    s1 = cfg.stage1
    # the ablation has no CoC, so no decisions for a decision head to read
    s1 = _with(s1, use_coc=use_coc, decision_head_weight=s1.decision_head_weight if use_coc else 0.0,
               data=_with(s1.data, dir=str(data_dir), val_fraction=cfg.val_fraction),
               checkpoint=_with(s1.checkpoint, out_dir=str(run / "stage1")))  # fmt: skip
    if cfg.stage1_from:  # reuse a trained backbone: only the expert trains (stage2.build_model checks use_coc)
        if not (Path(cfg.stage1_from) / "config.json").is_file():
            raise ValueError(f"stage1_from {cfg.stage1_from}: not a checkpoint directory (no config.json)")
        r1 = loop.FitResult(step=0, final_dir=Path(cfg.stage1_from))
    else:
        r1 = stage1.train(s1)
    s2 = cfg.stage2
    s2 = _with(s2, use_coc=use_coc, init_from=str(r1.final_dir),
               data=_with(s2.data, dir=str(data_dir), val_fraction=cfg.val_fraction),
               checkpoint=_with(s2.checkpoint, out_dir=str(run / "stage2")))  # fmt: skip
    r2 = stage2.train(s2)
    return {"stage1": r1, "stage2": r2, "run_dir": run, "stage1_cfg": s1, "stage2_cfg": s2}


def open_loop_eval(checkpoint: str | Path, cfg: TrainConfig, n_samples: int) -> dict:
    """minADE_6 family + CoC decision accuracy of a checkpoint on `n_samples` validation samples."""
    from cordillera.model.modeling import CordilleraVLA
    from cordillera.model.processor import VLAProcessor
    from cordillera.model.tokenizer import load_tokenizer
    from cordillera.train import loop
    from cordillera.train.data import Collate

    vla = CordilleraVLA.from_pretrained(checkpoint).eval()
    tok = load_tokenizer(vla.cfg, checkpoint)
    data = loop.open_data(cfg, vla.cfg)
    ev = _with(cfg.eval, num_samples=n_samples, coc_samples=n_samples)
    collate = Collate(VLAProcessor(vla.cfg, tok), cfg.use_coc, nav_dropout=0.0 if cfg.data.nav else 1.0,
                      with_prompt=True)
    batches = loop.val_batches_fn(data.val, collate, ev)
    if batches is None:
        return {}
    return loop.evaluate(vla, batches(), "stage2", None, ev, cfg.use_coc, tok)


def _merge_logs(run_dir: Path, out: Path, stages=("stage1", "stage2")) -> int:
    rows, cols = [], ["stage"]
    for stage in stages:
        p = run_dir / stage / "metrics.csv"
        if not p.exists():
            continue
        with open(p) as f:
            for r in csv.DictReader(f):
                rows.append({"stage": stage, **r})
                cols += [k for k in r if k not in cols]
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def _eval_line(info: dict) -> str:
    e = info["eval"]
    how = (f"CoC sampled from the prompt (temperature {e['temperature']:g}, top-p {e['top_p']:g})" if info["use_coc"]
           else "no CoC (the expert reads the prompt only)")
    return f"{e['samples']} validation samples (held-out scenario seeds), K = {e['k']}, {how}.\n"


def _per_stage(values) -> str:
    """"4649" for a number or stages that agree, "5818 (stage 1), 4649 (stage 2)" otherwise."""
    if not isinstance(values, dict):
        return f"{values:g}"
    if len(values) > 1 and len(set(values.values())) == 1:
        return f"{next(iter(values.values())):g}"
    return ", ".join(f"{v:g} ({k.replace('stage', 'stage ')})" for k, v in values.items())


def _resumed_note(r: dict | None) -> str:
    if not r:
        return ""
    return (f" (resumed at step {r['at_step']}; the loop's time over the processes that trained it, "
            f"{r['process_s'] / 60:.1f} min in this one)")


UNSTAMPED = "unknown (rendered before clips were stamped)"


def data_code_versions(metas: list[dict]) -> dict[str, int]:
    """Clips per `cordillera.code_version()` that rendered them, most first (clip metadata)."""
    from cordillera.data import keys as K

    counts = Counter(m.get(K.CODE_VERSION) if isinstance(m.get(K.CODE_VERSION), str) else UNSTAMPED for m in metas)
    return dict(counts.most_common())


def _provenance(info: dict) -> list[str]:
    if "code_version" not in info:  # a card written before provenance was recorded
        return []
    data = ", ".join(f"`{v}` ({n} clips)" for v, n in info["data_code_versions"].items())
    return ["## Provenance", "", f"- trained by cordillera `{info['code_version']}`",
            f"- data rendered by {data}", ""]


def write_readme(out: Path, info: dict) -> None:
    m = info["metrics"]
    lines = [
        f"# {info['name']}",
        "",
        f"cordillera VLA, preset `{info['preset']}` ({info['params']:,} parameters), "
        + (f"stage 2 trained on the stage-1 backbone `{info['stage1_from']}`" if info.get("stage1_from")
           else "trained from scratch")
        + f" on a {os.cpu_count()}-core CPU {'with' if info['use_coc'] else 'WITHOUT'} Chain-of-Causation reasoning.",
        "",
        "## Command",
        "",
        "```",
        info["command"],
        "```",
        "",
        "## Data",
        "",
        f"- `{info['data_dir']}`: {info['clips']} clips of the `{info['suite']}` suite, "
        f"{_per_stage(info['train_samples'])} training / {info['val_samples']} validation samples (split by scenario seed)",
        f"- CoC events: {info['events']} (dense t0 grid every {info['t0_every_s']:g} s)",
        *([f"- DART disturbances ({info.get('perturb_profile', 'push')}) on {info['perturb_fraction']:.0%} of the "
           "training clips (no t0 with one in its 6.4 s future; `sim/policies/perturbed.py`)"]
          if info.get("perturb_fraction") else []),
        *([f"- {info['handover_clips']} on-policy clips: `{info['handover_from'] or 'a VLA'}` drives until a handover, "
           "then the expert (`data/generate.py`, DAgger); t0s only where the expert drives the 6.4 s future"]
          if info.get("handover_clips") else []),
        *([f"- hard-sample draws ({_per_stage(info['hard_sample_weight'])}): a sample is drawn with probability ∝ "
           "1 + weight · (its future's distance from the history's own speed and turn rate) / mean "
           "(`data.hard_sample_weight`, `train.data.history_surprise_m`)"] if info.get("hard_sample_weight") else []),
        "",
        *_provenance(info),
        "## Wall time",
        "",
        *[f"- {k}: {v / 60:.1f} min{_resumed_note(info.get('resumed', {}).get(k))}" for k, v in info["wall_s"].items()],
        *(["- (a resumed run: the other lines count this process only)"] if info.get("resumed") else []),
        "",
        "## Final open-loop metrics (validation)",
        "",
        *([_eval_line(info)] if "eval" in info else []),
        "| metric | value |",
        "|---|---:|",
        *[f"| {k} | {v:.4g} |" for k, v in sorted(m.items())],
        "",
        "Training curves: `train_log.csv` (stage, step, train/* and val/* columns).",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def _export(final_dir: Path, out: Path, run_dir: Path, info: dict) -> None:
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(final_dir, tmp)
    # with stage1_from, a stage-1 log in the run dir is an older run's, not this model's
    _merge_logs(run_dir, tmp / "train_log.csv", ("stage2",) if info.get("stage1_from") else ("stage1", "stage2"))
    write_readme(tmp, info)
    (tmp / "train_info.json").write_text(json.dumps(info, indent=2, default=str))
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


def run(cfg: NanoConfig, command: str = "cordillera train nano") -> dict:
    from cordillera.data.reader import PaiReader
    from cordillera.train import loop

    wall: dict[str, float] = {}
    t_all = time.perf_counter()
    work = Path(cfg.work_dir)
    data_dir = work / "data"
    g = cfg.generate
    # (a) data
    tic = time.perf_counter()
    if not cfg.skip_generate:
        from cordillera.data.generate import generate

        rep = generate(g.suite, g.clips, data_dir, workers=g.workers, image_hw=(g.image_height, g.image_width),
                       perturb_fraction=g.perturb_fraction, perturb_profile=g.perturb_profile,
                       handover_from=g.handover_from, handover_fraction=g.handover_fraction,
                       label_every_us=g.t0_every_us, label_start_us=g.t0_start_us)
        if rep["failed"]:
            print(f"data: {len(rep['failed'])} scenarios failed and were skipped")
        wall["generate"] = time.perf_counter() - tic
        tic = time.perf_counter()
        from cordillera.reasoning.cli import label_dataset

        dens = label_dataset(data_dir, overwrite=True, every_us=g.t0_every_us, start_us=g.t0_start_us,
                             workers=g.workers or os.cpu_count() or 1)
        wall["coc labels"] = time.perf_counter() - tic
        print(f"data: {dens['events']} CoC events on {len(dens['labelled'])} clips "
              f"({len(dens['failed'])} kept their own)")
        for cid, why in list(dens["failed"].items())[:5]:
            print(f"  {cid}: {why}")
    reader = PaiReader(data_dir)
    clips = len(reader.clips())
    from cordillera.data.generate import clip_handover

    metas = [reader.metadata(c) for c in reader.clips()]
    on_policy = sum(clip_handover(m) is not None for m in metas)
    data_versions = data_code_versions(metas)
    if len(data_versions) > 1:
        print("data: clips rendered by more than one code version (a rerun keeps the clips already written): "
              + ", ".join(f"{v} ({n})" for v, n in data_versions.items()))
    events = sum(len(reader.reasoning_events(c)) for c in reader.clips())
    results = {}
    variants = ([True] if cfg.coc else []) + ([False] if cfg.ablation else [])
    for use_coc in variants:
        tic = time.perf_counter()
        res = train_variant(cfg, data_dir, use_coc)
        t_train = time.perf_counter() - tic
        tic = time.perf_counter()
        metrics = open_loop_eval(res["stage2"].final_dir, res["stage2_cfg"], cfg.eval_samples)
        t_eval = time.perf_counter() - tic
        # what each stage trained on (data.on_policy may leave the DAgger clips out of one of them)
        trained = {st: res[f"{st}_cfg"] for st in ("stage1", "stage2") if st == "stage2" or not cfg.stage1_from}
        opened, data = {}, {}  # one split per distinct data settings (the stages usually share them)
        for st, c in trained.items():
            key = c.data.model_dump_json()
            if key not in opened:
                opened[key] = loop.open_data(c, loop.model_config(c))
            data[st] = opened[key]
        n_train = {st: len(d.train) for st, d in data.items()}
        out = Path(cfg.out if use_coc else cfg.ablation_out)
        from cordillera.model.hf_config import CordilleraVLAConfig

        vcfg = CordilleraVLAConfig.from_pretrained(res["stage2"].final_dir).to_vla()
        from safetensors import safe_open

        with safe_open(str(Path(res["stage2"].final_dir) / "model.safetensors"), "pt") as f:
            params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
        info = {
            "name": out.name, "preset": vcfg.name, "params": params, "use_coc": use_coc, "command": command,
            "code_version": code_version(), "data_code_versions": data_versions,
            "data_dir": str(data_dir), "suite": g.suite, "clips": clips, "events": events,
            "t0_every_s": g.t0_every_us / 1e6, "train_samples": n_train, "val_samples": len(data["stage2"].val),
            "perturb_fraction": g.perturb_fraction, "perturb_profile": g.perturb_profile,
            "handover_from": g.handover_from,
            "handover_fraction": g.handover_fraction, "stage1_from": cfg.stage1_from,
            "handover_clips": on_policy if any(c.data.on_policy for c in trained.values()) else 0,
            "hard_sample_weight": {st: c.data.hard_sample_weight for st, c in trained.items()
                                   if c.data.hard_sample_weight},
            "wall_s": {**wall, **({} if cfg.stage1_from else {"stage 1": res["stage1"].seconds}),
                       "stage 2": res["stage2"].seconds,
                       "train (incl. set-up)": t_train, "open-loop eval": t_eval,
                       "total": time.perf_counter() - t_all},
            "resumed": {f"stage {i}": {"at_step": r.resumed_at, "process_s": r.process_seconds}
                        for i, r in ((1, res["stage1"]), (2, res["stage2"])) if r.resumed_at is not None},
            "stage1": {"steps": res["stage1"].step, "samples_per_s": res["stage1"].samples_per_s,
                       **res["stage1"].val_logs},
            "stage2": {"steps": res["stage2"].step, "samples_per_s": res["stage2"].samples_per_s},
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
            "eval": {"samples": cfg.eval_samples, "k": res["stage2_cfg"].eval.k,
                     "temperature": res["stage2_cfg"].eval.temperature, "top_p": res["stage2_cfg"].eval.top_p},
        }  # fmt: skip
        _export(Path(res["stage2"].final_dir), out, res["run_dir"], info)
        print(f"nano: wrote {out} — " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(info["metrics"].items())
                                                  if k in ("val/min_ade", "val/coc_decision_acc")))  # fmt: skip
        results["coc" if use_coc else "traj-only"] = info
    return results


def main(config: str = "train_nano", overrides: list[str] | None = None) -> None:
    cfg = load_train_config(config, NanoConfig, overrides)
    cmd = "cordillera train nano" + (f" --config {config}" if config != "train_nano" else "")
    cmd += "".join(f" --set {o}" for o in (overrides or []))
    run(cfg, command=cmd)


if __name__ == "__main__":
    main(overrides=sys.argv[1:])
