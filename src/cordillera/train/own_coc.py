"""The stage-1 model's own CoC for every training sample, for stage 2's `data.coc_own`.

Stage 2 trains the expert on prompts that carry the label CoC, which always agrees with the
ground-truth trajectory; closed loop the expert reads the CoC the backbone samples, whose decisions
match the label at a quarter of the training samples (`benchmarks/RESULTS.md` closed_loop_eval,
Session 20). With `data.coc_own: s` a hashed share s of the training samples carries instead a CoC
the (frozen) stage-1 backbone sampled from that sample's own prompt, at the closed-loop sampling
settings, so the expert learns how far the reasoning it will actually read predicts the future.
Validation keeps the labels.

The texts are sampled once before training (one per sample, seeded per batch) and stored as JSON
keyed by ``clip_id:t0_us`` under ``<sample cache root>/own_coc/<key>.json`` (`train.data.cache_root`);
the key hashes the stage-1 weights, the sampling settings and the sample list, so a different
backbone or split samples again. The file is rewritten atomically every few batches and a restart
continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import torch

from cordillera.data import keys as K

__all__ = ["sample_key", "sample_keys", "own_coc_path", "sample_own_cocs", "file_sha256"]

FLUSH_EVERY_BATCHES = 25


def sample_key(s: dict) -> str:
    """The key of a dataset sample in the own-CoC table."""
    return f"{s[K.CLIP_ID_KEY]}:{int(s[K.T0_US])}"


def sample_keys(dataset) -> list[str]:
    """`sample_key` of every sample of `dataset`, without reading frames when it is a (subset of a)
    `train.data.SampleCache`."""
    from torch.utils.data import Subset

    from cordillera.train.data import SampleCache

    base, idx = (dataset.dataset, list(dataset.indices)) if isinstance(dataset, Subset) else (dataset, None)
    if isinstance(base, SampleCache):
        idx = range(len(base)) if idx is None else idx
        return [sample_key({K.CLIP_ID_KEY: base.clips[i], K.T0_US: base.t0s[i]}) for i in idx]
    return [sample_key(dataset[i]) for i in range(len(dataset))]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def own_coc_path(root: str | Path, checkpoint: str | Path, keys: list[str], temperature: float, top_p: float,
                 seed: int, max_new_tokens: int | None, prompt: dict) -> Path:  # fmt: skip
    """Where the table for these weights (`checkpoint`/model.safetensors), sampling settings, samples
    and prompt settings (`prompt`: nav / history dropout) lives under `root`."""
    weights = Path(checkpoint) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{checkpoint}: no model.safetensors to sample the own CoCs from")
    h = hashlib.sha256(json.dumps({"weights": file_sha256(weights), "temperature": temperature, "top_p": top_p,
                                   "seed": seed, "max_new_tokens": max_new_tokens, "prompt": prompt,
                                   "keys": keys}, sort_keys=True).encode())  # fmt: skip
    return Path(root) / "own_coc" / f"{h.hexdigest()[:16]}.json"


def sample_own_cocs(vla, decode: Callable, dataset, collate: Callable, path: str | Path, temperature: float,
                    top_p: float, seed: int, max_new_tokens: int | None = None, batch_size: int = 8,
                    progress: bool = True) -> dict[str, str]:  # fmt: skip
    """{sample key: CoC text} for every sample of `dataset`, sampled by `vla`'s backbone.

    `collate` must build the prompts as training does (`train.data.Collate(..., with_prompt=True)`:
    the same nav / history choices per sample); `decode` turns generated ids (B, n) into texts
    (`loop.decode_coc` with the tokenizer). Batch b is sampled with a generator seeded
    `seed + b`, so a resumed run gives the same table as an uninterrupted one.
    """
    from cordillera.train.data import PROMPT_BATCH
    from cordillera.train.loop import _write_text_atomic

    path = Path(path)
    done: dict[str, str] = {}
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("complete"):
            return stored["cocs"]
        done = stored["cocs"]
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    starts = list(range(0, n, batch_size))
    names_all = sample_keys(dataset)
    was_training = vla.training
    vla.eval()
    tic = time.perf_counter()
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("own CoCs", total=n, completed=min(len(done), n))
        bar.start()
    try:
        for b, lo in enumerate(starts):
            names = names_all[lo:lo + batch_size]
            if all(k in done for k in names):
                continue
            samples = [dataset[i] for i in range(lo, lo + len(names))]
            batch = collate(samples)
            g = torch.Generator().manual_seed(seed + b)
            with torch.inference_mode():
                out = vla.sample_trajectories(batch[PROMPT_BATCH], num_samples=1, temperature=temperature,
                                              top_p=top_p, flow_steps=1, max_new_tokens=max_new_tokens,
                                              generator=g)  # fmt: skip
            done.update(zip(names, decode(out.coc_token_ids[:, 0])))
            if bar is not None:
                bar.update(task, completed=len(done))
            if (b + 1) % FLUSH_EVERY_BATCHES == 0:
                _write_text_atomic(path, json.dumps({"complete": False, "cocs": done}))
    finally:
        if bar is not None:
            bar.stop()
        vla.train(was_training)
    if missing := set(names_all) - done.keys():
        raise RuntimeError(f"own CoCs: {len(missing)} samples without a text (e.g. {sorted(missing)[0]})")
    _write_text_atomic(path, json.dumps({"complete": True, "cocs": done}))
    if progress:
        print(f"own CoCs: {n} samples in {time.perf_counter() - tic:.0f} s → {path}")
    return done
