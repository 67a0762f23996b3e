"""Stage 1 (spec/alpamayo_training_data.md §2.1): the backbone learns the CoC text and the 128
discrete trajectory tokens, teacher-forced.

    loss = traj_weight · CE(trajectory span: <|traj_future_start|>, 128 <i*>, <|traj_future_end|>)
         + text_weight · CE(every other labelled token: CoC text, <|cot_end|>, <|im_end|>)

both token-means in fp32 (`CordilleraVLA.forward(stage="stage1")`, weights 1:1 from
`VLAConfig.loss`). The whole VLM trains; the vision tower at a lower LR through
`optim.lr_multipliers` (`vlm.model.visual: 0.1` in configs/train_stage1.yaml). The action expert
does not exist in this stage (spec), so it and its projections stay frozen. Action normalisation
statistics are fitted on the training split and stored in the model config before training.
With `use_coc: false` (trajectory-only ablation) the targets carry an empty CoC. With
`vision_probe_weight > 0` the `VisionProbe` head's loss (road ahead from the vision tower's image tokens)
is added, with `decision_head_weight > 0` the `DecisionHead`'s (the CoC's decisions from the state at
`<|cot_start|>`); the heads are saved with the model and frozen in stage 2.
"""

from __future__ import annotations

from cordillera.train import loop
from cordillera.train.config import TrainConfig, load_train_config

__all__ = ["loss_fn", "build_model", "train", "main"]


def loss_fn(model, batch, generator=None):
    return model(batch, stage="stage1")


def build_model(cfg: TrainConfig, data: loop.RunData):
    """Fresh model (stats fitted on `data.train`) or `cfg.init_from`; only the VLM trains."""
    from cordillera.model.modeling import CordilleraVLA

    loop.seed_everything(cfg.seed)
    if cfg.init_from:
        vla = CordilleraVLA.from_pretrained(cfg.init_from)
        if vla.cfg.inputs.use_coc != cfg.use_coc:
            raise ValueError(f"{cfg.init_from} has use_coc={vla.cfg.inputs.use_coc}, the run asks use_coc={cfg.use_coc}")
    else:
        vla_cfg = loop.model_config(cfg)
        if data.dataset is not None:
            from cordillera.train.data import fit_action_stats

            vla_cfg = loop.with_action_stats(vla_cfg, fit_action_stats(data.train))
        vla = CordilleraVLA(vla_cfg)
    vla.model.requires_grad_(False)
    vla.model.vlm.requires_grad_(True)
    for head in vla.model.stage1_heads().values():
        head.requires_grad_(True)
    if cfg.lora.enabled:
        loop.apply_lora(vla, cfg.lora)
    return vla


def train(cfg: TrainConfig, data: loop.RunData | None = None, stop_after: int | None = None) -> loop.FitResult:
    if cfg.stage != "stage1":
        raise ValueError(f"stage1.train got stage {cfg.stage!r}")
    if cfg.num_threads:
        import torch

        torch.set_num_threads(cfg.num_threads)
    data = data or loop.open_data(cfg, loop.model_config(cfg))
    vla = build_model(cfg, data)
    return loop.run_stage(cfg, vla, data, loss_fn, stop_after=stop_after, desc="stage1")


def main(config: str = "train_stage1", overrides: list[str] | None = None) -> None:
    cfg = load_train_config(config, TrainConfig, overrides)
    loop.print_result("stage1", train(cfg))
