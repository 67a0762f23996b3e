"""Training plumbing shared by every stage: seeding, devices, optimiser, schedule, data order,
gradient accumulation, checkpoints, logging, validation and the loop itself (`fit`).

A stage file (`stage1.py`, `stage2.py`) only says what makes it different: which parameters train,
at which LR multipliers, and its `loss_fn(model, batch, generator) -> (loss, logs)`.

Checkpoint directory (`cfg.checkpoint.out_dir`), every write atomic (temp dir + `os.replace`):

    out_dir/
      latest                 name of the newest complete checkpoint (replaced atomically)
      step-000500/
        config.json          model config (CordilleraVLAConfig: presets, action stats, use_coc)
        model.safetensors    VLAModel state dict (with LoRA keys when LoRA is on); never pickled
        ema.safetensors      EMA shadow weights (EMA on only)
        rng.safetensors      torch CPU RNG + the loop's generators (uint8 state tensors)
        optimizer.pt         optimizer state dict only (torch.save; loaded with weights_only=True)
        trainer_state.json   step, data position (epoch, position), python/numpy RNG, config
      final/                 save_pretrained of the trained model (+ tokenizer), LoRA merged, EMA applied
      metrics.csv  tb/       logs (metrics.csv is rewritten atomically; resume drops rows past the step)
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

__all__ = [
    "seed_everything",
    "lr_at",
    "param_groups",
    "make_optimizer",
    "set_lr",
    "EMA",
    "ResumableSampler",
    "BatchStream",
    "accumulate_gradients",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "MetricsLog",
    "apply_lora",
    "merge_lora",
    "evaluate",
    "decode_coc",
    "export",
    "fit",
    "FitResult",
    "RunData",
    "model_config",
    "with_action_stats",
    "open_data",
    "val_batches_fn",
    "run_stage",
]

LATEST = "latest"
STEP_FMT = "step-{:06d}"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER_STATE = "optimizer.pt"
RNG_STATE = "rng.safetensors"
EMA_WEIGHTS = "ema.safetensors"
FINAL_DIR = "final"
METRICS_CSV = "metrics.csv"


# ===============================================================================================
# seeding, devices
# ===============================================================================================
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_snapshot() -> tuple[dict, dict[str, torch.Tensor]]:
    py = random.getstate()
    npst = np.random.get_state()
    js = {"python": [py[0], list(py[1]), py[2]],
          "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])]}  # fmt: skip
    tens = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tens[f"torch_cuda_{i}"] = s
    return js, tens


def _rng_restore(js: dict, tens: dict[str, torch.Tensor]) -> None:
    py = js["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = js["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(tens["torch_cpu"])
    if torch.cuda.is_available():
        states = [tens[k] for k in sorted(tens) if k.startswith("torch_cuda_")]
        if states:
            torch.cuda.set_rng_state_all(states)


# ===============================================================================================
# schedule and optimiser (nanoGPT habits: small pure functions)
# ===============================================================================================
def lr_at(step: int, optim) -> float:
    """Linear warm-up to `optim.lr` over `warmup_steps` (step 0 already gets lr/warmup), then a
    cosine from lr down to `min_lr` at `max_steps`, constant after (spec: cosine_warmup_with_min_lr)."""
    lr, min_lr, warm, total = optim.lr, optim.min_lr, optim.warmup_steps, optim.max_steps
    if step < warm:
        return lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def _multiplier(name: str, multipliers: dict[str, float]) -> float:
    """Longest prefix of `name` in `multipliers` (spec §2.1 `lr_multiplier`), else 1."""
    best, mult = -1, 1.0
    for prefix, m in multipliers.items():
        if (name == prefix or name.startswith(prefix + ".") or (prefix.endswith(".") and name.startswith(prefix))) \
                and len(prefix) > best:
            best, mult = len(prefix), float(m)
    return mult


def param_groups(named_params: Iterable[tuple[str, torch.nn.Parameter]], optim, verbose: bool = True) -> list[dict]:
    """AdamW groups: weight decay only on ≥2-D tensors (matrices, embeddings), none on biases and
    norms; one group per (LR multiplier, decay). Prints each group's tensor and parameter count."""
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        mult, decay = _multiplier(name, optim.lr_multipliers), p.ndim >= 2
        g = groups.setdefault((mult, decay), {
            "params": [], "names": [], "lr_mult": mult,
            "weight_decay": optim.weight_decay if decay else 0.0,
            "name": f"{'decay' if decay else 'no_decay'}@x{mult:g}",
        })  # fmt: skip
        g["params"].append(p)
        g["names"].append(name)
    out = [groups[k] for k in sorted(groups, key=lambda k: (-k[0], not k[1]))]
    if verbose:
        for g in out:
            n = sum(p.numel() for p in g["params"])
            print(f"optimizer group {g['name']}: {len(g['params'])} tensors, {n:,} parameters")
    return out


