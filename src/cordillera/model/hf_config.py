"""transformers configs built from a `VLAConfig` (the only place configuration meets transformers).

- `CordilleraVLAConfig` (`model_type="cordillera_vla"`): an HF `PretrainedConfig` that carries
  the whole `VLAConfig` as a dict under `vla`, so `config.json` round-trips through
  `save_pretrained` / `from_pretrained`.
- `qwen3vl_config(cfg)`: the backbone `Qwen3VLConfig` (random init, no download).
- `expert_text_config(cfg, text_config)`: a copy of the backbone text config with the expert
  overrides (spec/alpamayo_model.md §1.1 "deep copy of vlm.config.text_config; setattr overrides").
"""

from __future__ import annotations

import copy

from transformers import PretrainedConfig, Qwen3VLConfig

from cordillera.model.configuration import VLAConfig

__all__ = ["CordilleraVLAConfig", "qwen3vl_config", "expert_text_config"]


class CordilleraVLAConfig(PretrainedConfig):
    model_type = "cordillera_vla"

    def __init__(self, vla: dict | None = None, **kwargs):
        self.vla = vla if vla is not None else VLAConfig().to_dict()
        super().__init__(**kwargs)

    @classmethod
    def from_vla(cls, cfg: VLAConfig) -> CordilleraVLAConfig:
        return cls(vla=cfg.to_dict(), architectures=["CordilleraVLA"])

    def to_vla(self) -> VLAConfig:
        return VLAConfig.from_dict(self.vla)


def qwen3vl_config(cfg: VLAConfig, attn_implementation: str = "sdpa") -> Qwen3VLConfig:
    t, v, ids = cfg.text, cfg.vision, cfg.special_ids
    text = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads,
        head_dim=t.head_dim,
        rms_norm_eps=t.rms_norm_eps,
        max_position_embeddings=t.max_position_embeddings,
        # [s] environment.md §1: transformers 5.x takes RoPE settings in rope_parameters
        rope_parameters={"rope_type": "default", "rope_theta": t.rope_theta,
                         "mrope_section": list(t.mrope_section), "mrope_interleaved": True},  # fmt: skip
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    vision = dict(
        depth=v.depth,
        hidden_size=v.hidden_size,
        intermediate_size=v.intermediate_size,
        num_heads=v.num_heads,
        patch_size=v.patch_size,
        spatial_merge_size=v.spatial_merge_size,
        temporal_patch_size=v.temporal_patch_size,
        out_hidden_size=t.hidden_size,
        num_position_embeddings=v.num_position_embeddings,
        deepstack_visual_indexes=list(v.deepstack_visual_indexes),
    )
    c = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    c._attn_implementation = attn_implementation
    c.text_config._attn_implementation = attn_implementation
    c.vision_config._attn_implementation = attn_implementation
    return c


def expert_text_config(cfg: VLAConfig, text_config) -> PretrainedConfig:
    e = copy.deepcopy(text_config)
    e.hidden_size = cfg.expert.hidden_size
    e.intermediate_size = cfg.expert.intermediate_size
    e.num_attention_heads = cfg.expert.num_attention_heads
    e.num_hidden_layers = cfg.expert.num_hidden_layers
    # The expert has no token embedding (it is deleted after construction); keep the table tiny
    # so building it costs nothing.
    e.vocab_size = 1
    e.pad_token_id = None
    e._attn_implementation = "sdpa"  # [s] spec §1.1: A1.5 forces sdpa for the 4-D expert mask
    return e
