"""Tiny synthetic samples and a shrunk nano config for the training tests (no dataset on disk)."""

from __future__ import annotations

import dataclasses

import torch

from cordillera.model.configuration import (
    PRESETS, ActionInProjConfig, ExpertConfig, InputConfig, TextConfig, VisionConfig,
)  # fmt: skip

LONGITUDINAL_COC = ("Stop for the red light ahead.", "Keep distance to the lead car.", "Resume speed on the clear road.")


def tiny_config(use_coc: bool = True):
    """nano shrunk to ~1M parameters (plus the 6124-row vocabulary): 32×32 images, 2 cameras."""
    base = PRESETS["nano"]
    return base.replace(
        name="tiny",
        text=TextConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                        head_dim=32, intermediate_size=128, mrope_section=(4, 6, 6)),
        vision=VisionConfig(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                            deepstack_visual_indexes=(), num_position_embeddings=64),
        expert=ExpertConfig(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_hidden_layers=2),
        action_in_proj=ActionInProjConfig(num_enc_layers=2, hidden_size=64),
        inputs=dataclasses.replace(InputConfig(image_height=32, image_width=32,
                                               cameras=("camera_cross_left_120fov", "camera_front_wide_120fov")),
                                   use_coc=use_coc),
    )  # fmt: skip


def tiny_config_with_loss(**loss):
    """`tiny_config` with `LossConfig` fields changed (the auxiliary heads' weights)."""
    cfg = tiny_config()
    return cfg.replace(loss=dataclasses.replace(cfg.loss, **loss))


def with_lane_targets(batch: dict) -> dict:
    """`batch` with seeded small lane targets, all valid (the vision probe's and lane reader's `LANE_AHEAD`)."""
    from cordillera.model.modeling import LANE_AHEAD, LANE_AHEAD_VALID, PROBE_FIELDS

    B = batch["input_ids"].shape[0]
    g = torch.Generator().manual_seed(5)
    batch[LANE_AHEAD] = torch.randn(B, len(PROBE_FIELDS), generator=g) * 0.05
    batch[LANE_AHEAD_VALID] = torch.ones(B, len(PROBE_FIELDS), dtype=torch.bool)
    return batch


def make_samples(n: int, seed: int = 0, cot: bool = True, frames: int = 2) -> list[dict]:
    """n samples: random 32×32 frames of 2 cameras, straight driving at a per-sample speed,
    braking or not; CoC texts of equal token length cycle through LONGITUDINAL_COC."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        v = 4.0 + 8.0 * torch.rand((), generator=g).item()
        a = -1.0 if i % 2 else 0.0
        th = (torch.arange(16, dtype=torch.float32) - 15) * 0.1
        tf = torch.arange(1, 65, dtype=torch.float32) * 0.1
        xf = (v * tf + 0.5 * a * tf**2).clamp(min=0)
        out.append({
            "image_frames": torch.randint(0, 256, (2, frames, 3, 32, 32), dtype=torch.uint8, generator=g),
            "camera_indices": torch.tensor([0, 1]),
            "ego_history_xyz": torch.stack([th * v, torch.zeros(16), torch.zeros(16)], -1),
            "ego_history_rot": torch.eye(3).expand(16, 3, 3).clone(),
            "ego_future_xyz": torch.stack([xf, torch.zeros(64), torch.zeros(64)], -1),
            "ego_future_rot": torch.eye(3).expand(64, 3, 3).clone(),
            "cot": LONGITUDINAL_COC[i % len(LONGITUDINAL_COC)] if cot else None,
            "clip_id": f"clip{i}",
        })  # fmt: skip
    return out
