"""Stage 2 (spec/alpamayo_training_data.md §2.2): the flow-matching action expert on a frozen
stage-1 backbone.

The backbone comes from the stage-1 checkpoint the recipes way: build the full model, then load
the `vlm.*` tensors with the prefix stripped, checking every key and shape, then freeze it. The
expert, `action_in_proj` and `action_out_proj` train on

    L_FM = mean (v̂(x_t, t) − (x − ε))²,  x_t = t·x + (1 − t)·ε,  t = 0.999·(1 − Beta(1.5, 1)),

reading the backbone's KV cache up to the last `<|traj_future_start|>`, detached
(`CordilleraVLA.forward(stage="stage2")`). `stage: joint` (for comparison) trains both: the
stage-1 CE reaches the backbone, the FM loss does not (stop-gradient on the cache).

With `prefix_cache` (on by default) that frozen K/V is computed once per sample and read back from
disk on later epochs (`train.prefix_store`); the loss is the same up to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cordillera.train import loop
from cordillera.train.config import TrainConfig, load_train_config

__all__ = ["loss_fn", "stored_loss_fn", "joint_loss_fn", "load_stage1_backbone", "build_model", "train", "main"]


def loss_fn(model, batch, generator=None):
    return model(batch, stage="stage2", generator=generator)


def stored_loss_fn(store):
    """`loss_fn` that stores each computed prefix in `store` (`train.prefix_store`) under the batch's
    sample keys and completes a partly stored batch's prefix with its stored rows; batches built
    wholly from the store carry their prefix already."""
    from cordillera.model.processor import ACTIONS
    from cordillera.train.prefix_store import PREFIX_KEYS, STORED_ROWS, merge_rows

    def fn(model, batch, generator=None):
        keys, stored = batch.get(PREFIX_KEYS), batch.get(STORED_ROWS)

        def on_prefix(prefix):
            if stored is None:
                store.save(keys, prefix, batch[ACTIONS])
                return None
            store.save(keys, prefix, batch[ACTIONS][stored["computed"]])
            return merge_rows(prefix, stored, store.T)

        return model(batch, stage="stage2", generator=generator, on_prefix=None if keys is None else on_prefix)

    return fn


def joint_loss_fn(model, batch, generator=None):
    ce, ce_logs = model(batch, stage="stage1")
    fm, fm_logs = model(batch, stage="stage2", generator=generator)
    loss = ce + fm
    return loss, {"loss": loss.item(), "ce": ce.item(), "fm": fm.item(),
                  **{f"ce/{k}": v for k, v in ce_logs.items() if k != "loss"},
                  **{f"fm/{k}": v for k, v in fm_logs.items() if k != "loss"}}  # fmt: skip


@torch.no_grad()
def load_stage1_backbone(vla, directory: str | Path) -> int:
    """Copy the stage-1 checkpoint's `vlm.*` (and the auxiliary heads the model has, `stage1_heads`)
    tensors into `vla.model` (every key and shape checked, device and dtype kept). Returns the
    number of tensors loaded."""
    from safetensors.torch import load_file

    from cordillera.model.modeling import WEIGHTS_NAME

    path = Path(directory) / WEIGHTS_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (stage 1 checkpoint directory expected)")
    prefixes = ("vlm.",) + tuple(f"{name}." for name in vla.model.stage1_heads())
    state = {k: v for k, v in load_file(str(path)).items() if k.startswith(prefixes)}
    own = {k: v for k, v in vla.model.state_dict().items() if k.startswith(prefixes)}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path}: backbone keys differ: {len(missing)} missing {missing[:3]}, "
                         f"{len(unexpected)} unexpected {unexpected[:3]}")
    for k, t in own.items():
        if tuple(state[k].shape) != tuple(t.shape):
            raise ValueError(f"{path}: shape mismatch for {k}: checkpoint {tuple(state[k].shape)} vs model {tuple(t.shape)}")
        t.copy_(state[k].to(dtype=t.dtype, device=t.device))
    return len(own)


def build_model(cfg: TrainConfig, data: loop.RunData):
    from cordillera.model.hf_config import CordilleraVLAConfig
    from cordillera.model.modeling import CordilleraVLA

    if cfg.init_from:
        s1 = CordilleraVLAConfig.from_pretrained(cfg.init_from).to_vla()
        if s1.inputs.use_coc != cfg.use_coc:
            raise ValueError(f"{cfg.init_from} was trained with use_coc={s1.inputs.use_coc}, "
                             f"the run asks use_coc={cfg.use_coc}")
        vla_cfg = s1  # carries the action statistics the discrete tokens were trained with
    else:
        vla_cfg = loop.model_config(cfg)
        if data.dataset is not None:
            from cordillera.train.data import fit_action_stats

            vla_cfg = loop.with_action_stats(vla_cfg, fit_action_stats(data.train))
    if cfg.lane_reader_weight > 0:
        import dataclasses

        vla_cfg = vla_cfg.replace(loss=dataclasses.replace(
            vla_cfg.loss, lane_reader_weight=cfg.lane_reader_weight, lane_reader_lead=cfg.lane_reader_lead,
            lane_reader_input=cfg.lane_reader_input))  # fmt: skip
    loop.seed_everything(cfg.seed)
    vla = CordilleraVLA(vla_cfg)
    if cfg.init_from:
        n = load_stage1_backbone(vla, cfg.init_from)
        print(f"stage2: loaded {n} backbone tensors from {cfg.init_from}")
    if vla.model.lane_reader is not None:  # its tower starts as the (loaded) backbone's
        vla.model.lane_reader.visual.load_state_dict(vla.model.vlm.model.visual.state_dict())
    vla.model.requires_grad_(True)
    if cfg.stage == "stage2":
        vla.model.vlm.requires_grad_(False)
        for head in vla.model.stage1_heads().values():  # stage-1 heads; stage 2 has no loss for them
            head.requires_grad_(False)
    elif cfg.lora.enabled:
        loop.apply_lora(vla, cfg.lora)
    return vla


def _prefix_store(cfg: TrainConfig, vla):
    """The run's `train.prefix_store.PrefixStore`, or None (off, or unusable: the reason is printed)."""
    from cordillera.train import prefix_store
    from cordillera.train.data import cache_root

    if not cfg.prefix_cache:
        return None
    reason = prefix_store.unusable_reason(cfg, vla) or (None if cfg.init_from else "no init_from (stage-1 backbone)")
    if reason:
        print(f"stage2: prefix_cache off: {reason}")
        return None
    d = cfg.data
    settings = {"version": 2, "data_dir": str(Path(d.dir).resolve()), "use_coc": cfg.use_coc, "nav": d.nav,
                "nav_dropout": d.nav_dropout, "history_dropout": d.history_dropout, "coc_own": d.coc_own,
                "own_sampling": [cfg.eval.temperature, cfg.eval.top_p, cfg.seed] if d.coc_own > 0 else None,
                "config": (Path(cfg.init_from) / "config.json").read_text()}  # fmt: skip
    return prefix_store.PrefixStore(prefix_store.store_dir(cache_root(d), cfg.init_from, settings), vla.model.T)