def make_optimizer(named_params, optim, verbose: bool = True) -> torch.optim.AdamW:
    groups = param_groups(named_params, optim, verbose)
    if not groups:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    for g in groups:
        g.pop("names")
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)


def set_lr(optimizer, step: int, optim) -> float:
    lr = lr_at(step, optim)
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
    return lr


# ===============================================================================================
# EMA
# ===============================================================================================
class EMA:
    """Exponential moving average of the trainable parameters: s ← d·s + (1 − d)·p after each step."""

    def __init__(self, named_params: Iterable[tuple[str, torch.nn.Parameter]], decay: float):
        self.decay = float(decay)
        self.shadow = {n: p.detach().clone() for n, p in named_params if p.requires_grad}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        params = dict(module.named_parameters())
        for n, s in self.shadow.items():
            s.lerp_(params[n].detach(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: s.contiguous() for n, s in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError(f"EMA state has {len(state)} tensors, expected {len(self.shadow)} "
                             f"(missing {sorted(set(self.shadow) - set(state))[:3]})")
        for n, s in self.shadow.items():
            s.copy_(state[n])

    @contextlib.contextmanager
    def applied(self, module: torch.nn.Module):
        """Temporarily swap the EMA weights into `module` (evaluation, export)."""
        params = dict(module.named_parameters())
        backup = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for n, s in self.shadow.items():
                params[n].copy_(s)
        try:
            yield module
        finally:
            with torch.no_grad():
                for n, b in backup.items():
                    params[n].copy_(b)


# ===============================================================================================
# data order: a seeded per-epoch permutation, resumable at (epoch, position)
# ===============================================================================================
class ResumableSampler(Sampler[int]):
    """Indices of epoch `epoch` = randperm(n) seeded with seed + epoch, sharded rank::world_size,
    starting at `position`. The loop counts consumed samples itself (DataLoader prefetch runs ahead).
    With `weights` an epoch is n draws with replacement, probability ∝ weight (same seeding)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 weights=None):  # fmt: skip
        if n < 1:
            raise ValueError(f"cannot sample from an empty dataset (n={n})")
        self.n, self.seed, self.shuffle, self.rank, self.world = int(n), int(seed), shuffle, rank, world_size
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64)
            if w.shape != (self.n,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
                raise ValueError(f"weights must be {self.n} finite values >= 0 with a positive sum")
            self.weights = w
        self.epoch = self.position = 0

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        if self.weights is not None:
            perm = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        elif self.shuffle:
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        return perm[self.rank::self.world]

    def __iter__(self):
        yield from self.order(self.epoch)[self.position:]

    def __len__(self) -> int:
        return max(0, len(self.order(self.epoch)) - self.position)


class BatchStream:
    """Endless micro-batches (`collate(list of samples)`), epoch after epoch, with `drop_last` so
    every epoch has the same batches; `state_dict()` = (epoch, position) of the next sample."""

    def __init__(self, dataset, collate: Callable, batch_size: int, seed: int = 0, num_workers: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1, weights=None):  # fmt: skip
        self.dataset, self.collate, self.batch_size = dataset, collate, int(batch_size)
        self.num_workers = int(num_workers)
        self.sampler = ResumableSampler(len(dataset), seed, shuffle, rank, world_size, weights)
        if len(self.sampler.order(0)) < self.batch_size:
            raise ValueError(f"{len(self.sampler.order(0))} samples per process < batch size {self.batch_size}")
        self.epoch = self.position = 0
        self._it = None

    def _start(self):
        self.sampler.epoch, self.sampler.position = self.epoch, self.position
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                            collate_fn=self.collate, num_workers=self.num_workers)  # fmt: skip
        self._it = iter(loader)

    def __next__(self):
        if self._it is None:
            self._start()
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch, self.position = self.epoch + 1, 0
            self._start()
            batch = next(self._it)
        self.position += self.batch_size
        return batch

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._it = None


# ===============================================================================================
# one optimiser step's worth of gradients
# ===============================================================================================
def accumulate_gradients(model, loss_fn: Callable, micro_batches: list, backward: Callable | None = None,
                         no_sync: Callable | None = None) -> dict[str, float]:  # fmt: skip
    """Run `loss_fn(batch) -> (loss, logs)` on each micro-batch and backpropagate loss / n.

    Each micro-batch loss is a mean over its own samples (tokens); dividing by the number of
    micro-batches makes the summed gradient the mean over the whole effective batch, as one
    large batch would give (exactly so when the micro-batches hold equally many tokens).
    Gradients are synchronised across processes only on the last micro-batch (`no_sync`).
    Returns the logs averaged over the micro-batches.
    """
    n = len(micro_batches)
    backward = backward or (lambda loss: loss.backward())
    acc: dict[str, float] = {}
    for i, mb in enumerate(micro_batches):
        ctx = no_sync(model) if (no_sync is not None and i < n - 1) else contextlib.nullcontext()
        with ctx:
            loss, logs = loss_fn(mb)
            backward(loss / n)
        for k, v in logs.items():
            acc[k] = acc.get(k, 0.0) + float(v) / n
    return acc


# ===============================================================================================
# checkpoints (atomic)
# ===============================================================================================
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint `out_dir/latest` names, or None."""
    p = Path(out_dir) / LATEST
    if not p.exists():
        return None
    d = Path(out_dir) / p.read_text().strip()
    if not (d / TRAINER_STATE).exists():
        raise ValueError(f"{p} names {d.name}, which is not a complete checkpoint")
    return d


def save_checkpoint(out_dir: str | Path, step: int, model_cfg, state: dict[str, torch.Tensor], optimizer,
                    trainer_state: dict, generators: dict[str, torch.Generator] | None = None,
                    ema: EMA | None = None, keep_last: int = 2) -> Path:  # fmt: skip
    """Write `out_dir/step-XXXXXX` atomically, then point `latest` at it, then prune old ones.

    A crash at any point leaves `latest` naming the previous complete checkpoint.
    """
    from safetensors.torch import save_file

    from cordillera.model.hf_config import CordilleraVLAConfig
    from cordillera.model.modeling import WEIGHTS_NAME

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".tmp-step-*"):  # leftovers of an earlier crash
        shutil.rmtree(stale, ignore_errors=True)
    name = STEP_FMT.format(step)
    tmp = out / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    CordilleraVLAConfig.from_vla(model_cfg).save_pretrained(tmp)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / WEIGHTS_NAME),
              metadata={"format": "pt", "step": str(step)})  # fmt: skip
    if ema is not None:
        save_file({k: v.cpu() for k, v in ema.state_dict().items()}, str(tmp / EMA_WEIGHTS))
    js, tens = _rng_snapshot()
    for k, g in (generators or {}).items():
        tens[f"gen_{k}"] = g.get_state()
    save_file(tens, str(tmp / RNG_STATE))
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_STATE)  # optimizer state only, never weights
    (tmp / TRAINER_STATE).write_text(json.dumps({**trainer_state, "step": step, "rng": js}))
    _fsync_tree(tmp)
    final = out / name
    if final.exists():  # an orphan from a crash between rename and `latest` (never the one `latest` names)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(out)
    _write_text_atomic(out / LATEST, name)
    keep = sorted(p for p in out.glob("step-*") if p.is_dir())[-keep_last:]
    for p in out.glob("step-*"):
        if p.is_dir() and p not in keep and p != final:
            shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, module: torch.nn.Module, optimizer=None,
                    generators: dict[str, torch.Generator] | None = None, ema: EMA | None = None) -> dict:  # fmt: skip
    """Restore weights (strict), optimizer, EMA and every RNG; returns the trainer state dict."""
    from safetensors.torch import load_file

    from cordillera.model.modeling import WEIGHTS_NAME

    d = Path(path)
    state = load_file(str(d / WEIGHTS_NAME))
    own = module.state_dict()
    if set(state) != set(own):
        raise ValueError(f"{d}: checkpoint keys differ from the model (missing {sorted(set(own) - set(state))[:3]}, "
                         f"unexpected {sorted(set(state) - set(own))[:3]})")
    module.load_state_dict(state, strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(d / OPTIMIZER_STATE, weights_only=True))
    if ema is not None:
        ema.load_state_dict(load_file(str(d / EMA_WEIGHTS)))
    ts = json.loads((d / TRAINER_STATE).read_text())
    tens = load_file(str(d / RNG_STATE))
    _rng_restore(ts["rng"], tens)
    for k, g in (generators or {}).items():
        g.set_state(tens[f"gen_{k}"])
    return ts


