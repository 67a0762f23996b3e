"""Stage 2's frozen-backbone context, stored per training sample after its first visit.

Stage 2 trains only the expert; the backbone is frozen, so the K/V it produces for a sample's
prompt + CoC (`VLAModel.stage2_prefix`) is the same every epoch. Computing it is ~90 % of a stage-2
step on the CPU (vision tower + text layers over ~480 tokens, against an expert over 64 action
tokens), and the nano recipe visits each sample ~3.4 times. With `prefix_cache` on (a stage-2
`TrainConfig` field), a sample's K/V (its prefix columns only, fp32, ~2 MB for nano) and its
targets are written on its first visit, and a batch whose samples are all stored skips the
processor, the vision tower and the backbone: the expert reads the stored K/V, re-batched
(`Stage2Prefix.join`). A batch with some samples stored (weighted draws, `data.hard_sample_weight`,
mix visited and new samples) runs the backbone on the others only and joins the rows in the batch's
order. The loss differs from recomputing only by float rounding (a test pins a short run's loss
curve to the uncached one).

Layout: ``<sample cache root>/stage2_prefix/<key>/<sha1 of clip_id:t0_us>.safetensors``
(`train.data.cache_root`). The key hashes the stage-1 weights, the prompt settings and the data
directory, so another backbone or prompt recipe never reads stale K/V. Each file is written to a
temp name and renamed (a kill mid-write leaves no partial file; a resumed run reuses what is
there); `stage2.train` removes the directory when the run has finished.

Only usable where the prefix is a function of the sample alone: not with `data.coc_swap` (a row's
CoC depends on its batch) nor with a lane reader (it reads the pixels every step).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from cordillera.model.modeling import STAGE2_PREFIX, Stage2Prefix
from cordillera.model.processor import ACTIONS

__all__ = ["PrefixStore", "StoredPrefixCollate", "merge_rows", "PREFIX_KEYS", "STORED_ROWS", "unusable_reason",
           "store_dir"]

PREFIX_KEYS = "prefix_keys"  # batch key: the sample key of each row the backbone runs on, to store its prefix
# batch key of a partly stored batch: {"rows": the stored rows (`Stage2Prefix.rows` form) by batch position,
# "computed": the batch positions of the rows the backbone computes, in the order of the prompt tensors}
STORED_ROWS = "stored_rows"


class PrefixStore:
    """One safetensors file per sample: ``kv`` (n_layers, 2, H_kv, C, head_dim), ``start`` (the
    first action token's text position) and ``actions`` (T, 2), the flow-matching targets (their
    unicycle fit costs more than reading the K/V)."""

    def __init__(self, directory: str | Path, num_action_tokens: int):
        self.dir = Path(directory)
        self.T = int(num_action_tokens)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = self.writes = 0

    def path(self, key: str) -> Path:
        return self.dir / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, keys: list[str], prefix: Stage2Prefix, actions: torch.Tensor) -> None:
        """Store each row of `prefix` and of `actions` (B, T, 2) under its key (rows stored already are kept)."""
        from safetensors.torch import save_file

        rows = prefix.rows()
        if not len(rows) == len(keys) == actions.shape[0]:
            raise ValueError(f"{len(keys)} sample keys for a prefix of {len(rows)} rows and {actions.shape[0]} actions")
        for key, (kv, start), act in zip(keys, rows, actions):
            dst = self.path(key)
            if dst.is_file():
                continue
            tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
            save_file({"kv": kv.cpu(), "start": torch.tensor([start]), "actions": act.detach().float().cpu().contiguous()},
                      str(tmp), metadata={"key": key})  # fmt: skip
            os.replace(tmp, dst)
            self.writes += 1

    def load_rows(self, keys: list[str]) -> tuple[list[tuple[torch.Tensor, int]], list[torch.Tensor]]:
        """The stored rows of `keys` (`Stage2Prefix.rows` form) and their actions (T, 2) each."""
        from safetensors.torch import load_file

        rows, actions = [], []
        for key in keys:
            d = load_file(str(self.path(key)))
            rows.append((d["kv"], int(d["start"][0])))
            actions.append(d["actions"])
        self.hits += len(keys)
        return rows, actions

    def load(self, keys: list[str]) -> tuple[Stage2Prefix, torch.Tensor]:
        """The stored rows of `keys` as one batch: (prefix, actions (B, T, 2))."""
        rows, actions = self.load_rows(keys)
        return Stage2Prefix.join(rows, self.T), torch.stack(actions)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.dir.glob("*.safetensors"))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class StoredPrefixCollate:
    """`collate` (a `train.data.Collate`) that, when every sample of the batch is in `store`, returns
    only the stored flow-matching targets and prefix instead of a processor batch; otherwise the
    processor batch of the samples not stored, their keys (`PREFIX_KEYS`) for the loss to store what
    it computes, and — when some are stored — those rows (`STORED_ROWS`) with every row's targets
    in the batch's order (`ACTIONS`), for `merge_rows` to complete the prefix."""

    def __init__(self, collate, store: PrefixStore):
        self.collate, self.store = collate, store

    def __call__(self, samples: list[dict]) -> dict:
        from cordillera.train.own_coc import sample_key

        keys = [sample_key(s) for s in samples]
        stored = [i for i, k in enumerate(keys) if self.store.has(k)]
        if len(stored) == len(keys):
            prefix, actions = self.store.load(keys)
            return {ACTIONS: actions, STAGE2_PREFIX: prefix, PREFIX_KEYS: keys}
        if not stored:
            batch = self.collate(samples)
            batch[PREFIX_KEYS] = keys
            return batch
        computed = [i for i in range(len(keys)) if i not in stored]
        batch = self.collate([samples[i] for i in computed])
        rows, acts = self.store.load_rows([keys[i] for i in stored])
        actions = torch.empty((len(keys), *acts[0].shape), dtype=batch[ACTIONS].dtype)
        actions[computed] = batch[ACTIONS]
        actions[stored] = torch.stack(acts).to(actions.dtype)
        batch[ACTIONS] = actions  # every row's targets; the prompt tensors hold the computed rows only
        batch[PREFIX_KEYS] = [keys[i] for i in computed]
        batch[STORED_ROWS] = {"rows": dict(zip(stored, rows)), "computed": computed}
        return batch


