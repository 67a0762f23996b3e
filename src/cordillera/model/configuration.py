"""Configuration of the cordillera VLA (backbone, expert, action space, flow matching, tokens).

This module holds only frozen dataclasses and the preset table; it imports neither torch nor
transformers (STYLE.md §5 "model/"). `model/hf_config.py` turns a `VLAConfig` into the
transformers configs, `model/modeling.py` builds the modules from them.

Token-id layout (spec/alpamayo_model.md §2.5). The vocabulary is

    [ base vocabulary (BPE or Qwen, incl. its chat/vision specials) | <i0> … <i{F+Hh-1}> | 28 specials ]
      0 … base_vocab_size-1                                            future bins, then history bins

The discrete `<i*>` block is added first, then the 28 special tokens in the order of
`SPECIAL_TOKEN_NAMES`. `<|image_pad|>` already lives in the base vocabulary and is reused, so
it is not re-added (its name stays in the ordered list at position 17 but is skipped). All ids
the model needs are derived here from `base_vocab_size` and `base_special_ids`, so the modeling
code never needs a tokenizer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# One list of the PhysicalAI-AV cameras for the whole project (render/rig.py, no torch there).
from cordillera.render.rig import CAMERA_NAMES, DEFAULT_MODEL_CAMERAS

__all__ = [
    "CAMERA_NAMES",
    "CAMERA_DISPLAY_NAMES",
    "DEFAULT_CAMERAS",
    "SPECIAL_TOKEN_NAMES",
    "ADDED_SPECIAL_TOKENS",
    "TextConfig",
    "VisionConfig",
    "ExpertConfig",
    "ActionInProjConfig",
    "FlowMatchingConfig",
    "TokenizerConfig",
    "InputConfig",
    "LossConfig",
    "VLAConfig",
    "PRESETS",
    "get_preset",
]

# --- cameras ------------------------------------------------------------------------------------
# [s] spec/alpamayo_model.md §2.1: index, PhysicalAI-AV feature name, A1.5 prompt display name.
CAMERA_DISPLAY_NAMES: dict[str, str] = {
    "camera_cross_left_120fov": "Front left camera",
    "camera_front_wide_120fov": "Front camera",
    "camera_cross_right_120fov": "Front right camera",
    "camera_rear_left_70fov": "Rear left camera",
    "camera_rear_tele_30fov": "Rear camera",
    "camera_rear_right_70fov": "Rear right camera",
    "camera_front_tele_30fov": "Front telephoto camera",
}
# Default four, sorted by index [0, 1, 2, 6]: cross-left, front-wide, cross-right, front-tele.
DEFAULT_CAMERAS: tuple[str, ...] = DEFAULT_MODEL_CAMERAS

# --- special tokens -----------------------------------------------------------------------------
# [s] spec/alpamayo_model.md §2.5: the 29 keys in add order (A1.5 names), rendered as <|key|>.
SPECIAL_TOKEN_NAMES: tuple[str, ...] = (
    "prompt_start", "prompt_end", "image_start", "_padding_0", "image_end",
    "traj_history_start", "_padding_1", "traj_history_end", "cot_start", "cot_end",
    "_padding_2", "_padding_3", "traj_future_start", "_padding_4", "traj_future_end",
    "traj_history", "traj_future", "image_pad", "_padding_5", "_padding_6",
    "_padding_7", "_padding_8", "route_start", "route_pad", "route_end",
    "question_start", "question_end", "answer_start", "answer_end",
)  # fmt: skip
# `<|image_pad|>` already exists in the base vocabulary, so 28 tokens are really added.
ADDED_SPECIAL_TOKENS: tuple[str, ...] = tuple(
    f"<|{name}|>" for name in SPECIAL_TOKEN_NAMES if name != "image_pad"
)
# Chat/vision tokens that must exist in the base vocabulary (Qwen names).
BASE_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
# [s] Qwen2.5/Qwen3 tokenizer ids (spec §2.5 and environment.md §3).
QWEN_BASE_SPECIAL_IDS: dict[str, int] = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
# Our own BPE puts the base specials first, at ids 0..7.
BPE_BASE_SPECIAL_IDS: dict[str, int] = {tok: i for i, tok in enumerate(BASE_SPECIAL_TOKENS)}


# --- backbone -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextConfig:
    """Qwen3-VL text decoder shapes (the VLM's language model)."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    intermediate_size: int = 1024
    rope_theta: float = 5_000_000.0  # [s] spec §1.3 (Qwen3-VL-8B)
    mrope_section: tuple[int, int, int] = (8, 12, 12)  # sums to head_dim / 2
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768

    def __post_init__(self):
        if sum(self.mrope_section) * 2 != self.head_dim:
            raise ValueError(
                f"mrope_section {self.mrope_section} must sum to head_dim/2 = {self.head_dim // 2}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} not divisible by "
                f"num_key_value_heads {self.num_key_value_heads}"
            )


@dataclass(frozen=True)
class VisionConfig:
    """Qwen3-VL vision tower shapes. `out_hidden_size` is the text hidden size (set by VLAConfig)."""

    depth: int = 2
    hidden_size: int = 128
    intermediate_size: int = 256
    num_heads: int = 4
    patch_size: int = 16  # [s] spec §1.3
    spatial_merge_size: int = 2  # [s] spec §1.3
    temporal_patch_size: int = 2  # [s] spec §1.3
    deepstack_visual_indexes: tuple[int, ...] = ()
    num_position_embeddings: int = 256  # learned 2-D grid, bilinearly interpolated (side² entries)

    def __post_init__(self):
        for i in self.deepstack_visual_indexes:
            if not 0 <= i < self.depth:
                raise ValueError(f"deepstack index {i} outside vision depth {self.depth}")


@dataclass(frozen=True)
class ExpertConfig:
    """Overrides applied to a copy of the text config to build the action expert (spec §1.2).

    The expert shares the VLM's per-layer KV cache, so it keeps the VLM's `num_key_value_heads`
    and `head_dim` and may not have more layers than the VLM.
    """

    hidden_size: int = 256
    intermediate_size: int = 512
    num_attention_heads: int = 4
    num_hidden_layers: int = 4


@dataclass(frozen=True)
class ActionInProjConfig:
    """`PerWaypointActionInProjV2` sizes (spec §4.3)."""

    num_enc_layers: int = 4  # [s] spec §4.3 class default
    hidden_size: int = 1024  # [s] spec §4.3 class default
    num_fourier_feats: int = 20  # [s] spec §4.3
    max_freq: float = 100.0  # [s] spec §4.3

    def __post_init__(self):
        if self.num_fourier_feats % 2:
            raise ValueError(f"num_fourier_feats must be even (sin+cos), got {self.num_fourier_feats}")
        if self.num_enc_layers < 1:
            raise ValueError(f"num_enc_layers must be >= 1, got {self.num_enc_layers}")


# --- flow matching ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlowMatchingConfig:
    """Rectified flow, t = 0 noise → t = 1 data (spec §4.1)."""

    num_inference_steps: int = 10  # [s] spec §4.1
    time_beta_alpha: float = 1.5  # [s] spec §4.1: s ~ Beta(1.5, 1), t = 0.999 (1 - s)
    time_beta_beta: float = 1.0
    time_scale: float = 0.999
    noise_temperature: float = 1.0  # [s] spec §4.1 (A1.5 x0 = randn · temperature)

    def __post_init__(self):
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if not 0.0 < self.time_scale <= 1.0:
            raise ValueError(f"time_scale must be in (0, 1], got {self.time_scale}")


# --- tokens -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenizerConfig:
    """Base vocabulary and the discrete future/history bins (spec §2.3, §2.5, §3.5)."""

    kind: str = "bpe"  # "bpe" (our byte-level BPE, shipped in assets/) or "qwen"
    base_vocab_size: int = 4096
    future_num_bins: int = 1000  # [s] spec §3.5 uses 3000; nano uses 1000 to keep the <i*> block small
    history_num_bins: int = 1000  # [s] spec §2.3
    # Range of the *normalised* (accel, curvature) actions binned by the future tokenizer.
    future_dims_min: tuple[float, float] = (-5.0, -5.0)
    future_dims_max: tuple[float, float] = (5.0, 5.0)
    # [s] spec §2.3 DeltaTrajectoryTokenizer class defaults [m].
    history_xyz_min: tuple[float, float, float] = (-4.0, -4.0, -10.0)
    history_xyz_max: tuple[float, float, float] = (4.0, 4.0, 10.0)
    tokens_per_history: int = 48  # [s] spec §2.3: 16 deltas × 3
    tokens_per_future: int = 128  # [s] spec §3.5: 64 × (a, κ)

    def __post_init__(self):
        if self.kind not in ("bpe", "qwen"):
            raise ValueError(f"tokenizer kind must be 'bpe' or 'qwen', got {self.kind!r}")
        if any(lo >= hi for lo, hi in zip(self.future_dims_min, self.future_dims_max)):
            raise ValueError(
                f"future_dims_min {self.future_dims_min} must be < future_dims_max {self.future_dims_max}"
            )

    @property
    def traj_vocab_size(self) -> int:
        return self.future_num_bins + self.history_num_bins


# --- inputs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputConfig:
    """Cameras, frames, image size and prompt flags."""

    image_height: int = 96
    image_width: int = 160
    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    frames_per_camera: int = 4  # [s] spec §2.1: t0-0.3 … t0
    history_steps: int = 16  # [s] spec §2.3
    future_steps: int = 64  # [s] spec §3.1
    include_camera_ids: bool = True  # [s] spec §8.1 (A1.5 release inferred true)
    include_frame_nums: bool = True
    image_mean: float = 0.5  # [s] spec §2.2 (Qwen3-VL preprocessor)
    image_std: float = 0.5
    system_prompt: str = "You are a driving assistant that generates safe and accurate actions."
    max_cot_tokens: int = 256  # [s] spec §4.2 examples pass max_generation_length=256
    # False = trajectory-only model (the no-CoC ablation): the instruction asks only for the
    # trajectory, training targets carry an empty CoC and sampling takes the fast path.
    use_coc: bool = True

    def __post_init__(self):
        for cam in self.cameras:
            if cam not in CAMERA_NAMES:
                raise ValueError(f"unknown camera {cam!r}; expected one of {CAMERA_NAMES}")
        if list(self.cameras) != sorted(self.cameras, key=CAMERA_NAMES.index):
            raise ValueError(f"cameras {self.cameras} must be in spec index order {CAMERA_NAMES}")


LANE_READER_INPUTS = ("raw", "bounded")


@dataclass(frozen=True)
class LossConfig:
    traj_weight: float = 1.0  # stage 1: token-mean CE over the trajectory span
    text_weight: float = 1.0  # stage 1: token-mean CE over the other labelled (CoC) tokens
    # stage 1, cordillera-only (not in the spec): > 0 adds the `vision_probe` head, which reads the
    # ego's lane (offset, heading, bearings ahead) from the image tokens' hidden states alone (they
    # precede the history in the causal prompt), so the vision tower must learn to see the road.
    vision_probe_weight: float = 0.0
    # the probe also reads the gap to the nearest object ahead in the ego's corridor (`LEAD_FIELDS`)
    vision_probe_lead: bool = False
    # stage 1, cordillera-only: > 0 adds the `decision_head`, a linear classifier of the CoC's
    # decisions (longitudinal; lateral with direction) from the backbone's state at `<|cot_start|>`,
    # the state the CoC is decoded from; its CE (mean of the two) is added with this weight.
    decision_head_weight: float = 0.0
    # stage 2, cordillera-only: > 0 adds the `lane_reader` — its own copy of the vision tower and a
    # `VisionProbe` head read the ego's lane from each camera's last frame (trained with this weight on
    # the probe's targets, beside the flow-matching loss), and a linear map, zero at initialisation, adds
    # the reading (detached) to every action token's input: the lane handed to the expert directly.
    lane_reader_weight: float = 0.0
    # the reader also reads the lead gap (`LEAD_FIELDS`) and hands it to the expert: a following or
    # braking decision read from the cameras rather than copied from the ego's own deceleration
    lane_reader_lead: bool = False
    # what the expert receives: "raw" = the reading in probe units (session 17), "bounded" =
    # `model.modeling.reader_features` (tanh-squashed lane, exp(−gap) lead)
    lane_reader_input: str = "raw"

    def __post_init__(self):
        if self.lane_reader_input not in LANE_READER_INPUTS:
            raise ValueError(f"lane_reader_input {self.lane_reader_input!r}: expected one of {LANE_READER_INPUTS}")
        if self.lane_reader_lead and self.lane_reader_weight <= 0:
            raise ValueError("lane_reader_lead without a lane reader (lane_reader_weight 0)")

    @property
    def reads_lead(self) -> bool:
        """Batches need the lead gap target (a lead vision probe or a lead-reading lane reader)."""
        return self.vision_probe_lead or self.lane_reader_lead


# --- top level ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class VLAConfig:
    name: str = "nano"
    text: TextConfig = field(default_factory=TextConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    action_in_proj: ActionInProjConfig = field(default_factory=ActionInProjConfig)
    flow: FlowMatchingConfig = field(default_factory=FlowMatchingConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # `cordillera.action.unicycle.ActionSpaceConfig.to_dict()`; empty = that class's defaults.
    action_space: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.expert.num_hidden_layers > self.text.num_hidden_layers:
            raise ValueError(
                f"expert layers {self.expert.num_hidden_layers} > backbone layers "
                f"{self.text.num_hidden_layers}: the expert shares the backbone's per-layer KV cache"
            )
        if self.expert.num_attention_heads % self.text.num_key_value_heads:
            raise ValueError(
                f"expert heads {self.expert.num_attention_heads} not divisible by the shared "
                f"num_key_value_heads {self.text.num_key_value_heads}"
            )
        unit = self.vision.patch_size * self.vision.spatial_merge_size
        if self.inputs.image_height % unit or self.inputs.image_width % unit:
            raise ValueError(
                f"image size {self.inputs.image_height}x{self.inputs.image_width} must be a "
                f"multiple of patch*merge = {unit}"
            )

    # ---- derived token ids (see module docstring) ----
    @property
    def base_special_ids(self) -> dict[str, int]:
        return QWEN_BASE_SPECIAL_IDS if self.tokenizer.kind == "qwen" else BPE_BASE_SPECIAL_IDS

    @property
    def traj_token_start_id(self) -> int:
        """Id of `<i0>` = first future bin."""
        return self.tokenizer.base_vocab_size

    @property
    def hist_token_start_id(self) -> int:
        """Id of the first history bin (`<i{future_num_bins}>`)."""
        return self.tokenizer.base_vocab_size + self.tokenizer.future_num_bins

    @property
    def special_ids(self) -> dict[str, int]:
        """`<|name|>` → id for the 28 added specials plus the base chat/vision tokens."""
        ids = dict(self.base_special_ids)
        nxt = self.tokenizer.base_vocab_size + self.tokenizer.traj_vocab_size
        for tok in ADDED_SPECIAL_TOKENS:
            ids[tok] = nxt
            nxt += 1
        return ids

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.base_vocab_size + self.tokenizer.traj_vocab_size + len(ADDED_SPECIAL_TOKENS)

    @property
    def num_image_tokens(self) -> int:
        """LLM tokens per image (one frame, duplicated over the temporal patch as Qwen does)."""
        gh = self.inputs.image_height // self.vision.patch_size
        gw = self.inputs.image_width // self.vision.patch_size
        return gh * gw // self.vision.spatial_merge_size**2

    # ---- serialisation ----
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VLAConfig:
        sub = {
            "text": TextConfig, "vision": VisionConfig, "expert": ExpertConfig,
            "action_in_proj": ActionInProjConfig, "flow": FlowMatchingConfig,
            "tokenizer": TokenizerConfig, "inputs": InputConfig, "loss": LossConfig,
        }  # fmt: skip
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown VLAConfig keys {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in sub:
                kw[k] = _dc_from_dict(sub[k], v)
            else:
                kw[k] = v
        return cls(**kw)

    def replace(self, **changes) -> VLAConfig:
        return dataclasses.replace(self, **changes)


def _dc_from_dict(cls, d: dict[str, Any]):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}")
    kw = {}
    for k, v in d.items():
        kw[k] = tuple(v) if isinstance(v, list) else v  # JSON lists back to tuples
    return cls(**kw)


# --- presets ------------------------------------------------------------------------------------
# `nano`: ~10M params, trains on a 2-core CPU. Our byte-level BPE (4096 entries incl. the 8 Qwen
# chat/vision specials) + 1000 future + 1000 history bins + 28 specials = 6124 rows. 96×160
# images → 15 LLM tokens per frame, 240 visual tokens for 4 cameras × 4 frames.
_NANO = VLAConfig(
    name="nano",
    text=TextConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=64, intermediate_size=1024, mrope_section=(8, 12, 12)),
    vision=VisionConfig(depth=2, hidden_size=128, intermediate_size=256, num_heads=4,
                        deepstack_visual_indexes=(0,), num_position_embeddings=256),
    expert=ExpertConfig(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_hidden_layers=4),
    action_in_proj=ActionInProjConfig(num_enc_layers=4, hidden_size=256),
    tokenizer=TokenizerConfig(kind="bpe", base_vocab_size=4096, future_num_bins=1000, history_num_bins=1000),
    inputs=InputConfig(image_height=96, image_width=160),
)  # fmt: skip

# `small`: ~50M params; H512 L8 backbone, 128×224 images (28 tokens/frame, 448 visual tokens).
_SMALL = VLAConfig(
    name="small",
    text=TextConfig(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                    head_dim=64, intermediate_size=2048, mrope_section=(8, 12, 12)),
    vision=VisionConfig(depth=4, hidden_size=256, intermediate_size=1024, num_heads=4,
                        deepstack_visual_indexes=(1, 2), num_position_embeddings=576),
    expert=ExpertConfig(hidden_size=384, intermediate_size=1024, num_attention_heads=6, num_hidden_layers=8),
    action_in_proj=ActionInProjConfig(num_enc_layers=4, hidden_size=512),
    tokenizer=TokenizerConfig(kind="bpe", base_vocab_size=4096, future_num_bins=1000, history_num_bins=1000),
    inputs=InputConfig(image_height=128, image_width=224),
)  # fmt: skip

# `alpamayo-10b`: Qwen3-VL-8B backbone [s] spec §1.3, 2.3B expert (inferred shapes, spec §1.3),
# Qwen vocabulary 151669 + 3000 + 1000 + 28 = 155697 [s] spec §2.5, 320×576 images [s] spec §2.2.
_ALPAMAYO_10B = VLAConfig(
    name="alpamayo-10b",
    text=TextConfig(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                    head_dim=128, intermediate_size=12288, rope_theta=5_000_000.0,
                    mrope_section=(24, 20, 20), max_position_embeddings=262144),
    vision=VisionConfig(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                        deepstack_visual_indexes=(8, 16, 24), num_position_embeddings=2304),
    expert=ExpertConfig(hidden_size=2048, intermediate_size=8192, num_attention_heads=16, num_hidden_layers=36),
    action_in_proj=ActionInProjConfig(num_enc_layers=4, hidden_size=1024),
    tokenizer=TokenizerConfig(kind="qwen", base_vocab_size=151669, future_num_bins=3000, history_num_bins=1000),
    inputs=InputConfig(image_height=320, image_width=576),
)  # fmt: skip

PRESETS: dict[str, VLAConfig] = {"nano": _NANO, "small": _SMALL, "alpamayo-10b": _ALPAMAYO_10B}


def get_preset(name: str) -> VLAConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