# ===============================================================================================
# logging
# ===============================================================================================
class MetricsLog:
    """Rows of scalars → `metrics.csv` (rewritten atomically, columns = union of keys) and TensorBoard."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None):
        self.path = Path(out_dir) / METRICS_CSV
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and self.path.exists():
            with open(self.path) as f:
                self.rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= resume_step]
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=resume_step)

    def log(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: v for k, v in values.items()}}
        self.rows.append(row)
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    self.tb.add_scalar(k, float(v), step)
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class _Progress:
    """rich progress bar (step, loss, lr, samples/s), or nothing."""

    def __init__(self, enabled: bool, total: int, start: int, desc: str):
        self.p = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn(f"[bold]{desc}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[info]}"), TimeRemainingColumn())  # fmt: skip
            self.p.start()
            self.task = self.p.add_task(desc, total=total, completed=start, info="")

    def update(self, step: int, info: str) -> None:
        if self.p is not None:
            self.p.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()


# ===============================================================================================
# LoRA (peft) on the backbone's language-model linear layers only
# ===============================================================================================
def _lora_regex(targets) -> str:
    return r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.(" + "|".join(targets) + ")"


def apply_lora(vla, lora) -> list[str]:
    """Inject LoRA adapters into `vla.model.vlm`'s language-model linear layers (peft). The base
    weights of the wrapped layers are frozen; everything else keeps its `requires_grad`. Returns
    the names of the wrapped modules."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    vlm = vla.model.vlm
    before = {n: p.requires_grad for n, p in vlm.named_parameters()}
    pcfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=_lora_regex(lora.target_modules), bias="none")  # fmt: skip
    inject_adapter_in_model(pcfg, vlm)
    wrapped = [n for n, m in vlm.named_modules() if isinstance(m, LoraLayer)]
    if not wrapped:
        raise ValueError(f"LoRA matched no module for targets {lora.target_modules}")
    for n, p in vlm.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)
        elif ".base_layer." in n:
            p.requires_grad_(False)
        else:
            p.requires_grad_(before.get(n, True))
    return wrapped