def _freeze_eval(vla):
    vla.model.vlm.eval()


def train(cfg: TrainConfig, data: loop.RunData | None = None, stop_after: int | None = None) -> loop.FitResult:
    if cfg.stage not in ("stage2", "joint"):
        raise ValueError(f"stage2.train got stage {cfg.stage!r}")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    data = data or loop.open_data(cfg, loop.model_config(cfg))
    vla = build_model(cfg, data)
    tokenizer = None
    if cfg.init_from:
        from cordillera.model.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(vla.cfg, cfg.init_from)
    if cfg.stage == "stage2":
        store = _prefix_store(cfg, vla)
        if store is None:
            return loop.run_stage(cfg, vla, data, loss_fn, _freeze_eval, tokenizer, stop_after, desc="stage2")
        from cordillera.train.prefix_store import StoredPrefixCollate

        res = loop.run_stage(cfg, vla, data, stored_loss_fn(store), _freeze_eval, tokenizer, stop_after,
                             desc="stage2", wrap_collate=lambda collate: StoredPrefixCollate(collate, store))  # fmt: skip
        print(f"stage2: prefix store {store.writes} samples written, {store.hits} sample visits read from it "
              f"({store.size_bytes() / 2**30:.2f} GiB at {store.dir})")
        if res.step >= cfg.optim.max_steps:  # only a resumed run of this backbone could use it again
            store.remove()
        return res
    return loop.run_stage(cfg, vla, data, joint_loss_fn, None, tokenizer, stop_after, desc="joint")


def main(config: str = "train_stage2", overrides: list[str] | None = None) -> None:
    cfg = load_train_config(config, TrainConfig, overrides)
    loop.print_result(cfg.stage, train(cfg))