def merge_rows(prefix: Stage2Prefix, stored: dict, T: int) -> Stage2Prefix:
    """The batch's full prefix: the computed rows of `prefix` and the `STORED_ROWS` rows, in the batch's order."""
    rows = dict(stored["rows"])
    rows.update(zip(stored["computed"], prefix.rows()))
    return Stage2Prefix.join([rows[i] for i in range(len(rows))], T)


def unusable_reason(cfg, vla) -> str | None:
    """Why the prefix of a sample is not a function of the sample alone in this run, or None."""
    if cfg.stage != "stage2":
        return f"stage {cfg.stage!r} trains the backbone"
    if cfg.data.coc_swap > 0:
        return "data.coc_swap > 0: a row's CoC depends on its batch"
    if vla.model.lane_reader is not None:
        return "the lane reader reads the pixels every step"
    return None


def store_dir(root: str | Path, checkpoint: str | Path, settings: dict) -> Path:
    """``root/stage2_prefix/<key>``: the key hashes `checkpoint`/model.safetensors and `settings`
    (everything else the prompts depend on)."""
    from cordillera.train.own_coc import file_sha256

    weights = Path(checkpoint) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{checkpoint}: no model.safetensors (stage 2's prefix store keys on the backbone)")
    h = hashlib.sha256(json.dumps({"weights": file_sha256(weights), **settings}, sort_keys=True).encode())
    return Path(root) / "stage2_prefix" / h.hexdigest()[:16]