@torch.no_grad()
def merge_lora(vla) -> int:
    """Fold every LoRA adapter into its base layer and put the plain layer back. Returns the count."""
    from peft.tuners.lora import LoraLayer

    vlm = vla.model.vlm
    found = [(n, m) for n, m in vlm.named_modules() if isinstance(m, LoraLayer)]
    for name, m in found:
        m.merge()
        parent = vlm.get_submodule(name.rsplit(".", 1)[0])
        setattr(parent, name.rsplit(".", 1)[1], m.get_base_layer())
    return len(found)


# ===============================================================================================
# validation
# ===============================================================================================
@torch.no_grad()
def evaluate(model, batches: Iterable[dict], stage: str, loss_fn: Callable | None, ev, use_coc: bool = True,
             tokenizer=None, generator_seed: int = 1234) -> dict[str, float]:  # fmt: skip
    """Held-out metrics over `batches` (processor batches with a `cot_text` list):

    - `val/loss` (+ its parts) with the stage loss (fixed noise generator, so runs compare);
    - `val/min_ade` (K = ev.k samples, minADE_6 family) for stage 2 / joint: each sample decodes
      its own CoC when the model writes one (fast path otherwise), then the expert's Euler steps;
    - `val/coc_*`: decision accuracy of the decoded CoC (first of the K) against the label
      (`reasoning.schema.parse`: longitudinal, lateral, direction) — on every batch in stage 2 /
      joint, on the first `ev.coc_samples` samples in stage 1 (which has no trained expert).
    """
    from cordillera.metrics.openloop import min_ade
    from cordillera.model.processor import EGO_FUTURE_XYZ
    from cordillera.reasoning.consistency import reasoning_quality
    from cordillera.train.data import PROMPT_BATCH

    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(generator_seed)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(key, value, n=1):
        sums[key] = sums.get(key, 0.0) + float(value) * n
        counts[key] = counts.get(key, 0) + n

    n_seen = n_coc = 0
    t0 = time.perf_counter()
    for batch in batches:
        B = batch["input_ids"].shape[0]
        if loss_fn is not None:
            _, logs = loss_fn(batch, g)
            for k, v in logs.items():
                if not k.startswith("n_"):
                    add(f"val/{k}", v, B)
        want_traj = stage in ("stage2", "joint")
        # a CoC model's trajectories are always sampled after its own CoC (no empty-CoC shortcut)
        want_coc = use_coc and (want_traj or n_coc < ev.coc_samples)
        if want_traj or want_coc:
            out = model.sample_trajectories(batch.get(PROMPT_BATCH, batch), num_samples=ev.k if want_traj else 1,
                                            temperature=ev.temperature, top_p=ev.top_p,
                                            flow_steps=ev.flow_steps if want_traj else 1, fast=not want_coc,
                                            max_new_tokens=ev.max_new_tokens, generator=g)  # fmt: skip
            if want_traj:
                m = min_ade(out.xyz, batch[EGO_FUTURE_XYZ], reduce=False)
                for k, v in m.items():
                    add(f"val/{k}", float(v.sum()) / B, B)
            if want_coc:
                texts = decode_coc(tokenizer, out.coc_token_ids[:, 0])
                for pred, label in zip(texts, batch.get("cot_text", [None] * B)):
                    if not label:
                        continue
                    q = reasoning_quality(pred, label)
                    add("val/coc_longitudinal_acc", q["longitudinal_match"])
                    add("val/coc_lateral_acc", q["lateral_match"])
                    add("val/coc_direction_acc", q["direction_match"])
                    add("val/coc_decision_acc", q["longitudinal_match"] * q["lateral_match"] * q["direction_match"])
                    add("val/coc_score", q["score"])
                n_coc += B
        n_seen += B
    model.train(was_training)
    out = {k: sums[k] / counts[k] for k in sums}
    out["val/samples"] = n_seen
    out["val/seconds"] = time.perf_counter() - t0
    return out


