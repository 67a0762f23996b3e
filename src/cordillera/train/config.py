"""Typed training configurations (pydantic, unknown keys fail) and the `key=value` override parser.

`TrainConfig` drives one stage (`stage1`, `stage2` or `joint`); `NanoConfig` drives the whole
`cordillera train nano` pipeline (data generation → split → stage 1 → stage 2 → open-loop eval →
export) and embeds one `TrainConfig` per stage. YAML presets: `configs/train_stage1.yaml`,
`configs/train_stage2.yaml`, `configs/train_nano.yaml`.

Spec hyper-parameters (spec/alpamayo_training_data.md §2.1/§2.2) are for fine-tuning an 8B
pretrained VLM; the nano presets train a ~10M model from scratch on a CPU and therefore use a
larger learning rate and fewer warm-up steps (each deviation is commented in the YAML files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from cordillera.config import ConfigError, StrictModel, load_config, preset_path

__all__ = [
    "DataSettings",
    "OptimSettings",
    "LoraSettings",
    "CheckpointSettings",
    "EvalSettings",
    "TrainConfig",
    "GenerateSettings",
    "NanoConfig",
    "parse_overrides",
    "load_train_config",
]


class DataSettings(StrictModel):
    # where
    dir: str = "data/nano"  # PhysicalAI-AV layout root (cordillera.data.writer)
    train_seeds: tuple[int, ...] | None = None  # scenario seeds of the training split (None = all but val)
    val_seeds: tuple[int, ...] | None = None  # scenario seeds held out for validation (None = by fraction)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # used when val_seeds is None
    # what
    per: Literal["event", "clip"] = "event"  # one sample per labelled t0, or the first per clip
    max_train_samples: int | None = Field(None, ge=1)
    # how
    num_workers: int = Field(0, ge=0)  # DataLoader worker processes (video decode + processor)
    frame_cache_frames: int = Field(64, ge=0)
    cache: bool = True  # decode every sample once into a memory-mapped cache (train.data.SampleCache)
    cache_dir: str | None = None  # None = <dir>/.cordillera/train_cache
    cache_workers: int = Field(2, ge=1)  # processes decoding the videos while the cache is built
    # navigation text (A1.5 `<|route_start|>…<|route_end|>`) from the driven route; dropped for a
    # fixed hashed share of samples so the route-free prompt (guidance's unconditional branch) is learned too
    nav: bool = True
    nav_dropout: float = Field(0.2, ge=0.0, le=1.0)
    # against the copycat planner (benchmarks/openloop_reaction.py): this hashed share of the training
    # samples sees a constant-velocity history at the current speed instead of the driven one, so a
    # change of speed or heading must be read from the cameras (validation keeps the real history)
    history_dropout: float = Field(0.0, ge=0.0, le=1.0)
    # stage 2, against an expert that obeys a wrong CoC: this hashed share of the training samples
    # carries another sample's label CoC in its prompt (`train.data.Collate`), so the expert must also
    # read the scene (history, lane reader); the model's own CoC at test time is often not about its scene
    coc_swap: float = Field(0.0, ge=0.0, le=1.0)
    # stage 2, against the same gap from the other side: this hashed share of the training samples
    # carries a CoC the frozen stage-1 backbone (init_from) sampled from the sample's own prompt at the
    # eval settings (eval.temperature / top_p: the closed-loop defaults) instead of the label, so the
    # expert learns how far the reasoning it will read predicts the future (train.own_coc; sampled once
    # before training and cached under cache_dir)
    coc_own: float = Field(0.0, ge=0.0, le=1.0)
    # against the copycat planner, by weighting instead of hiding: draw training samples with
    # probability ∝ 1 + hard_sample_weight · e / mean(e), e = how far the future strays from the
    # history's own constant speed and turn rate (train.data.history_surprise_m; keyframe-focused
    # imitation, Wen et al. 2021). 0 = every sample once per epoch
    hard_sample_weight: float = Field(0.0, ge=0.0)
    on_policy: bool = True  # False: leave on-policy (handover / DAgger) clips out of training


class OptimSettings(StrictModel):
    # schedule: linear warm-up, cosine to min_lr (spec: cosine_warmup_with_min_lr)
    lr: float = Field(1e-5, gt=0)  # [s] spec/alpamayo_training_data.md §2.1 stage 1
    min_lr: float = Field(1e-6, ge=0)  # [s] spec §2.1
    warmup_steps: int = Field(500, ge=0)  # [s] spec §2.1
    max_steps: int = Field(1000, ge=1)
    # AdamW [s] spec §2.1 (HF defaults); decay only on ≥2-D parameters
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0)  # [s] spec §2.1 max_grad_norm
    # per-group LR multipliers, longest-prefix match on VLAModel parameter names
    lr_multipliers: dict[str, float] = {}
    # batch
    batch_size: int = Field(8, ge=1)  # micro-batch per process
    grad_accum: int = Field(1, ge=1)
    # exponential moving average of the trained weights (None = off)
    ema_decay: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self):
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be <= lr ({self.lr})")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be <= max_steps ({self.max_steps})")
        return self


class LoraSettings(StrictModel):
    enabled: bool = False
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    # linear layers of the backbone's language model that get adapters
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class CheckpointSettings(StrictModel):
    out_dir: str = "runs/train/stage1"
    save_every: int = Field(500, ge=1)  # [s] spec §2.1 save_steps 500
    keep_last: int = Field(2, ge=1)  # [s] spec §2.1 save_total_limit 2
    resume: bool = True  # continue from out_dir/latest when it exists


class EvalSettings(StrictModel):
    every: int = Field(500, ge=1)  # steps between validation runs (and one at the end)
    num_samples: int = Field(256, ge=1)  # held-out samples per validation run
    batch_size: int = Field(8, ge=1)
    k: int = Field(6, ge=1)  # trajectory samples per prompt (minADE_k), spec/alpamayo_training_data.md §4 num_traj_samples
    flow_steps: int = Field(10, ge=1)  # Euler steps of the flow, spec/alpamayo_model.md §1.1
    coc_samples: int = Field(64, ge=0)  # stage 1: how many also decode a CoC (stage 2 decodes for every sample)
    max_new_tokens: int = Field(96, ge=1)
    temperature: float = Field(0.6, ge=0)  # CoC sampling temperature, spec/alpamayo_model.md §2.2 inference
    top_p: float = Field(0.98, gt=0, le=1)


class TrainConfig(StrictModel):
    stage: Literal["stage1", "stage2", "joint"] = "stage1"
    model: str = "nano"  # preset in cordillera.model.configuration.PRESETS
    init_from: str | None = None  # stage 1: a full checkpoint to start from; stage 2/joint: the stage-1 checkpoint
    use_coc: bool = True  # False = trajectory-only ablation (no reasoning tokens anywhere)
    # stage 1: weight of the vision-probe loss (`model.modeling.VisionProbe`; 0 = no probe head)
    vision_probe_weight: float = Field(0.0, ge=0.0)
    vision_probe_lead: bool = False  # the probe also reads the gap to the nearest object ahead
    # stage 1: weight of the decision head's CE (`model.modeling.DecisionHead`; 0 = no head; CoC models only)
    decision_head_weight: float = Field(0.0, ge=0.0)
    # stage 2: weight of the lane reader's loss (`model.modeling.LaneReader`: the ego's lane read from the
    # cameras by its own copy of the vision tower and handed to the expert; 0 = no reader)
    lane_reader_weight: float = Field(0.0, ge=0.0)
    lane_reader_lead: bool = False  # the reader also reads the lead gap and hands it to the expert
    # what the expert receives from the reading: "raw" probe units or "bounded" (`modeling.reader_features`)
    lane_reader_input: Literal["raw", "bounded"] = "raw"
    # stage 2: store each training sample's frozen-backbone K/V after its first visit and reuse it
    # (train.prefix_store; same loss up to float rounding; a stored step is ~3.8x faster, stage 2 ~2x
    # over the nano recipe's 3.4 epochs)
    prefix_cache: bool = True
    # a fresh model's input images (H, W) instead of the preset's; each a multiple of the vision
    # tower's patch × merge size (32 for nano: 96×160 → 15 tokens per frame, 128×224 → 28)
    image_hw: tuple[int, int] | None = None
    seed: int = 42  # [s] spec §2 misc.seed_everything(42)
    num_threads: int | None = Field(2, ge=1)  # torch.set_num_threads
    log_every: int = Field(10, ge=1)
    tensorboard: bool = True
    progress: bool = True
    data: DataSettings = DataSettings()
    optim: OptimSettings = OptimSettings()
    lora: LoraSettings = LoraSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    eval: EvalSettings = EvalSettings()

    @model_validator(mode="after")
    def _check(self):
        if self.decision_head_weight > 0 and not self.use_coc:
            raise ValueError("decision_head_weight > 0 with use_coc false: the head's targets are the CoC's decisions")
        if self.data.coc_swap > 0 and self.stage != "stage2":
            raise ValueError(f"data.coc_swap > 0 with stage {self.stage!r}: swapped CoCs would be learned as labels")
        if self.data.coc_own > 0:  # init_from (the backbone that samples them) is checked when they are sampled:
            # `cordillera train nano` fills it in after loading the config
            if self.stage != "stage2":
                raise ValueError(f"data.coc_own > 0 with stage {self.stage!r}: the model's own CoCs would be learned "
                                 "as labels")
            if self.data.coc_swap > 0:
                raise ValueError("data.coc_own and data.coc_swap are both > 0: choose one source of non-label CoCs")
        if self.lane_reader_lead and self.lane_reader_weight <= 0:
            raise ValueError("lane_reader_lead without a lane reader: set lane_reader_weight > 0")
        if self.lane_reader_weight > 0 and self.stage != "stage2":
            raise ValueError(f"lane_reader_weight > 0 with stage {self.stage!r}: the lane reader trains in stage 2")
        if self.stage == "stage2" and self.lora.enabled:
            raise ValueError("lora.enabled with stage 'stage2': the backbone is frozen in stage 2")
        if self.image_hw is not None and self.init_from:
            raise ValueError(f"image_hw {self.image_hw} with init_from {self.init_from}: a checkpoint keeps the "
                             "input size it was trained with")
        return self


class GenerateSettings(StrictModel):
    suite: str = "train"
    clips: int = Field(300, ge=1)
    image_height: int = Field(160, gt=0)  # rendered size; the nano model reads 96×160
    image_width: int = Field(288, gt=0)
    t0_start_us: int = Field(1_600_000, ge=1_600_000)  # [µs] spec §1.4 event filter t0 >= 1.6 s
    t0_every_us: int = Field(1_000_000, gt=0)
    workers: int | None = Field(None, ge=1)  # Ray workers (None = all cores, 1 = serial)
    perturb_fraction: float = Field(0.0, ge=0.0, le=1.0)  # share of training clips with a DART disturbance
    perturb_profile: Literal["push", "drift"] = "push"  # their ranges (sim.policies.perturbed.PERTURB_PROFILES)
    handover_from: str | None = None  # a VLA checkpoint: add on-policy clips it drives before the expert takes over
    handover_fraction: float = Field(0.0, ge=0.0, le=1.0)  # share of training scenarios with such a clip


class NanoConfig(StrictModel):
    out: str = "checkpoints/nano"
    ablation_out: str = "checkpoints/nano-traj-only"
    work_dir: str = "runs/nano"  # data, per-stage runs and logs
    ablation: bool = False  # also train the trajectory-only model
    coc: bool = True  # train the CoC model (coc: false + ablation: true = only the trajectory-only model)
    skip_generate: bool = False  # reuse work_dir/data when it is complete
    generate: GenerateSettings = GenerateSettings()
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # share of scenario seeds held out
    eval_samples: int = Field(300, ge=1)  # open-loop evaluation on val at the end
    stage1: TrainConfig = TrainConfig(stage="stage1")
    stage2: TrainConfig = TrainConfig(stage="stage2")
    # a trained stage-1 checkpoint: skip stage 1 and train only stage 2 on it (expert / data ablations)
    stage1_from: str | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.stage1_from is not None and (self.coc and self.ablation):
            raise ValueError("stage1_from names one stage-1 backbone: train one variant (coc or ablation), not both")
        if self.stage1.stage != "stage1":
            raise ValueError(f"stage1.stage must be 'stage1', got {self.stage1.stage!r}")
        if self.stage2.stage not in ("stage2", "joint"):
            raise ValueError(f"stage2.stage must be 'stage2' or 'joint', got {self.stage2.stage!r}")
        if not (self.coc or self.ablation):
            raise ValueError("nothing to train: coc and ablation are both false")
        return self


# ----------------------------------------------------------------------------------------------
def parse_overrides(overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """["optim.lr=3e-4", "data.dir=x"] → {"optim.lr": 0.0003, "data.dir": "x"} (values read as YAML)."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
    return out


def load_train_config(config: str | Path, model, overrides=None):
    """A preset name in `configs/` or a YAML path, with `key=value` overrides, into `model`."""
    p = Path(config)
    if p.suffix not in (".yaml", ".yml") and not p.exists():
        p = preset_path(str(config))
    return load_config(p, model, parse_overrides(overrides))
