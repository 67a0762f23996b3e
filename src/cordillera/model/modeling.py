"""The cordillera VLA: Qwen3-VL backbone + flow-matching action expert (spec/alpamayo_model.md §1, §4).

Read top to bottom: parts (Fourier features, action input projection), the inner module
`VLAModel` (explicit tensors in, per-element losses out; the cache-sharing expert), then the
outer `CordilleraVLA` (batch dict in, `(loss, logs)` out; sampling, VQA, checkpoints).

How the expert sees the backbone (spec §1.2). Expert layer i is called with the backbone's
`DynamicCache`: its 64 action-token K/V are appended to layer i's entry, the queries attend to
[prefix + CoC keys] plus the 64 action keys, then the cache is cropped by 64 (`crop(-64)`,
environment.md §1). The 4-D float mask is 0 (attend) everywhere except left-padding columns and
columns after the row's `<|traj_future_start|>`; so the action tokens are bidirectional among
themselves and see the whole prefix, and the prefix never sees them (they come after it and are
removed again). Positions continue after `<|traj_future_start|>` on all 3 mRoPE axes.

Letters: B batch, K samples, L tokens, C cache length, T future steps (64), D width, V vocab.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import DynamicCache, Qwen3VLForConditionalGeneration, Qwen3VLTextModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from cordillera.model import flow_matching as fm
from cordillera.model.configuration import VLAConfig
from cordillera.model.drafting import NgramDraft
from cordillera.model.hf_config import CordilleraVLAConfig, expert_text_config, qwen3vl_config
from cordillera.model.processor import (
    ACTIONS,
    ATTENTION_MASK,
    COT_TEXT,
    EGO_HISTORY_ROT,
    EGO_HISTORY_XYZ,
    IGNORE_INDEX,
    IMAGE_GRID_THW,
    INPUT_IDS,
    LABELS,
    MM_TOKEN_TYPE_IDS,
    PIXEL_VALUES,
    UNCOND_PREFIX,
)

__all__ = [
    "FourierEncoder",
    "ActionInProj",
    "VisionProbe",
    "vision_probe_units",
    "vision_probe_normalise",
    "vision_probe_loss",
    "probe_fields",
    "LEAD_FIELDS",
    "LEAD_CLEAR_M",
    "PROBE_FIELDS",
    "LANE_AHEAD",
    "LANE_AHEAD_VALID",
    "VLAModel",
    "CordilleraVLA",
    "TrajectorySamples",
    "Stage2Prefix",
    "STAGE2_PREFIX",
    "PROMPT_TENSORS",
    "prompt_tensors",
    "forcing",
    "WEIGHTS_NAME",
    "CONFIG_NAME",
    "state_dict_shapes",
    "INFERENCE_DTYPES",
    "FP32_MODULE_PREFIXES",
    "parse_dtype",
]

WEIGHTS_NAME = "model.safetensors"
STAGE2_PREFIX = "stage2_prefix"  # batch key: a stored `Stage2Prefix` in place of the prompt tensors (stage 2)
# the processor's prompt tensors in the order `VLAModel.stage1_losses` / `stage2_prefix` take them
PROMPT_TENSORS = (INPUT_IDS, ATTENTION_MASK, PIXEL_VALUES, IMAGE_GRID_THW, MM_TOKEN_TYPE_IDS)
CONFIG_NAME = "config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Prefixes of our state dict = prefixes of the original's (spec §8.2). The map is explicit so a
# real checkpoint can be mapped key by key; A1-only buffers (action-space stats, Fourier freqs)
# are not weights and are dropped.
KEY_PREFIX_MAP = {"vlm.": "vlm.", "expert.": "expert.", "action_in_proj.": "action_in_proj.",
                  "action_out_proj.": "action_out_proj."}  # fmt: skip
DROPPED_ORIGINAL_PREFIXES = ("action_space.",)
# Batch keys of the vision probe's targets (SI, `PROBE_FIELDS` order) and their validity (B, F).
LANE_AHEAD, LANE_AHEAD_VALID = "lane_ahead", "lane_ahead_valid"
# cordillera-only heads (no counterpart in an original checkpoint), kept as they are on load.
STAGE1_HEAD_PREFIXES = ("vision_probe.", "decision_head.")  # trained with the backbone, frozen in stage 2
OWN_PREFIXES = STAGE1_HEAD_PREFIXES + ("lane_reader.",)
# Opt-in reduced-precision inference (issue #7): the weights are cast, buffers stay fp32. fp32 is
# the default everywhere (DESIGN: SDPA/fp32 on CPU); bf16 uses AMX/AVX512-BF16 matmuls.
INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
FP32_DECODE_MAX_ROWS = 8  # a bf16 model decodes up to this many rows with fp32 copies (`DecodeWeights`)
FP32_MODULE_PREFIXES = ("vlm.model.visual.", "lane_reader.")  # kept fp32 by `to_inference_dtype` (measured faster)


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU multiplies bf16 natively (the avx512_bf16 or amx_bf16 flag), from `cpuinfo`;
    None where that file cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'float32' / 'bfloat16' / 'fp32' / 'bf16' / a torch dtype / None (= float32) → torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in INFERENCE_DTYPES.values():
            raise ValueError(f"inference dtype must be one of {list(INFERENCE_DTYPES)}, got {dtype}")
        return dtype
    name = {"fp32": "float32", "bf16": "bfloat16"}.get(str(dtype).lower(), str(dtype).lower())
    if name not in INFERENCE_DTYPES:
        raise ValueError(f"inference dtype must be one of {list(INFERENCE_DTYPES)} (or fp32/bf16), got {dtype!r}")
    return INFERENCE_DTYPES[name]


# ---------------------------------------------------------------------------------------------
# parts
class LinearPatchEmbed(nn.Module):
    """Qwen3-VL's patch embedding computed as the matmul it is. The original is a Conv3d whose kernel
    equals its stride, applied to inputs that are exactly one kernel volume each, i.e. a linear map of
    the flattened patch; oneDNN's Conv3d took ~60x the time of that matmul on an AVX2 CPU (7 680
    patches, forward + backward), a whole stage-1 step 1.3x (benchmarks/RESULTS.md ## train_speed).
    Keeps the Conv3d as `proj`, so state-dict keys and shapes are the original's."""

    def __init__(self, embed: nn.Module):
        super().__init__()
        self.proj = embed.proj  # (D, C, T, P, P); flattened in the order `pixel_values` rows are
        if tuple(self.proj.kernel_size) != tuple(self.proj.stride):
            raise ValueError(f"patch embedding kernel {self.proj.kernel_size} != stride {self.proj.stride}")
        self.embed_dim = self.proj.out_channels

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        w = self.proj.weight
        x = hidden_states.reshape(-1, w[0].numel()).to(w.dtype)  # (N_patches, C*T*P*P)
        return F.linear(x, w.reshape(self.embed_dim, -1), self.proj.bias)


class FourierEncoder(nn.Module):
    """x (...) → √2·[sin(2π f x), cos(2π f x)] (..., dim), f = logspace(0, log10 max_freq, dim/2).

    [s] spec §4.3 `FourierEncoderV2(dim=20, max_freq=100)`; freqs are a non-persistent buffer (A1.5).
    """

    def __init__(self, dim: int = 20, max_freq: float = 100.0):
        super().__init__()
        freqs = torch.logspace(0.0, math.log10(max_freq), dim // 2)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * x.float()[..., None] * self.freqs  # (..., dim/2)
        return math.sqrt(2.0) * torch.cat([arg.sin(), arg.cos()], dim=-1)  # (..., dim)


class ActionInProj(nn.Module):
    """`PerWaypointActionInProjV2` (spec §4.3): per-waypoint tokens from noisy actions and t.

    Separate Fourier encoders for the 2 channels and for t (60 features per waypoint), then
    `trunk` = Linear→SiLU, (n−1)×[RMSNorm, Linear, SiLU], RMSNorm, Linear, then LayerNorm.
    """

    def __init__(self, out_dim: int, hidden: int = 1024, num_enc_layers: int = 4,
                 num_fourier_feats: int = 20, max_freq: float = 100.0, in_channels: int = 2):  # fmt: skip
        super().__init__()
        self.enc = nn.ModuleList(FourierEncoder(num_fourier_feats, max_freq) for _ in range(in_channels))
        self.t_enc = FourierEncoder(num_fourier_feats, max_freq)
        layers: list[nn.Module] = [nn.Linear(num_fourier_feats * (in_channels + 1), hidden), nn.SiLU()]
        for _ in range(num_enc_layers - 1):
            layers += [nn.RMSNorm(hidden, eps=1e-5), nn.Linear(hidden, hidden), nn.SiLU()]
        layers += [nn.RMSNorm(hidden, eps=1e-5), nn.Linear(hidden, out_dim)]
        self.trunk = nn.Sequential(*layers)
        self.out_norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, T, Dc = x.shape
        feats = [enc(x[..., c]) for c, enc in enumerate(self.enc)]  # Dc × (B, T, F)
        tf = self.t_enc(t.reshape(B)).unsqueeze(1).expand(B, T, -1)  # (B, T, F), same t for all waypoints
        h = torch.cat(feats + [tf], dim=-1)  # (B, T, 3F)
        return self.out_norm(self.trunk(h.to(self.trunk[0].weight.dtype)))  # (B, T, D_expert)


# The vision probe's targets: the ego's lane around and ahead of it at t0 (from the scenario map,
# `train.data.LaneAhead`), all of it visible in the cameras and none of it the driver's intent.
PROBE_AHEAD_M = (10.0, 20.0, 30.0, 40.0)  # [m] bearings of the lane centre this far ahead along the lane
PROBE_FIELDS = ("offset_m", "heading_rad", *(f"bearing_{int(d)}m_rad" for d in PROBE_AHEAD_M))
# Units the head predicts in (typical errors of a few units; a too-large unit leaves smooth-L1 in
# its flat quadratic zone — the first, path-based probe learned nothing that way, session 7).
PROBE_SCALES = (0.25, 0.02, *(0.02 for _ in PROBE_AHEAD_M))
# Optional (`LossConfig.vision_probe_lead`): the gap to the nearest object in the ego's corridor
# ahead at t0 (`train.data.lead_gap_m`), `LEAD_CLEAR_M` when there is none — what a following or
# braking decision turns on, read from the same last frames.
LEAD_FIELDS, LEAD_SCALES = ("lead_gap_m",), (2.0,)
LEAD_CLEAR_M = 60.0  # [m] "nothing ahead" (the tele camera still resolves a car at this range)


def probe_fields(lead: bool) -> tuple[str, ...]:
    """The probe's output fields: the lane's, then the lead gap when `lead`."""
    return PROBE_FIELDS + (LEAD_FIELDS if lead else ())


def _probe_scales(values: torch.Tensor) -> torch.Tensor:
    scales = (PROBE_SCALES + LEAD_SCALES)[: values.shape[-1]]
    if len(scales) != values.shape[-1]:
        raise ValueError(f"a vision probe reading has {len(PROBE_SCALES)} or {len(PROBE_SCALES) + len(LEAD_SCALES)} "
                         f"fields, got {values.shape[-1]}")
    return torch.tensor(scales, dtype=values.dtype, device=values.device)


def vision_probe_units(values: torch.Tensor) -> torch.Tensor:
    """Head outputs (..., F) in probe units → SI (m, rad) in `probe_fields` order."""
    return values * _probe_scales(values)


def vision_probe_normalise(values_si: torch.Tensor) -> torch.Tensor:
    """SI (..., F) → probe units (the inverse of `vision_probe_units`)."""
    return values_si / _probe_scales(values_si)


class VisionProbe(nn.Module):
    """Reads the ego's lane from the vision tower's outputs (cordillera-only, stage 1).

    The last frame of every camera, each merged image token projected to `proj` dims and
    concatenated in image order (the layout — where the lane markings are — is what carries the
    lane's shape), then an MLP to the `PROBE_FIELDS` (lateral offset from the lane centre, heading
    relative to the lane, bearings of the lane centre ahead) and, with `lead`, the `LEAD_FIELDS`.
    It reads the image tokens the text layers receive, before those layers, so its loss trains the
    vision tower to put the lane into them and leaves the text layers to the token losses. (Reading
    the text layers' last states at the image positions instead did not learn at the recipe's text
    rate, nor did an attention-pooling head: benchmarks/RESULTS.md ## vision_probe.)
    """

    def __init__(self, hidden: int, cameras: int, tokens_per_frame: int, proj: int = 32, width: int = 256,
                 lead: bool = False):
        super().__init__()
        self.cameras, self.tokens_per_frame = cameras, tokens_per_frame
        self.fields = probe_fields(lead)
        self.proj = nn.Linear(hidden, proj)
        self.mlp = nn.Sequential(nn.Linear(proj * tokens_per_frame * cameras, width), nn.GELU(),
                                 nn.Linear(width, len(self.fields)))  # fmt: skip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D): a row's image tokens in prompt order (camera-major, then frame) →
        predictions (B, F) in probe units."""
        B, N, D = tokens.shape
        per_camera = self.cameras * self.tokens_per_frame
        if N == 0 or N % per_camera:
            raise ValueError(f"the vision probe reads {self.cameras} cameras of frames of {self.tokens_per_frame} "
                             f"tokens; got {N} image tokens per row")
        return self.read_frames(tokens.reshape(B, self.cameras, -1, self.tokens_per_frame, D)[:, :, -1])

    def read_frames(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, cameras, tokens_per_frame, D): one frame per camera → predictions (B, F) in probe units."""
        return self.mlp(self.proj(x).flatten(1)).float()

    def loss(self, tokens: torch.Tensor, target_si: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """`vision_probe_loss` of this head's predictions."""
        return vision_probe_loss(self(tokens), target_si, valid)


def vision_probe_loss(pred: torch.Tensor, target_si: torch.Tensor, valid: torch.Tensor,
                      criterion: Callable = F.smooth_l1_loss) -> torch.Tensor:  # fmt: skip
    """`criterion` (smooth-L1) between predictions (B, F) in probe units and SI targets, mean over the
    valid (B, F) entries (0 with a graph when none is valid)."""
    err = criterion(pred, vision_probe_normalise(target_si.float()), reduction="none")
    return err[valid].mean() if valid.any() else err.sum() * 0.0


def select_images(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, idx: list[int]):
    """(pixel_values, image_grid_thw) of the images at `idx` (in `image_grid_thw` order) of a batch whose
    flattened patches are concatenated image after image."""
    chunks = pixel_values.split(image_grid_thw.prod(-1).tolist())
    return torch.cat([chunks[i] for i in idx]), image_grid_thw[idx]


class LaneReader(nn.Module):
    """The lane handed to the action expert (cordillera-only, stage 2; `LossConfig.lane_reader_weight`).

    Every nano model so far plans its lateral motion from its ego history, not its cameras: in
    closed loop it drifts off its lane on straight roads and holds its curvature into bends
    (benchmarks/RESULTS.md ## closed_loop_eval, Sessions 16–17), although a probe on its vision
    tower reads the bends. This module gives the expert that reading as an input: its own copy of
    the vision tower (initialised from the backbone's, trained — the backbone and its KV cache stay
    frozen) encodes the last frame of every camera, a `VisionProbe` head reads the `PROBE_FIELDS`
    (trained on `train.data.LaneAhead` targets), and `to_expert` (zero at initialisation, so a new
    reader starts as the plain expert) maps the reading, detached, to an offset added to every
    action token's input embedding. The reader's loss shapes what it reads; the flow-matching loss
    shapes only how the expert uses it."""

    def __init__(self, visual: nn.Module, hidden: int, cameras: int, tokens_per_frame: int, expert_hidden: int,
                 lead: bool = False, bounded: bool = False):  # fmt: skip
        super().__init__()
        self.visual = copy.deepcopy(visual)
        self.head = VisionProbe(hidden, cameras, tokens_per_frame, lead=lead)
        self.bounded = bool(bounded)
        self.to_expert = nn.Linear(len(self.head.fields), expert_hidden)
        nn.init.zeros_(self.to_expert.weight)
        nn.init.zeros_(self.to_expert.bias)

    def read(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The lane reading (B, F) in probe units from a prompt batch's images (camera-major, then
        frame, per row; only each camera's last frame is encoded)."""
        cams = self.head.cameras
        n_img = image_grid_thw.shape[0]
        if n_img % (batch_size * cams):
            raise ValueError(f"{n_img} images do not split into {batch_size} rows of {cams} cameras")
        frames = n_img // (batch_size * cams)
        last = [(r * cams + c) * frames + frames - 1 for r in range(batch_size) for c in range(cams)]
        pv, thw = select_images(pixel_values, image_grid_thw, last)
        tokens = self.visual(pv.to(self.to_expert.weight.dtype), grid_thw=thw, return_dict=True).pooler_output
        return self.head.read_frames(tokens.reshape(batch_size, cams, self.head.tokens_per_frame, -1))

    def expert_offset(self, reading: torch.Tensor) -> torch.Tensor:
        """(B, F) reading in probe units → (B, 1, D_e), added to every action token's input (through
        `reader_features` when `bounded`, else the probe units themselves)."""
        x = reader_features(reading.detach()) if self.bounded else reading.detach()
        return self.to_expert(x.to(self.to_expert.weight.dtype))[:, None, :]


# `LossConfig.lane_reader_input == "bounded"`: what the expert receives from a reading, each in (−1, 1)
# or (0, 1]. In probe units the bearings and the lead gap run to tens of units and a mis-read
# frame moves them by as much; squashed, a reading's error cannot push the expert far from its
# training range (session 17's raw reader raised the curvature FM loss: benchmarks/RESULTS.md).
READER_LANE_SCALES = (0.5, 0.05, *(0.05 for _ in PROBE_AHEAD_M))  # [m, rad, rad…] tanh(x / scale)
READER_LEAD_SCALE_M = 15.0  # [m] the lead gap enters as exp(−gap / this): 1 touching, 0.02 at LEAD_CLEAR_M


def reader_features(reading: torch.Tensor) -> torch.Tensor:
    """A lane reader's reading (B, F) in probe units (`probe_fields` order) → the bounded features
    the expert receives: tanh of the lane fields over `READER_LANE_SCALES`, then exp(−gap /
    `READER_LEAD_SCALE_M`) for a lead gap (clamped to [0, `LEAD_CLEAR_M`])."""
    si = vision_probe_units(reading.float())
    n = len(PROBE_FIELDS)
    lane = torch.tanh(si[:, :n] / torch.tensor(READER_LANE_SCALES, device=si.device))
    if si.shape[1] == n:
        return lane
    gap = si[:, n:].clamp(0.0, LEAD_CLEAR_M)
    return torch.cat([lane, torch.exp(-gap / READER_LEAD_SCALE_M)], dim=1)


class DecisionHead(nn.Module):
    """The CoC's decisions read linearly from the backbone's last state at `<|cot_start|>`
    (cordillera-only, stage 1): logits over `reasoning.schema.LONGITUDINAL_CLASSES` and
    `LATERAL_CLASSES`. Its CE reaches the text layers and the vision tower through that one state,
    which otherwise learns the decision only as one of the CoC's many tokens, wherever the
    paraphrase puts it (benchmarks/RESULTS.md ## openloop_reaction, decision probe)."""

    def __init__(self, hidden: int):
        super().__init__()
        from cordillera.reasoning.schema import LATERAL_CLASSES, LONGITUDINAL_CLASSES

        self.n_lon = len(LONGITUDINAL_CLASSES)
        self.linear = nn.Linear(hidden, self.n_lon + len(LATERAL_CLASSES))

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state (B, D) → (longitudinal logits (B, n_lon), lateral logits (B, n_lat)), fp32."""
        logits = self.linear(state).float()
        return logits[:, : self.n_lon], logits[:, self.n_lon :]

    def loss(self, state: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Mean of the longitudinal and lateral CE against class indices `target` (B, 2), and the
        accuracies of each (logs)."""
        lon, lat = self(state)
        loss = 0.5 * (F.cross_entropy(lon, target[:, 0]) + F.cross_entropy(lat, target[:, 1]))
        return loss, {"decision_acc_lon": (lon.argmax(1) == target[:, 0]).float().mean().item(),
                      "decision_acc_lat": (lat.argmax(1) == target[:, 1]).float().mean().item()}  # fmt: skip


def decision_targets(cot_texts: list[str], device=None) -> torch.Tensor:
    """The label CoCs' decision classes (B, 2) (`reasoning.schema.decision_classes` of each parse)."""
    from cordillera.reasoning.schema import decision_classes, parse

    return torch.tensor([decision_classes(parse(t)) for t in cot_texts], dtype=torch.long, device=device)


def _crop_layers(cache: DynamicCache, n_layers: int, n_tokens: int) -> None:
    """Remove the last `n_tokens` from the first `n_layers` layers (the ones the expert extended)."""
    for layer in cache.layers[:n_layers]:
        layer.crop(-n_tokens)


def _run_layers(text_model: Qwen3VLTextModel, h: torch.Tensor, cos_sin, mask: torch.Tensor | None, cache) -> torch.Tensor:
    """The HF decoder layers + final norm of `text_model`, with rotary cos/sin and the 4-D mask given.

    What `Qwen3VLTextModel.forward` does minus its per-call bookkeeping (mask building, rotary,
    output capturing): the inference hot loops precompute those once per plan.
    """
    for layer in text_model.layers:
        h = layer(h, position_embeddings=cos_sin, attention_mask=mask, past_key_values=cache)
    return text_model.norm(h)


class PrefixKV:
    """Read-only stand-in for the backbone cache in the expert's attention.

    Layer i's `update(k, v, i)` returns [prefix K/V ; action K/V] and stores nothing, so the
    backbone cache needs no append + `crop(-64)` per flow step and stays untouched by construction.
    """

    def __init__(self, cache: DynamicCache, n_layers: int):
        self.keys = [layer.keys for layer in cache.layers[:n_layers]]
        self.values = [layer.values for layer in cache.layers[:n_layers]]

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        return (torch.cat([self.keys[layer_idx], key_states], dim=2),
                torch.cat([self.values[layer_idx], value_states], dim=2))  # fmt: skip


class DecodeWeights:
    """fp32 copies of the text decoder and lm_head that a bf16 model decodes CoC tokens with.

    Decoding feeds 1–K rows per step, and on CPU bf16 GEMV has a ~45 µs per-call floor (fp32: 17 µs
    at one row; benchmarks/RESULTS.md model_latency Session 3), so the bf16 cast helped the prefill
    and the expert (hundreds of rows) but slowed decoding. A plain attribute, not a submodule: it is
    not in `parameters()` / `state_dict()`, and checkpoints are unchanged.
    """

    def __init__(self, text_model: Qwen3VLTextModel, lm_head: nn.Linear):
        self.text_model = copy.deepcopy(text_model).float()
        self.lm_head = copy.deepcopy(lm_head).float()


def _cast_cache(cache: DynamicCache, dtype: torch.dtype) -> None:
    """Cast every layer's cached K/V to `dtype` in place (a no-op when they already are)."""
    for layer in cache.layers:
        if layer.keys is not None and layer.keys.dtype != dtype:
            layer.keys, layer.values = layer.keys.to(dtype), layer.values.to(dtype)


@dataclass(frozen=True)
class ExpertContext:
    """Everything an expert call needs that does not depend on x_t or t (built once per plan)."""

    prefix: PrefixKV
    cos_sin: tuple[torch.Tensor, torch.Tensor]  # rotary of the T action positions, each (B, T, head_dim)
    mask: torch.Tensor  # (B, 1, T, C + T) additive float mask in the expert's dtype
    lane: torch.Tensor | None = None  # (B, 1, D_e) the lane reader's offset to the action tokens' inputs


@dataclass
class TrajectorySamples:
    """Output of `CordilleraVLA.sample_trajectories` (all tensors on CPU)."""

    xyz: torch.Tensor  # (B, K, T, 3) rig frame at t0
    rot: torch.Tensor  # (B, K, T, 3, 3) yaw-only rotations
    actions: torch.Tensor  # (B, K, T, 2) normalised (accel, curvature)
    noise: torch.Tensor  # (B, K, T, 2) the x0 the Euler integration started from
    coc_token_ids: torch.Tensor  # (B, K, n) generated ids (pad after <|traj_future_start|>)
    timings_ms: dict[str, float] = field(default_factory=dict)
    cache_len: dict[str, int] = field(default_factory=dict)
    decode_forwards: int = 0  # backbone forwards of the CoC decode (fewer than tokens when speculating)


# ---------------------------------------------------------------------------------------------
# inner module: explicit tensors in, per-element losses / velocities out
class VLAModel(nn.Module):
    def __init__(self, cfg: VLAConfig, device: torch.device | str | None = None):
        super().__init__()
        self.cfg = cfg
        qcfg = qwen3vl_config(cfg)
        self.vlm = Qwen3VLForConditionalGeneration(qcfg)
        self.vlm.model.visual.patch_embed = LinearPatchEmbed(self.vlm.model.visual.patch_embed)
        self.expert = Qwen3VLTextModel(expert_text_config(cfg, qcfg.text_config))
        del self.expert.embed_tokens  # [s] spec §1.1: the expert only takes inputs_embeds
        a = cfg.action_in_proj
        self.action_in_proj = ActionInProj(cfg.expert.hidden_size, a.hidden_size, a.num_enc_layers,
                                           a.num_fourier_feats, a.max_freq)  # fmt: skip
        self.action_out_proj = nn.Linear(cfg.expert.hidden_size, 2)
        self.vision_probe = None
        if cfg.loss.vision_probe_weight > 0:
            self.vision_probe = VisionProbe(cfg.text.hidden_size, len(cfg.inputs.cameras), cfg.num_image_tokens,
                                            lead=cfg.loss.vision_probe_lead)
        self.decision_head = DecisionHead(cfg.text.hidden_size) if cfg.loss.decision_head_weight > 0 else None
        self.lane_reader = None
        if cfg.loss.lane_reader_weight > 0:
            self.lane_reader = LaneReader(self.vlm.model.visual, cfg.text.hidden_size, len(cfg.inputs.cameras),
                                          cfg.num_image_tokens, cfg.expert.hidden_size, lead=cfg.loss.lane_reader_lead,
                                          bounded=cfg.loss.lane_reader_input == "bounded")  # fmt: skip
        ids = cfg.special_ids
        self.cot_start_id = ids["<|cot_start|>"]
        self.tfs_id = ids["<|traj_future_start|>"]
        self.tfe_id = ids["<|traj_future_end|>"]
        self.T = cfg.inputs.future_steps

    def stage1_heads(self) -> dict[str, nn.Module]:
        """The cordillera-only stage-1 heads this model has (`STAGE1_HEAD_PREFIXES` name → module): they
        train in stage 1 with the backbone and are frozen after it."""
        heads = {p.rstrip("."): getattr(self, p.rstrip(".")) for p in STAGE1_HEAD_PREFIXES}
        return {name: h for name, h in heads.items() if h is not None}

    # ---- backbone helpers ----
    def rope_positions(self, input_ids, mm_token_type_ids, image_grid_thw, attention_mask):
        """3-D mRoPE positions (3, B, L) for the prompt, computed once (no hidden model state)."""
        pos, _ = self.vlm.model.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw,
                                               attention_mask=attention_mask)  # fmt: skip
        return pos  # (3, B, L); padding columns are 0

    def image_features(self, pixel_values, image_grid_thw):
        return self.vlm.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)

    @staticmethod
    def image_tokens(feats, batch_size: int) -> torch.Tensor:
        """The merged image tokens of `image_features` as (B, N, D) rows (a row's images are
        consecutive in `image_grid_thw`; every row must hold as many)."""
        x = torch.cat(feats.pooler_output)
        if x.shape[0] % batch_size:
            raise ValueError(f"{x.shape[0]} image tokens do not split evenly over {batch_size} rows")
        return x.reshape(batch_size, -1, x.shape[-1])

    def image_features_cached(self, pixel_values, image_grid_thw, keys: list, store: dict):
        """`image_features` encoding only the images whose key is not in `store` yet.

        The Qwen3-VL vision tower is per image (position embeddings, rotary and cu_seqlens
        attention are built from each image's own grid), so an image's features do not depend
        on the other images in the call. `keys` (one per image, in `image_grid_thw` order) must
        identify the pixels, e.g. (camera, frame t_end_us) in closed loop; `store` maps key →
        (pooled (n, D), [deepstack (n, D)]) and is filled in place.
        """
        if len(keys) != image_grid_thw.shape[0]:
            raise ValueError(f"{len(keys)} image keys for {image_grid_thw.shape[0]} images")
        missing = [i for i, k in enumerate(keys) if k not in store]
        if missing:
            out = self.image_features(*select_images(pixel_values, image_grid_thw, missing))
            for j, i in enumerate(missing):
                store[keys[i]] = (out.pooler_output[j], [d[j] for d in out.deepstack_features])
        entries = [store[k] for k in keys]
        n_deep = len(entries[0][1])
        return BaseModelOutputWithDeepstackFeatures(
            pooler_output=tuple(e[0] for e in entries),
            deepstack_features=[tuple(e[1][i] for e in entries) for i in range(n_deep)],
        )

    def backbone(self, input_ids, attention_mask, position_ids, image_feats=None, mm_token_type_ids=None,
                 past_key_values=None):  # fmt: skip
        """Backbone hidden states (B, L, D) and the cache (image features precomputed or None)."""
        out = self.vlm.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            mm_encoder_outputs={"image": image_feats} if image_feats is not None else None,
            mm_token_type_ids=mm_token_type_ids,
            past_key_values=past_key_values,
            use_cache=past_key_values is not None,
        )
        return out.last_hidden_state, out.past_key_values

    # ---- expert ----
    def expert_mask(self, prefix_mask: torch.Tensor) -> torch.Tensor:
        """Prefix column mask (B, C) bool (True = may attend) → float (B, 1, T, C + T)."""
        B, C = prefix_mask.shape
        keep = torch.cat([prefix_mask, prefix_mask.new_ones(B, self.T)], dim=1)  # (B, C+T)
        m = torch.zeros(B, 1, self.T, C + self.T, dtype=torch.float32, device=prefix_mask.device)
        return m.masked_fill(~keep[:, None, None, :], torch.finfo(torch.float32).min)  # (B, 1, T, C+T)

    def expert_velocity(self, x_t: torch.Tensor, t: torch.Tensor, cache: DynamicCache,
                        positions: torch.Tensor, mask: torch.Tensor, lane: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """v(x_t, t) (B, T, 2) from the expert over `cache`; the cache is left as it was.

        x_t (B, T, 2) noisy normalised actions; t (B,) or scalar; positions (B, T) text positions
        of the action tokens; mask (B, 1, T, C+T) from `expert_mask`; lane (B, 1, D_e) the lane
        reader's offset to the action tokens' inputs (`LaneReader.expert_offset`) or None.
        """
        B, T, _ = x_t.shape
        t = t.expand(B) if t.ndim == 0 else t
        h = self.action_inputs(x_t, t, lane)  # (B, T, D_e)
        pos3 = positions[None].expand(3, B, T)  # (3, B, T) all mRoPE axes equal
        try:
            out = self.expert(inputs_embeds=h, attention_mask=mask.to(h.dtype), position_ids=pos3,
                              past_key_values=cache, use_cache=True).last_hidden_state  # (B, T, D_e)
        finally:
            _crop_layers(cache, self.cfg.expert.num_hidden_layers, T)
        return self.action_out_proj(out[:, -T:]).float()  # (B, T, 2)

    def action_inputs(self, x_t: torch.Tensor, t: torch.Tensor, lane: torch.Tensor | None) -> torch.Tensor:
        """The expert's input embeddings (B, T, D_e): `action_in_proj` of (x_t, t) (t (B,)), plus the lane
        reader's offset (B, 1, D_e) when given."""
        h = self.action_in_proj(x_t, t)
        return h if lane is None else h + lane.to(h.dtype)

    def expert_context(self, cache: DynamicCache, positions: torch.Tensor, mask: torch.Tensor,
                       lane: torch.Tensor | None = None) -> ExpertContext:  # fmt: skip
        """Precompute the flow-time-independent parts of `expert_velocity` (prefix K/V, rotary, mask,
        the lane reader's offset)."""
        B, T = positions.shape
        dtype = self.action_out_proj.weight.dtype
        probe = self.action_out_proj.weight[:1]  # rotary_emb only reads x's dtype and device
        cos_sin = self.expert.rotary_emb(probe, positions[None].expand(3, B, T))
        return ExpertContext(PrefixKV(cache, self.cfg.expert.num_hidden_layers), cos_sin, mask.to(dtype), lane)

    def expert_velocity_fast(self, x_t: torch.Tensor, t: torch.Tensor, ctx: ExpertContext) -> torch.Tensor:
        """`expert_velocity` with the per-plan work hoisted into `ctx`; same result (tests assert it)."""
        B = x_t.shape[0]
        t = t.expand(B) if t.ndim == 0 else t
        h = _run_layers(self.expert, self.action_inputs(x_t, t, ctx.lane), ctx.cos_sin, ctx.mask, ctx.prefix)
        return self.action_out_proj(h).float()  # (B, T, 2)

    # ---- losses ----
    def stage1_losses(self, input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids, labels):
        """Per-token next-token CE (B, L-1), the masks of trajectory and text targets, the image
        tokens (B, N, D) the text layers received (what the vision probe reads) and the last state
        at each row's first `<|cot_start|>` (B, D) (what the decision head reads; None in a row
        without one)."""
        pos = self.rope_positions(input_ids, mm_token_type_ids, image_grid_thw, attention_mask)
        feats = self.image_features(pixel_values, image_grid_thw)
        h, _ = self.backbone(input_ids, attention_mask, pos, feats, mm_token_type_ids)  # (B, L, D)
        tgt = labels[:, 1:]  # (B, L-1) token at i+1 predicted from position i
        sel = tgt != IGNORE_INDEX
        logits = self.vlm.lm_head(h[:, :-1][sel]).float()  # (N_sel, V) only labelled positions
        ce = torch.zeros(tgt.shape, dtype=torch.float32, device=h.device)
        ce[sel] = F.cross_entropy(logits, tgt[sel], reduction="none")
        t0 = self.cfg.traj_token_start_id
        is_traj = ((tgt >= t0) & (tgt < t0 + self.cfg.tokenizer.future_num_bins)) | (tgt == self.tfs_id) | (tgt == self.tfe_id)
        is_cot = input_ids == self.cot_start_id
        cot_state = h[torch.arange(h.shape[0], device=h.device), is_cot.int().argmax(1)] if is_cot.any(1).all() else None
        return ce, sel & is_traj, sel & ~is_traj, self.image_tokens(feats, input_ids.shape[0]), cot_state

    @torch.no_grad()
    def stage2_prefix(self, input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids) -> "Stage2Prefix":
        """What stage 2's expert reads from the frozen backbone: the detached K/V up to each row's last
        `<|traj_future_start|>` (spec §1.2 training: stop_grad_from_vlm) and the action tokens' positions."""
        B = input_ids.shape[0]
        is_tfs = input_ids == self.tfs_id
        if not is_tfs.any(dim=1).all():
            raise ValueError("stage 2 needs <|traj_future_start|> in every row")
        L = input_ids.shape[1]
        last = L - 1 - is_tfs.flip(1).int().argmax(dim=1)  # (B,) index of the last tfs per row
        cut = int(last.max()) + 1
        pos = self.rope_positions(input_ids, mm_token_type_ids, image_grid_thw, attention_mask)
        feats = self.image_features(pixel_values, image_grid_thw)
        cache = DynamicCache(config=self.vlm.config.text_config)
        self.backbone(input_ids[:, :cut], attention_mask[:, :cut], pos[:, :, :cut], feats,
                      mm_token_type_ids[:, :cut], past_key_values=cache)  # fmt: skip
        layers = cache.layers[:self.cfg.expert.num_hidden_layers]  # the expert reads only its own layers' K/V
        cols = torch.arange(cut, device=input_ids.device)
        prefix = attention_mask[:, :cut].bool() & (cols[None] <= last[:, None])  # (B, C)
        tfs_pos = pos[0, torch.arange(B), last]  # (B,)
        positions = tfs_pos[:, None] + 1 + torch.arange(self.T, device=input_ids.device)  # (B, T)
        return Stage2Prefix([layer.keys.detach() for layer in layers], [layer.values.detach() for layer in layers],
                            prefix, positions)  # fmt: skip

    def stage2_flow_error(self, prefix: "Stage2Prefix", actions, noise, t, lane: torch.Tensor | None = None):
        """Flow-matching squared error (B, T, 2) of the expert over a `stage2_prefix`; `lane` (B, 1, D_e):
        the lane reader's offset to the action tokens' inputs, or None."""
        B = actions.shape[0]
        cache = DynamicCache(config=self.expert.config)
        for i, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
            cache.update(k, v, i)
        x_t = fm.interpolate(actions, noise, t.view(B, 1, 1))
        v = self.expert_velocity(x_t, t, cache, prefix.positions, self.expert_mask(prefix.mask), lane)  # (B, T, 2)
        return (v - fm.target_velocity(actions, noise)) ** 2  # (B, T, 2)

    def stage2_losses(self, input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids,
                      actions, noise, t, lane: torch.Tensor | None = None):  # fmt: skip
        """Flow-matching squared error (B, T, 2) with the backbone frozen (spec §1.2 training)."""
        prefix = self.stage2_prefix(input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids)
        return self.stage2_flow_error(prefix, actions, noise, t, lane)


@dataclass
class Stage2Prefix:
    """The frozen backbone's context for stage 2's expert, per expert layer: keys / values
    (B, H_kv, C, head_dim) detached, `mask` (B, C) True on each row's prefix columns, `positions`
    (B, T) the action tokens' text positions. Keys carry their rotary already, so a row's columns
    can be stored alone (`rows`) and re-batched in any padding (`join`): the expert attends to
    the masked columns only."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    positions: torch.Tensor

    def rows(self) -> list[tuple[torch.Tensor, int]]:
        """Per row: (K/V of its prefix columns only (n_layers, 2, H_kv, C_r, head_dim), first action position)."""
        out = []
        for r in range(self.mask.shape[0]):
            cols = self.mask[r]
            kv = torch.stack([torch.stack([k[r][:, cols], v[r][:, cols]]) for k, v in zip(self.keys, self.values)])
            out.append((kv.contiguous(), int(self.positions[r, 0])))
        return out

    @classmethod
    def join(cls, rows: list[tuple[torch.Tensor, int]], T: int) -> "Stage2Prefix":
        """`rows` (as from `rows`) → one left-padded batch for T action tokens."""
        C = max(kv.shape[3] for kv, _ in rows)
        n_layers, _, H, _, D = rows[0][0].shape
        kv_all = rows[0][0].new_zeros(n_layers, 2, len(rows), H, C, D)
        mask = torch.zeros(len(rows), C, dtype=torch.bool, device=kv_all.device)
        for r, (kv, _) in enumerate(rows):
            kv_all[:, :, r, :, C - kv.shape[3]:] = kv
            mask[r, C - kv.shape[3]:] = True
        start = torch.tensor([p for _, p in rows], dtype=torch.long, device=kv_all.device)
        return cls(list(kv_all[:, 0]), list(kv_all[:, 1]), mask, start[:, None] + torch.arange(T, device=start.device))


# ---------------------------------------------------------------------------------------------
# sampling helpers
TOP_P_CANDIDATES = 64  # nucleus searched among the top 64 first: a full sort of ~6k logits costs ~20x a topk


def prompt_tensors(batch: dict) -> tuple:
    """The processor batch's `PROMPT_TENSORS`, positional arguments of `VLAModel.stage1_losses` / `stage2_prefix`."""
    return tuple(batch[k] for k in PROMPT_TENSORS)


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits outside the nucleus (the smallest most-likely set with mass ≥ top_p) set to −inf."""
    if top_p >= 1.0:
        return logits
    if logits.shape[-1] > TOP_P_CANDIDATES:
        top, idx = logits.topk(TOP_P_CANDIDATES, dim=-1)  # descending
        probs = (top - logits.logsumexp(-1, keepdim=True)).exp()  # of the full distribution
        if bool((probs.sum(-1) > top_p).all()):  # every row's nucleus ends inside the candidates
            drop = probs.cumsum(-1) - probs > top_p
            return torch.full_like(logits, float("-inf")).scatter_(-1, idx, top.masked_fill(drop, float("-inf")))
    sorted_logits, idx = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs > top_p  # keep the smallest set with mass >= top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, idx, sorted_logits)


def _probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution a token is sampled from (temperature > 0): tempered, nucleus-filtered softmax."""
    return _top_p_filter(logits / temperature, top_p).softmax(-1)


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(_probs(logits, temperature, top_p), 1, generator=generator)[:, 0]


def forcing(targets: torch.Tensor) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """A ``logits_processor`` for `CordilleraVLA.sample_trajectories` that makes row r emit
    ``targets[r, step]`` (rows past the end of ``targets`` emit its last column): teacher-forced
    reasoning at inference. End the targets with ``<|cot_end|><|traj_future_start|>``."""
    def process(step: int, logits: torch.Tensor) -> torch.Tensor:
        ids = targets[:, min(step, targets.shape[1] - 1)].to(logits.device)
        out = torch.full_like(logits, float("-inf"))
        out[torch.arange(len(ids), device=logits.device), ids] = 0.0
        return out

    return process


# ---------------------------------------------------------------------------------------------
# outer model: batch dict in, (loss, logs) out
class CordilleraVLA(nn.Module):
    def __init__(self, cfg: VLAConfig):
        super().__init__()
        self.cfg = cfg
        self.model = VLAModel(cfg)
        from cordillera.action.unicycle import ActionSpaceConfig

        self.action_cfg = ActionSpaceConfig.from_dict(cfg.action_space)
        self.ids = cfg.special_ids
        self.decode_weights: DecodeWeights | None = None  # set by `to_inference_dtype` for bf16

    # ---- training ----
    def forward(self, batch: dict[str, Any], stage: str = "stage1", generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, t: torch.Tensor | None = None,
                on_prefix: Callable[[Stage2Prefix], Stage2Prefix | None] | None = None):  # fmt: skip
        """`stage1`: CE over trajectory span + CoC; `stage2`: flow matching. Returns (loss, logs).

        Stage 2 reads the backbone's context from `batch[STAGE2_PREFIX]` when the batch carries one
        (a stored `Stage2Prefix`: the batch then needs only `actions`), else computes it and hands it
        to `on_prefix`, which may store it and may return the prefix to use instead (a partly stored
        batch's: its prompt tensors hold only the rows not stored, `actions` every row)."""
        m = self.model

        def args():  # a stage-2 batch with a stored prefix has no prompt tensors
            return prompt_tensors(batch)

        if stage == "stage1":
            ce, traj, text, image_tokens, cot_state = m.stage1_losses(*args(), batch[LABELS])
            loss_traj = ce[traj].mean() if traj.any() else ce.new_zeros(())
            loss_text = ce[text].mean() if text.any() else ce.new_zeros(())
            w = self.cfg.loss
            loss = w.traj_weight * loss_traj + w.text_weight * loss_text
            logs = {"ce_traj": loss_traj.item(), "ce_text": loss_text.item(),
                    "n_traj_tokens": int(traj.sum()), "n_text_tokens": int(text.sum())}  # fmt: skip
            if m.vision_probe is not None and batch.get(LANE_AHEAD) is not None:
                probe = m.vision_probe.loss(image_tokens, batch[LANE_AHEAD], batch[LANE_AHEAD_VALID])
                loss = loss + w.vision_probe_weight * probe
                logs["vision_probe"] = probe.item()
            if m.decision_head is not None:
                if cot_state is None:
                    raise ValueError("the decision head needs <|cot_start|> in every row (a CoC model's stage-1 batch)")
                dec, dec_logs = m.decision_head.loss(cot_state, decision_targets(batch[COT_TEXT], cot_state.device))
                loss = loss + w.decision_head_weight * dec
                logs.update(decision_ce=dec.item(), **dec_logs)
            return loss, {"loss": loss.item(), **logs}
        if stage == "stage2":
            x1 = batch[ACTIONS].float()  # (B, T, 2)
            B = x1.shape[0]
            f = self.cfg.flow
            if noise is None:
                noise = fm.sample_noise(tuple(x1.shape), generator, x1.device)
            if t is None:
                t = fm.sample_t((B,), generator, f.time_beta_alpha, f.time_beta_beta, f.time_scale, x1.device)
            reading = lane = None
            if m.lane_reader is not None:
                reading = m.lane_reader.read(batch[PIXEL_VALUES], batch[IMAGE_GRID_THW], B)
                lane = m.lane_reader.expert_offset(reading)
            prefix = batch.get(STAGE2_PREFIX)
            if prefix is None:
                prefix = m.stage2_prefix(*args())
                if on_prefix is not None:
                    prefix = on_prefix(prefix) or prefix
            per_elem = m.stage2_flow_error(prefix, x1, noise, t, lane)  # (B, T, 2)
            loss = per_elem.mean()
            logs = {"fm_accel": per_elem[..., 0].mean().item(), "fm_curvature": per_elem[..., 1].mean().item()}
            if reading is not None and batch.get(LANE_AHEAD) is not None:
                F_ = reading.shape[1]  # the reader's fields (a lead-probe model's batches may carry the lead gap too)
                read_loss = vision_probe_loss(reading, batch[LANE_AHEAD][:, :F_], batch[LANE_AHEAD_VALID][:, :F_])
                logs["fm"] = loss.item()
                loss = loss + self.cfg.loss.lane_reader_weight * read_loss
                logs["lane_reader"] = read_loss.item()
            return loss, {"loss": loss.item(), **logs}
        raise ValueError(f"stage must be 'stage1' or 'stage2', got {stage!r}")

    # ---- decoding primitives ----
    def _prompt_forward(self, batch, prefix: str = "", image_feats=None, cache=None):
        """The backbone over a (left-padded) prompt batch: (last hidden states (B, L, D), mRoPE
        positions (3, B, L), image features), filling `cache` when given."""
        m = self.model
        ids, am = batch[prefix + INPUT_IDS], batch[prefix + ATTENTION_MASK]
        mm = batch[prefix + MM_TOKEN_TYPE_IDS]
        pos = m.rope_positions(ids, mm, batch[IMAGE_GRID_THW], am)  # (3, B, L)
        if image_feats is None:
            image_feats = m.image_features(batch[PIXEL_VALUES], batch[IMAGE_GRID_THW])
        h, _ = m.backbone(ids, am, pos, image_feats, mm, past_key_values=cache)
        return h, pos, image_feats

    @torch.no_grad()
    def prompt_state(self, batch) -> torch.Tensor:
        """The backbone's last state at the prompt's end (B, D): for a CoC prompt the state at
        `<|cot_start|>`, which the first CoC token and the decision head are read from."""
        return self._prompt_forward(batch)[0][:, -1]

    def _prefill(self, batch, prefix: str = "", image_feats=None):
        """Run the prompt once. Returns (last logits (B, V), cache, next positions (B,), mask (B, C), feats)."""
        cache = DynamicCache(config=self.model.vlm.config.text_config)
        h, pos, image_feats = self._prompt_forward(batch, prefix, image_feats, cache)
        logits = self.model.vlm.lm_head(h[:, -1]).float()  # (B, V) only the last position is needed
        next_pos = pos.amax(dim=(0, 2)) + 1  # (B,) text position of the next token
        return logits, cache, next_pos, batch[prefix + ATTENTION_MASK].bool(), image_feats

    def _step(self, tokens: torch.Tensor, cache, next_pos: torch.Tensor, mask: torch.Tensor):
        """Feed tokens (B, n) after the cache. Returns (last logits (B, V), new mask (B, C+n))."""
        B, n = tokens.shape
        mask = torch.cat([mask, mask.new_ones(B, n)], dim=1)  # (B, C+n)
        pos = (next_pos[:, None] + torch.arange(n, device=tokens.device))[None].expand(3, B, n)  # (3, B, n)
        h, _ = self.model.backbone(tokens, mask.long(), pos, None, None, past_key_values=cache)
        return self.model.vlm.lm_head(h[:, -1]).float(), mask

    def _fp32_decode(self, rows: int) -> bool:
        """Decode `rows` rows with the fp32 copies? A bf16 model's small batches (K ≤ 8): at 1 and 6
        rows bf16 GEMV lost to fp32 (benchmarks/RESULTS.md model_latency Session 5, back-to-back runs;
        `F.linear` micro-benchmark of Session 3); from a few dozen rows bf16 wins."""
        return self.decode_weights is not None and rows <= FP32_DECODE_MAX_ROWS

    def _token_stepper(self, cache, next_pos: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                       banned: torch.Tensor | None = None):  # fmt: skip
        """`step(tok (B,), s) → logits (B, V)` feeding one token per call at text position next_pos + s;
        `step.block(toks (B, n), s) → logits (B, n, V)` feeds n at once (causal among them).

        Rotary cos/sin of all `max_new_tokens` positions and the additive padding mask are built
        once here; each step runs only the embedding, the HF decoder layers, norm and lm_head.
        Same result as `_step` (a single query needs no causal mask; no padding → no mask at all).
        `banned` ids get −inf without their lm_head rows being computed (the 2000 `<i*>` rows are
        a third of the nano lm_head).
        """
        lm, head = self.model.vlm.model.language_model, self.model.vlm.lm_head
        B, C = mask.shape
        if self._fp32_decode(B):  # a bf16 model decodes small batches with fp32 copies (cache cast by `_decode`)
            lm, head = self.decode_weights.text_model, self.decode_weights.lm_head
        pos = (next_pos[:, None] + torch.arange(max_new_tokens, device=mask.device))[None].expand(3, B, -1)
        cos, sin = lm.rotary_emb(lm.embed_tokens.weight[:1], pos)  # (B, n, head_dim) each
        add = None
        if not bool(mask.all()):
            keep = torch.cat([mask, mask.new_ones(B, max_new_tokens)], dim=1)
            add = torch.zeros(B, 1, 1, C + max_new_tokens, dtype=cos.dtype, device=mask.device)
            add.masked_fill_(~keep[:, None, None, :], torch.finfo(cos.dtype).min)

        V = head.weight.shape[0]
        keep = None
        if banned is not None:
            allowed = torch.ones(V, dtype=torch.bool, device=mask.device)
            allowed[banned] = False
            keep = allowed.nonzero()[:, 0]
            w_keep = head.weight[keep]  # (V_keep, D) copied once per plan

        def block(toks: torch.Tensor, s: int) -> torch.Tensor:
            """Feed toks (B, n) at steps s … s+n−1 → logits (B, n, V) after each of them."""
            n = toks.shape[1]
            m4 = None if add is None else add[..., : C + s + n]
            if n > 1:  # causal among the new tokens (one query needs none)
                causal = torch.full((n, n), torch.finfo(cos.dtype).min, dtype=cos.dtype, device=toks.device).triu(1)
                m4 = (torch.zeros(B, 1, 1, C + s + n, dtype=cos.dtype, device=toks.device) if m4 is None else m4)
                m4 = m4.expand(B, 1, n, C + s + n).clone()
                m4[..., C + s:] += causal
            h = _run_layers(lm, lm.embed_tokens(toks), (cos[:, s:s + n], sin[:, s:s + n]), m4, cache)
            if keep is None:
                return head(h).float()
            logits = torch.full((B, n, V), float("-inf"), device=h.device)
            return logits.index_copy_(2, keep, F.linear(h, w_keep).float())

        def step(tok: torch.Tensor, s: int) -> torch.Tensor:
            return block(tok[:, None], s)[:, -1]

        step.block = block
        return step

    def _decode(self, logits, cache, next_pos, mask, stop_id, max_new_tokens, temperature, top_p, generator,
                min_new_tokens=0, banned: torch.Tensor | None = None, end_ids=(),
                logits_processor: Callable | None = None, optimized: bool = True,
                draft: NgramDraft | None = None):  # fmt: skip
        """Sample until every row emitted `stop_id`; feed that token too, so its K/V is cached.

        Rows still running at `max_new_tokens` are forced to emit `stop_id` (spec §5.2 falls back
        to the last position instead). `optimized=False` feeds each token through the full HF
        model call (`_step`, the reference path). `draft` (one row, optimized path): speculative
        decoding from its proposals (`_speculate`). Returns (generated ids (B, n), stop column (B,),
        stop position (B,), mask, next_pos, forwards).
        """
        B = logits.shape[0]
        pad = self.ids["<|endoftext|>"]
        bias = None  # additive −inf on the banned ids, built once instead of an index_put per token
        if banned is not None:
            bias = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
            bias[banned] = float("-inf")

        def rules(step: int, lg: torch.Tensor) -> torch.Tensor:
            """The logits a token of `step` is drawn from: banned ids, no end before
            `min_new_tokens`, the caller's processor, the forced stop at the last step."""
            if bias is not None:
                lg = lg + bias
            if step < min_new_tokens:
                lg = lg.clone()
                lg[:, [stop_id, *end_ids]] = float("-inf")
            if logits_processor is not None:
                lg = logits_processor(step, lg)
            if step == max_new_tokens - 1:
                lg = torch.full_like(lg, float("-inf"))
                lg[:, stop_id] = 0.0
            return lg

        if optimized:
            if self._fp32_decode(B):
                _cast_cache(cache, torch.float32)
            step_fn = self._token_stepper(cache, next_pos, mask, max_new_tokens, banned)
        else:
            state = {"mask": mask}

            def step_fn(tok, s):
                out_logits, state["mask"] = self._step(tok[:, None], cache, next_pos + s, state["mask"])
                return out_logits

        C = mask.shape[1]
        if draft is not None and optimized and B == 1:
            out, forwards = self._speculate(logits, cache, C, step_fn, rules, stop_id, max_new_tokens, temperature,
                                            top_p, generator, draft)  # fmt: skip
            gen = torch.tensor([out], dtype=torch.long, device=logits.device)
            stop_col = torch.full((1,), C + len(out) - 1, dtype=torch.long, device=logits.device)
            stop_pos = next_pos + len(out) - 1
        else:
            done = torch.zeros(B, dtype=torch.bool, device=logits.device)
            stop_col = torch.zeros(B, dtype=torch.long, device=logits.device)
            stop_pos = torch.zeros(B, dtype=torch.long, device=logits.device)
            cols = []
            for step in range(max_new_tokens):
                tok = _sample(rules(step, logits), temperature, top_p, generator)
                tok = torch.where(done, torch.full_like(tok, pad), tok)
                newly = (tok == stop_id) & ~done
                stop_col[newly] = C + step
                stop_pos[newly] = next_pos[newly] + step
                done |= newly
                cols.append(tok)
                logits = step_fn(tok, step)
                if done.all():
                    break
            gen, forwards = torch.stack(cols, dim=1), len(cols)
        n = gen.shape[1]
        _cast_cache(cache, self.dtype)  # the expert and later steps read it in the weights' dtype
        mask = torch.cat([mask, mask.new_ones(B, n)], dim=1)
        return gen, stop_col, stop_pos, mask, next_pos + n, forwards

    @staticmethod
    def _speculate(logits, cache, C: int, step_fn, rules, stop_id: int, max_new_tokens: int, temperature: float,
                   top_p: float, generator, draft: NgramDraft) -> tuple[list[int], int]:  # fmt: skip
        """One row's tokens (ending with `stop_id`) by speculative sampling: each forward feeds the
        sampled token plus the draft's proposal after it, and keeps the proposed tokens while the
        model accepts them — token d with probability p(d) (the draft is deterministic, q(d) = 1),
        else the next token is drawn from p without d. That is exact speculative sampling (Leviathan
        et al. 2023, Chen et al. 2023) for a one-point draft: every token has the model's own
        distribution, whatever the draft says. Greedy (temperature ≤ 0) keeps d iff it is the argmax.
        Returns (tokens, forwards)."""
        out: list[int] = []
        pending: int | None = None  # a token drawn (after a rejection) but not yet fed
        forwards = 0
        while True:
            s = len(out)
            tok = pending if pending is not None else int(_sample(rules(s, logits), temperature, top_p, generator)[0])
            pending = None
            room = max_new_tokens - 2 - s  # proposals may fill steps up to max−2: the last one is the forced stop
            d = draft.propose([*out, tok], min(room, draft.max_draft)) if tok != stop_id and room > 0 else []
            if stop_id in d:
                d = d[: d.index(stop_id) + 1]
            block = step_fn.block(torch.tensor([[tok, *d]], device=logits.device), s)  # (1, 1 + len(d), V)
            forwards += 1
            out.append(tok)
            if d:  # judge every proposal at once; keep the accepted prefix
                lg = torch.cat([rules(s + 1 + j, block[:, j]) for j in range(len(d))])  # (n, V)
                d_t = torch.tensor(d, device=lg.device)
                rows = torch.arange(len(d), device=lg.device)
                if temperature <= 0:
                    best = lg.argmax(-1)
                    ok = best == d_t
                else:
                    probs = _probs(lg, temperature, top_p)
                    ok = torch.rand(len(d), generator=generator) < probs[rows, d_t]
                a = int(ok.long().cumprod(0).sum())  # accepted proposals
                out.extend(d[:a])
                if a < len(d):  # the first rejected one: the next token comes from p without it
                    if temperature <= 0:
                        pending = int(best[a])
                    else:
                        p_a = probs[a].clone()
                        p_a[d[a]] = 0.0
                        pending = int(torch.multinomial(p_a / p_a.sum(), 1, generator=generator)[0])
                else:
                    logits = block[:, len(d)]
            else:
                logits = block[:, 0]
            extra = cache.get_seq_length() - (C + len(out))
            if extra:  # drop the K/V of rejected proposals (transformers 5 crops by a negative count)
                cache.crop(-extra)
            if out[-1] == stop_id:
                return out, forwards

    @staticmethod
    def _expand(x: torch.Tensor, K: int) -> torch.Tensor:
        return x.repeat_interleave(K, dim=0)

    # ---- trajectories ----
    @torch.no_grad()
    def sample_trajectories(
        self,
        batch: dict[str, Any],
        num_samples: int = 1,
        temperature: float = 0.6,  # [s] spec §5.1 defaults
        top_p: float = 0.98,
        flow_steps: int | None = None,
        fast: bool = False,
        guidance: float = 1.0,
        max_new_tokens: int | None = None,
        min_new_tokens: int = 0,
        noise: torch.Tensor | None = None,
        noise_temperature: float | None = None,
        generator: torch.Generator | None = None,
        logits_processor: Callable | None = None,
        optimized: bool = True,
        image_keys: list | None = None,
        image_store: dict | None = None,
        draft: NgramDraft | None = None,
    ) -> TrajectorySamples:
        """K trajectories per batch row: CoC decode (or the fast path) then the expert's Euler steps.

        - The prompt is prefilled once; the cache is then repeated K times (`batch_repeat_interleave`),
          so the K samples share the prefix and decode independent CoCs with independent noise.
        - CoC decoding masks the logits of every `<i*>` token to −inf and stops one token after
          `<|traj_future_start|>` (its K/V is in the cache).
        - `fast=True` skips CoC decoding: `<|cot_end|><|traj_future_start|>` is fed after the
          prompt (which ends with the prefill `<|cot_start|>`), so the expert conditions on
          `<|cot_start|><|cot_end|><|traj_future_start|>`, i.e. an empty CoC, as the
          trajectory-only training target does.
        - `guidance` w ≠ 1 with a nav prompt (`uncond_*` keys): the CoC is decoded once with nav,
          a second cache is built from the prompt without the route span (image features reused)
          with the same generated tokens replayed, and v = (1 − w) v_uncond + w v_cond (spec §4.2).
        - `noise` (B, K, T, 2) fixes x0; otherwise it is drawn from `generator`.
        - `optimized=False` runs the reference implementation (one full HF model call per CoC
          token, the expert appending to and cropping the cache every flow step); the default
          path precomputes rotary/mask/prefix K/V once and must give the same numbers.
        - `image_keys` + `image_store`: reuse vision features of images seen before
          (`VLAModel.image_features_cached`; closed loop encodes only the newest frame per camera).
        - `draft` (`drafting.NgramDraft`): with one row to decode (B·K = 1), CoC tokens are decoded
          speculatively from its proposals — same distribution, fewer forwards
          (`decode_forwards`); every decoded row is then added to it, so it learns the model's own
          phrasing as plans go by.
        - Precision follows the weights: after `to_inference_dtype("bfloat16")` (or
          `from_pretrained(..., dtype="bfloat16")`) the matmuls run in bf16 while logits, the flow
          state and the returned tensors stay float32 (same as the fp32 model's outputs).
        """
        from cordillera.action.unicycle import action_to_traj

        m = self.model
        fast = fast or not self.cfg.inputs.use_coc  # a trajectory-only model never writes a CoC
        K, T = num_samples, self.cfg.inputs.future_steps
        steps = flow_steps or self.cfg.flow.num_inference_steps
        max_new = max_new_tokens or self.cfg.inputs.max_cot_tokens
        timings: dict[str, float] = {}
        tic = time.perf_counter()
        if image_store is not None and image_keys is not None:
            feats = m.image_features_cached(batch[PIXEL_VALUES], batch[IMAGE_GRID_THW], image_keys, image_store)
        else:
            feats = m.image_features(batch[PIXEL_VALUES], batch[IMAGE_GRID_THW])
        lane = None  # the lane reader's offset to the expert's action tokens, one per row
        if m.lane_reader is not None:
            rows = batch[INPUT_IDS].shape[0]
            lane = m.lane_reader.expert_offset(m.lane_reader.read(batch[PIXEL_VALUES], batch[IMAGE_GRID_THW], rows))
        timings["vision_ms"] = (time.perf_counter() - tic) * 1e3

        tic = time.perf_counter()
        logits, cache, next_pos, mask, _ = self._prefill(batch, image_feats=feats)
        B = logits.shape[0]
        lane = None if lane is None else self._expand(lane, K)  # (B·K, 1, D_e)
        prompt_len = mask.shape[1]
        if fast:  # feed <|cot_end|><|traj_future_start|> once per row, then share it across K
            tail = torch.tensor([self.ids["<|cot_end|>"], m.tfs_id], device=logits.device).expand(B, 2)
            _, mask = self._step(tail, cache, next_pos, mask)
            stop_col = torch.full((B,), prompt_len + 1, dtype=torch.long)
            stop_pos = next_pos + 1
            gen = tail.clone()
            cache.batch_repeat_interleave(K)
            mask, stop_col, stop_pos, gen = (self._expand(x, K) for x in (mask, stop_col, stop_pos, gen))
        timings["prefill_ms"] = (time.perf_counter() - tic) * 1e3

        tic = time.perf_counter()
        forwards = 0
        if not fast:
            cache.batch_repeat_interleave(K)
            logits, next_pos, mask = (self._expand(x, K) for x in (logits, next_pos, mask))
            t0 = self.cfg.traj_token_start_id
            banned = torch.arange(t0, t0 + self.cfg.tokenizer.traj_vocab_size)  # spec §3.5 ExpertLogitsProcessor
            gen, stop_col, stop_pos, mask, next_pos, forwards = self._decode(
                logits, cache, next_pos, mask, m.tfs_id, max_new, temperature, top_p, generator,
                min_new_tokens=min_new_tokens, banned=banned,
                end_ids=(self.ids["<|cot_end|>"], self.ids["<|im_end|>"]), logits_processor=logits_processor,
                optimized=optimized, draft=draft)  # fmt: skip
            if draft is not None:  # learn this plan's reasoning (every row, up to and with its stop)
                for row, col in zip(gen.tolist(), (stop_col - prompt_len).tolist()):
                    draft.add(row[: col + 1])
        timings["decode_ms"] = (time.perf_counter() - tic) * 1e3

        # ---- expert ----
        tic = time.perf_counter()
        C = mask.shape[1]
        cols = torch.arange(C)
        prefix = mask & (cols[None] <= stop_col[:, None])  # (B·K, C) drop columns after <|traj_future_start|>
        positions = stop_pos[:, None] + 1 + torch.arange(T)  # (B·K, T)
        emask = m.expert_mask(prefix)
        len_before = cache.get_seq_length()
        if noise is None:
            temp = self.cfg.flow.noise_temperature if noise_temperature is None else noise_temperature
            noise = fm.sample_noise((B, K, T, 2), generator, temperature=temp)
        x0 = noise.reshape(B * K, T, 2).float()

        uncond = None
        if guidance != 1.0 and (UNCOND_PREFIX + INPUT_IDS) in batch:
            _, ucache, unext, umask, _ = self._prefill(batch, UNCOND_PREFIX, image_feats=feats)
            ucache.batch_repeat_interleave(K)
            unext, umask = self._expand(unext, K), self._expand(umask, K)
            n_gen = C - prompt_len  # replay the generated tokens onto the nav-free prompt
            _, umask = self._step(gen[:, :n_gen], ucache, unext, umask)
            ucols = torch.arange(umask.shape[1])
            ustop = stop_col - prompt_len + (umask.shape[1] - n_gen)
            uprefix = umask & (ucols[None] <= ustop[:, None])
            upos = (unext + (stop_col - prompt_len))[:, None] + 1 + torch.arange(T)
            uncond = (ucache, upos, m.expert_mask(uprefix))

        if optimized:
            ctx = m.expert_context(cache, positions, emask, lane)
            uctx = None if uncond is None else m.expert_context(*uncond, lane)

            def velocity(x, t):
                v = m.expert_velocity_fast(x, t, ctx)
                return v if uctx is None else fm.guided_velocity(m.expert_velocity_fast(x, t, uctx), v, guidance)
        else:

            def velocity(x, t):
                v = m.expert_velocity(x, t, cache, positions, emask, lane)
                if uncond is not None:
                    v = fm.guided_velocity(m.expert_velocity(x, t, *uncond, lane), v, guidance)
                return v

        actions = fm.euler_integrate(velocity, x0, steps)  # (B·K, T, 2)
        len_after = cache.get_seq_length()
        hx = self._expand(batch[EGO_HISTORY_XYZ].float(), K)
        hr = self._expand(batch[EGO_HISTORY_ROT].float(), K)
        xyz, rot = action_to_traj(actions, hx, hr, self.action_cfg)
        timings["expert_ms"] = (time.perf_counter() - tic) * 1e3
        timings["total_ms"] = sum(timings.values())
        return TrajectorySamples(
            xyz=xyz.reshape(B, K, T, 3), rot=rot.reshape(B, K, T, 3, 3), actions=actions.reshape(B, K, T, 2),
            noise=x0.reshape(B, K, T, 2), coc_token_ids=gen.reshape(B, K, -1), timings_ms=timings,
            cache_len={"before_expert": len_before, "after_expert": len_after}, decode_forwards=forwards,
        )  # fmt: skip

    def road_fields(self) -> tuple[str, ...] | None:
        """The fields `read_road` returns (`probe_fields` of its vision probe, else lane reader), or None."""
        m = self.model
        head = m.vision_probe if m.vision_probe is not None else getattr(m.lane_reader, "head", None)
        return None if head is None else head.fields

    @torch.no_grad()
    def read_road(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """The ego's lane read from the images alone: (B, F) in SI units, `probe_fields` order (offset m,
        heading rad, bearings ahead rad[, lead gap m]), by the vision probe, else by the lane reader
        (what the expert receives); None without either."""
        m = self.model
        if m.vision_probe is not None:
            return vision_probe_units(m.vision_probe(self.image_tokens(batch)))
        if m.lane_reader is not None:
            return vision_probe_units(m.lane_reader.read(batch[PIXEL_VALUES], batch[IMAGE_GRID_THW],
                                                         batch[INPUT_IDS].shape[0]))  # fmt: skip
        return None

    def image_tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        """The vision tower's merged image tokens (B, N, D) of a prompt batch, in prompt order: what
        the vision probe reads (with gradients unless the caller disables them). The text layers
        are not run."""
        m = self.model
        return m.image_tokens(m.image_features(batch[PIXEL_VALUES], batch[IMAGE_GRID_THW]), batch[INPUT_IDS].shape[0])

    @torch.no_grad()
    def generate_text(self, batch: dict[str, Any], max_new_tokens: int = 64, temperature: float = 0.6,
                      top_p: float = 0.98, num_samples: int = 1, generator: torch.Generator | None = None):  # fmt: skip
        """VQA: the batch holds a question prompt (processor(..., question=q)) ending in `<|answer_start|>`.

        Returns generated ids (B, num_samples, n), stopping at `<|answer_end|>`.
        """
        logits, cache, next_pos, mask, _ = self._prefill(batch)
        cache.batch_repeat_interleave(num_samples)
        logits, next_pos, mask = (self._expand(x, num_samples) for x in (logits, next_pos, mask))
        gen, *_ = self._decode(logits, cache, next_pos, mask, self.ids["<|answer_end|>"], max_new_tokens,
                               temperature, top_p, generator)  # fmt: skip
        return gen.reshape(logits.shape[0] // num_samples, num_samples, -1)

    # ---- checkpoints ----
    def save_pretrained(self, directory: str | Path, tokenizer=None) -> None:
        """config.json + model.safetensors (+ tokenizer files if a tokenizer is given)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        CordilleraVLAConfig.from_vla(self.cfg).save_pretrained(d)
        # always fp32 on disk: a model cast for bf16 inference saves the same format as a trained one
        sd = {k: (v.float() if v.is_floating_point() else v).detach().contiguous().cpu()
              for k, v in self.model.state_dict().items()}
        save_file(sd, str(d / WEIGHTS_NAME), metadata={"format": "pt", "cordillera_preset": self.cfg.name})
        if tokenizer is not None:
            tokenizer.save_pretrained(d)

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (float32 unless `to_inference_dtype` cast them)."""
        return self.model.action_out_proj.weight.dtype

    def to_inference_dtype(self, dtype: str | torch.dtype | None) -> CordilleraVLA:
        """Cast the weights (parameters only) to `dtype` in place; returns self.

        The vision tower stays fp32 (`FP32_MODULE_PREFIXES`): its bf16 kernels measured ~20 %
        slower on CPU (benchmarks/RESULTS.md, model_latency Session 3); its features are cast to the
        backbone's dtype where the backbone takes them.

        Buffers stay fp32 on purpose: `model.to(torch.bfloat16)` would also round the rotary
        `inv_freq` and the Fourier `freqs` of the action encoder to 8 mantissa bits (a 0.4 % error
        in a frequency is radians of phase at position ~500 or at 100 Hz). What stays fp32 in the
        bf16 path: RMSNorm internals and rotary tables (HF computes them in fp32), the Fourier
        features, the sampling logits (`.float()`), the flow-matching state x_t and the unicycle
        integration to xyz/rot. Inference only: training stays fp32.

        CoC decoding of up to `FP32_DECODE_MAX_ROWS` rows runs on fp32 copies of the text decoder and lm_head
        (`DecodeWeights`, ~4 M parameters for nano), the cache cast to fp32 for it and back after.
        """
        dt = parse_dtype(dtype)
        vlm = self.model.vlm
        on_cpu = next(self.parameters()).device.type == "cpu"
        if dt == torch.bfloat16 and on_cpu and cpu_has_native_bf16() is False:
            warnings.warn("bfloat16 inference on a CPU without native bf16 matmuls (no avx512_bf16 / amx_bf16 in "
                          "/proc/cpuinfo): they are emulated, and the step is slower than float32 (2.4x on an AVX2 "
                          "AMD EPYC, benchmarks/RESULTS.md model_latency Session 19)", RuntimeWarning, stacklevel=2)
        if dt == torch.float32:
            self.decode_weights = None
        elif self.decode_weights is None:  # copied before the cast: the decoder keeps the original fp32 weights
            self.decode_weights = DecodeWeights(vlm.model.language_model, vlm.lm_head)
        for name, p in self.model.named_parameters():
            want = torch.float32 if name.startswith(FP32_MODULE_PREFIXES) else dt
            if p.is_floating_point() and p.dtype != want:
                p.data = p.data.to(want)
        return self

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: str | torch.dtype | None = None) -> CordilleraVLA:
        """Load a directory written by `save_pretrained`; pickled weights are refused.

        `dtype` ("float32" default, "bfloat16"): the inference dtype of the weights (`to_inference_dtype`).
        """
        from safetensors.torch import load_file

        d = Path(directory)
        if d.is_file() or d.suffix in PICKLE_SUFFIXES:
            raise ValueError(f"{d}: pass a checkpoint directory; pickled weight files are refused")
        pickled = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise ValueError(
                f"{d} contains pickled weights {pickled}; cordillera loads only safetensors "
                f"(pickle can run arbitrary code). Convert them to {WEIGHTS_NAME} first."
            )
        wpath = d / WEIGHTS_NAME
        if not wpath.exists():
            raise FileNotFoundError(f"{wpath} not found")
        hf = CordilleraVLAConfig.from_pretrained(d)
        if hf.model_type != "cordillera_vla":
            raise ValueError(f"{d / CONFIG_NAME} has model_type {hf.model_type!r}, expected 'cordillera_vla'")
        model = cls(hf.to_vla())
        load_mapped_state_dict(model.model, load_file(str(wpath)))
        return model.to_inference_dtype(dtype) if dtype is not None else model


def map_key(key: str) -> str | None:
    """Original (Alpamayo) key → our key via `KEY_PREFIX_MAP`; None for dropped buffers."""
    if key.startswith(DROPPED_ORIGINAL_PREFIXES) or key.endswith(".freqs"):
        return None
    if key.startswith(OWN_PREFIXES):
        return key
    for src, dst in KEY_PREFIX_MAP.items():
        if key.startswith(src):
            return dst + key[len(src):]
    raise ValueError(f"key {key!r} has none of the known prefixes {list(KEY_PREFIX_MAP)}")


def load_mapped_state_dict(module: VLAModel, state: dict[str, torch.Tensor]) -> None:
    """Map keys, assert equal key sets and every shape, then copy (nanoGPT-style explicit import)."""
    mapped = {}
    for k, v in state.items():
        nk = map_key(k)
        if nk is not None:
            mapped[nk] = v
    own = module.state_dict()
    if len(mapped) != len(own):
        missing = sorted(set(own) - set(mapped))[:5]
        extra = sorted(set(mapped) - set(own))[:5]
        raise ValueError(f"checkpoint has {len(mapped)} tensors, model {len(own)}; missing {missing}, unexpected {extra}")
    for k, v in own.items():
        if k not in mapped:
            raise ValueError(f"checkpoint lacks {k}")
        if tuple(mapped[k].shape) != tuple(v.shape):
            raise ValueError(f"shape mismatch for {k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(v.shape)}")
    module.load_state_dict(mapped, strict=True)


def state_dict_shapes(cfg: VLAConfig) -> dict[str, tuple[int, ...]]:
    """Key → shape, with the model built on the `meta` device (no memory)."""
    with torch.device("meta"):
        m = VLAModel(cfg)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def _dump_keys(preset: str) -> str:
    """Markdown table of the state dict (layers collapsed to `{i}`) for docs/model_state_dict_keys.md."""
    import re

    from cordillera.model.configuration import get_preset

    cfg = get_preset(preset)
    shapes = state_dict_shapes(cfg)
    groups: dict[str, tuple[tuple[int, ...], int]] = {}
    for k, s in shapes.items():
        g = re.sub(r"\.(layers|blocks|deepstack_merger_list)\.\d+\.", r".\1.{i}.", k)
        prev = groups.get(g)
        groups[g] = (s, (prev[1] + 1) if prev else 1)
    total = sum(math.prod(s) for s in shapes.values())
    lines = [f"| key (`{{i}}` = layer index) | shape | count | params |", "|---|---|---|---|"]
    for g, (s, n) in groups.items():
        lines.append(f"| `{g}` | {list(s)} | {n} | {n * math.prod(s):,} |")
    return json.dumps({"preset": preset, "tensors": len(shapes), "params": total}) + "\n\n" + "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(_dump_keys(sys.argv[1] if len(sys.argv) > 1 else "alpamayo-10b"))