def decode_coc(tokenizer, ids: torch.Tensor) -> list[str]:
    """Generated ids (B, n) → CoC strings (text before `<|cot_end|>`)."""
    if tokenizer is None:
        return [""] * ids.shape[0]
    from cordillera.model.processor import extract_between

    texts = tokenizer.batch_decode(ids.tolist(), skip_special_tokens=False)
    return [extract_between("<|cot_start|>" + s.replace("<|endoftext|>", ""), "cot") for s in texts]


# ===============================================================================================
# the loop
# ===============================================================================================
@dataclass
class FitResult:
    step: int
    final_dir: Path
    train_logs: dict[str, float] = field(default_factory=dict)
    val_logs: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # the loop's wall time for steps 1..step, summed over the processes that trained them
    samples: int = 0  # samples of steps 1..step
    samples_per_s: float = 0.0
    resumed_at: int | None = None  # the checkpoint step this process resumed from
    process_seconds: float = 0.0  # this process's share of `seconds`


def fit(cfg, vla, tokenizer, train_ds, collate: Callable, loss_fn: Callable, val_batches: Callable | None = None,
        freeze_eval: Callable | None = None, stop_after: int | None = None, desc: str = "train") -> FitResult:  # fmt: skip
    """Train `vla` (a `CordilleraVLA` whose trainable parameters are already chosen) with `cfg`.

    `loss_fn(model, batch, generator) -> (loss, logs)`; `val_batches()` yields held-out processor
    batches; `freeze_eval(model)` puts frozen sub-modules back in eval mode after `model.train()`.
    `stop_after` ends the run early at that step (a simulated kill in tests; no final export).
    """
    from accelerate import Accelerator

    # ---- TRY NOT TO MODIFY: devices, seeding, threads -----------------------------------------
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    accelerator = Accelerator(mixed_precision="no")  # fp32: bf16 autocast is 2.7x slower on CPU (environment.md §2)
    out_dir = Path(cfg.checkpoint.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    o = cfg.optim
    named = [(n, p) for n, p in vla.model.named_parameters() if p.requires_grad]
    n_train = sum(p.numel() for _, p in named)
    n_all = sum(p.numel() for p in vla.model.parameters())
    if accelerator.is_main_process:
        print(f"{desc}: {n_train:,} of {n_all:,} parameters train; device {accelerator.device}")
    optimizer = make_optimizer(named, o, verbose=accelerator.is_main_process)
    ema = EMA(vla.model.named_parameters(), o.ema_decay) if o.ema_decay else None
    model, optimizer = accelerator.prepare(vla, optimizer)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1000 * accelerator.process_index)
    weights = None
    if cfg.data.hard_sample_weight > 0:
        from cordillera.train.data import hard_sample_weights

        weights = hard_sample_weights(train_ds, cfg.data.hard_sample_weight)
        if accelerator.is_main_process:
            top = np.sort(weights)[::-1][: max(1, len(weights) // 10)].sum() / weights.sum()
            print(f"{desc}: hard-sample draws (weight {cfg.data.hard_sample_weight:g}): the 10 % most surprising "
                  f"samples get {100 * top:.0f} % of the draws")
    stream = BatchStream(train_ds, collate, o.batch_size, seed=cfg.seed, num_workers=cfg.data.num_workers,
                         rank=accelerator.process_index, world_size=accelerator.num_processes,
                         weights=weights)  # fmt: skip

    # ---- resume -------------------------------------------------------------------------------
    step, start_step = 0, 0
    prior_seconds = 0.0  # loop time of earlier processes up to the checkpoint resumed from
    ckpt = latest_checkpoint(out_dir) if cfg.checkpoint.resume else None
    if ckpt is not None:
        ts = load_checkpoint(ckpt, vla.model, optimizer, {"noise": noise_gen}, ema)
        stream.load_state_dict(ts["data"])
        step = start_step = int(ts["step"])
        prior_seconds = float(ts.get("seconds", 0.0))
        if accelerator.is_main_process:
            print(f"{desc}: resumed from {ckpt} at step {step} (epoch {stream.epoch}, position {stream.position})")
    log = MetricsLog(out_dir, cfg.tensorboard and accelerator.is_main_process, resume_step=step if ckpt else None)
    bar = _Progress(cfg.progress and accelerator.is_main_process, o.max_steps, step, desc)

    def run_eval() -> dict[str, float]:
        if val_batches is None:
            return {}
        ctx = ema.applied(vla.model) if ema is not None else contextlib.nullcontext()
        with ctx:
            return evaluate(vla, val_batches(), cfg.stage, lambda b, g: loss_fn(vla, b, g), cfg.eval, cfg.use_coc,
                            tokenizer)

    def save(step_: int) -> None:
        if accelerator.is_main_process:
            save_checkpoint(out_dir, step_, vla.cfg, vla.model.state_dict(), optimizer,
                            {"data": stream.state_dict(), "stage": cfg.stage, "config": cfg.model_dump(mode="json"),
                             "seconds": prior_seconds + time.perf_counter() - tic},
                            {"noise": noise_gen}, ema, cfg.checkpoint.keep_last)  # fmt: skip
        accelerator.wait_for_everyone()

    # ---- ALGO LOGIC: optimiser steps ----------------------------------------------------------
    tic = time.perf_counter()
    samples = 0
    train_logs: dict[str, float] = {}
    val_logs: dict[str, float] = {}
    trainable = [p for _, p in named]
    while step < o.max_steps:
        if stop_after is not None and step >= stop_after:
            break
        lr = set_lr(optimizer, step, o)
        model.train()
        if freeze_eval is not None:
            freeze_eval(vla)
        micro = [next(stream) for _ in range(o.grad_accum)]
        logs = accumulate_gradients(model, lambda b: loss_fn(model, b, noise_gen), micro, accelerator.backward,
                                    accelerator.no_sync)  # fmt: skip
        if o.grad_clip is not None:
            logs["grad_norm"] = float(accelerator.clip_grad_norm_(trainable, o.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(vla.model)
        step += 1
        samples += o.batch_size * o.grad_accum * accelerator.num_processes
        elapsed = time.perf_counter() - tic
        train_logs = {**{f"train/{k}": v for k, v in logs.items()}, "train/lr": lr,
                      "train/samples_per_s": samples / max(elapsed, 1e-9), "train/epoch": stream.epoch}  # fmt: skip
        if step % cfg.log_every == 0 or step == o.max_steps:
            if accelerator.is_main_process:
                log.log(step, train_logs)
        bar.update(step, f"loss {logs.get('loss', float('nan')):.4f}  lr {lr:.2e}  "
                         f"{train_logs['train/samples_per_s']:.1f} samples/s")  # fmt: skip
        if step % cfg.eval.every == 0 and step < o.max_steps:
            val_logs = run_eval()
            if accelerator.is_main_process and val_logs:
                log.log(step, val_logs)
        if step % cfg.checkpoint.save_every == 0 or step == o.max_steps:
            save(step)
    bar.close()
    seconds = time.perf_counter() - tic
    final = out_dir / FINAL_DIR
    if step >= o.max_steps:
        val_logs = run_eval()
        if accelerator.is_main_process and val_logs:
            log.log(step, val_logs)
        if accelerator.is_main_process:
            export(vla, tokenizer, final, ema)
    log.close()
    total_s = prior_seconds + seconds
    total_samples = step * o.batch_size * o.grad_accum * accelerator.num_processes
    return FitResult(step, final, train_logs, val_logs, total_s, total_samples, total_samples / max(total_s, 1e-9),
                     start_step if ckpt is not None else None, seconds)


def export(vla, tokenizer, directory: str | Path, ema: EMA | None = None) -> Path:
    """`save_pretrained` (+ tokenizer) of the trained model with EMA weights and LoRA merged, atomically."""
    d = Path(directory)
    tmp = d.with_name(f".{d.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    ctx = ema.applied(vla.model) if ema is not None else contextlib.nullcontext()
    with ctx:
        has_lora = any("lora_" in n for n, _ in vla.model.named_parameters())
        if has_lora:
            import copy

            merged = copy.deepcopy(vla)
            merge_lora(merged)
            merged.save_pretrained(tmp, tokenizer)
        else:
            vla.save_pretrained(tmp, tokenizer)
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)
    return d


# ===============================================================================================
# run set-up shared by the stages
# ===============================================================================================
@dataclass
class RunData:
    """Training and validation samples (any `len`/`__getitem__` of dataset sample dicts)."""

    train: Any
    val: Any
    dataset: Any = None


def model_config(cfg, base=None):
    """The preset (or `base`) with the run's CoC flag, input size (`image_hw`) and auxiliary-head
    weights; trajectory-only models carry the flag in their name."""
    import dataclasses

    from cordillera.model.configuration import get_preset

    vc = base if base is not None else get_preset(cfg.model)
    name = vc.name if cfg.use_coc or vc.name.endswith("-traj-only") else f"{vc.name}-traj-only"
    inputs = dataclasses.replace(vc.inputs, use_coc=cfg.use_coc)
    if cfg.image_hw is not None:
        step = vc.vision.patch_size * vc.vision.spatial_merge_size  # [px] one LLM token's side
        if any(int(v) <= 0 or int(v) % step for v in cfg.image_hw):
            raise ValueError(f"image_hw {tuple(cfg.image_hw)}: height and width must be positive multiples of "
                             f"{step} px (patch {vc.vision.patch_size} × merge {vc.vision.spatial_merge_size})")
        inputs = dataclasses.replace(inputs, image_height=int(cfg.image_hw[0]), image_width=int(cfg.image_hw[1]))
    return vc.replace(name=name, inputs=inputs,
                      loss=dataclasses.replace(vc.loss, vision_probe_weight=cfg.vision_probe_weight,
                                               vision_probe_lead=cfg.vision_probe_lead,
                                               decision_head_weight=cfg.decision_head_weight))


def with_action_stats(vla_cfg, stats: dict):
    """Store fitted (accel, curvature) mean/std in the model config (before training)."""
    import dataclasses

    from cordillera.action.unicycle import ActionSpaceConfig

    a = dataclasses.replace(ActionSpaceConfig.from_dict(vla_cfg.action_space), **stats)
    return vla_cfg.replace(action_space=a.to_dict())


def open_data(cfg, vla_cfg) -> RunData:
    from cordillera.train.data import open_splits

    hw = (vla_cfg.inputs.image_height, vla_cfg.inputs.image_width)
    ds, train, val = open_splits(cfg.data, hw, vla_cfg.inputs.cameras, cfg.seed)
    print(f"data {cfg.data.dir}: {len(train)} training / {len(val)} validation samples")
    return RunData(train, val, ds)


def val_batches_fn(val, collate: Callable, ev) -> Callable | None:
    """A callable yielding the same held-out batches each time: `ev.num_samples` samples spread
    evenly over the validation set."""
    n = len(val) if val is not None else 0
    if n == 0:
        return None
    idx = np.unique(np.linspace(0, n - 1, min(n, ev.num_samples)).round().astype(int)).tolist()

    def gen():
        for i in range(0, len(idx), ev.batch_size):
            yield collate([val[j] for j in idx[i:i + ev.batch_size]])

    return gen


def print_result(name: str, res) -> None:
    """The one-screen summary every stage's ``main`` prints after training."""
    print(f"{name}: {res.step} steps in {res.seconds:.0f} s ({res.samples_per_s:.1f} samples/s) → {res.final_dir}")
    for k, v in sorted(res.val_logs.items()):
        print(f"  {k} = {v:.4g}")


def own_cocs(cfg, vla, data: RunData, processor, tokenizer, nav_dropout: float) -> dict[str, str]:
    """The stage-1 backbone's own CoC for every training sample (`train.own_coc`), sampled from the
    prompts training builds (same nav / history choices) at the eval sampling settings, cached."""
    from cordillera.train.data import Collate, cache_root
    from cordillera.train.own_coc import own_coc_path, sample_keys, sample_own_cocs

    if not cfg.init_from:
        raise ValueError("data.coc_own > 0 needs init_from: the stage-1 checkpoint whose backbone samples the CoCs")
    prompts = Collate(processor, use_coc=True, nav_dropout=nav_dropout, history_dropout=cfg.data.history_dropout,
                      with_prompt=True)  # fmt: skip
    keys = sample_keys(data.train)
    ev = cfg.eval
    path = own_coc_path(cache_root(cfg.data), cfg.init_from, keys, ev.temperature, ev.top_p, cfg.seed, None,
                        {"nav_dropout": nav_dropout, "history_dropout": cfg.data.history_dropout})  # fmt: skip
    return sample_own_cocs(vla, lambda ids: decode_coc(tokenizer, ids), data.train, prompts, path, ev.temperature,
                           ev.top_p, cfg.seed, batch_size=ev.batch_size, progress=cfg.progress)  # fmt: skip


def run_stage(cfg, vla, data: RunData, loss_fn: Callable, freeze_eval: Callable | None = None,
              tokenizer=None, stop_after: int | None = None, desc: str = "train",
              wrap_collate: Callable | None = None) -> FitResult:  # fmt: skip
    """Processor + collate for `vla` (with `data.coc_own`, the own-CoC table sampled first), then `fit`.
    `wrap_collate(collate)` replaces the training batches' collate (stage 2's prefix store)."""
    from cordillera.model.processor import VLAProcessor
    from cordillera.model.tokenizer import load_tokenizer
    from cordillera.train.data import Collate

    tokenizer = tokenizer or load_tokenizer(vla.cfg)
    processor = VLAProcessor(vla.cfg, tokenizer)
    nav_dropout = cfg.data.nav_dropout if cfg.data.nav else 1.0
    lanes = None  # the vision probe's targets need the clips' scenario maps (simulated data)
    reader = getattr(getattr(data.train, "dataset", None), "reader", None)
    wants_lanes = (vla.model.vision_probe is not None and cfg.stage != "stage2") or vla.model.lane_reader is not None
    if wants_lanes and reader is not None:
        from cordillera.train.data import LaneAhead

        lanes = LaneAhead(reader, lead=vla.cfg.loss.reads_lead)
    own = own_cocs(cfg, vla, data, processor, tokenizer, nav_dropout) if cfg.data.coc_own > 0 and cfg.use_coc else None
    collate = Collate(processor, use_coc=cfg.use_coc, nav_dropout=nav_dropout, lane_ahead=lanes,
                      history_dropout=cfg.data.history_dropout, coc_swap=cfg.data.coc_swap,
                      coc_own=cfg.data.coc_own if own is not None else 0.0, own_cocs=own)  # fmt: skip
    val_collate = Collate(processor, use_coc=cfg.use_coc, nav_dropout=nav_dropout, with_prompt=True, lane_ahead=lanes)
    if wrap_collate is not None:
        collate = wrap_collate(collate)
    return fit(cfg, vla, tokenizer, data.train, collate, loss_fn, val_batches_fn(data.val, val_collate, cfg.eval),
               freeze_eval=freeze_eval, stop_after=stop_after, desc=desc)  # fmt: skip
