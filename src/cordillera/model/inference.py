"""One-call inference over processor + model: `Planner.plan(inputs, ...)` and `Planner.ask(...)`.

`inputs` is the processor's sample dict (image_frames uint8 (N, F, 3, H, W), camera_indices,
ego_history_xyz (16, 3), ego_history_rot (16, 3, 3), optional nav_text) or a list of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cordillera.model.configuration import CAMERA_NAMES, VLAConfig, get_preset
from cordillera.model.drafting import NgramDraft
from cordillera.model.modeling import CordilleraVLA
from cordillera.model.processor import VLAProcessor
from cordillera.model.tokenizer import load_tokenizer

__all__ = ["PlanResult", "Planner"]


@dataclass
class PlanResult:
    xyz: torch.Tensor  # (B, K, 64, 3) rig frame at t0 [m]
    rot: torch.Tensor  # (B, K, 64, 3, 3)
    yaw_rad: torch.Tensor  # (B, K, 64)
    coc: list[list[str]]  # [B][K] Chain-of-Causation texts ("" on the fast path)
    timings_ms: dict[str, float] = field(default_factory=dict)


class Planner:
    def __init__(self, model: CordilleraVLA, processor: VLAProcessor):
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def random_init(cls, preset: str | VLAConfig = "nano", seed: int = 0, dtype=None) -> Planner:
        """Random weights (drawn in fp32, so `dtype` only rounds them: same seed → same model)."""
        cfg = get_preset(preset) if isinstance(preset, str) else preset
        torch.manual_seed(seed)
        return cls(CordilleraVLA(cfg).to_inference_dtype(dtype), VLAProcessor(cfg, load_tokenizer(cfg)))

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype=None) -> Planner:
        """`dtype` "float32" (default) or "bfloat16": inference precision of the weights."""
        model = CordilleraVLA.from_pretrained(directory, dtype=dtype)
        return cls(model, VLAProcessor(model.cfg, load_tokenizer(model.cfg, directory)))

    @staticmethod
    def _select_cameras(sample: dict, cameras) -> dict:
        if cameras is None:
            return sample
        want = [CAMERA_NAMES.index(c) if isinstance(c, str) else int(c) for c in cameras]
        have = [int(i) for i in torch.as_tensor(sample["camera_indices"]).tolist()]
        missing = [w for w in want if w not in have]
        if missing:
            raise ValueError(f"cameras {missing} requested but the inputs only hold {have}")
        keep = [have.index(w) for w in want]
        return {**sample, "image_frames": torch.as_tensor(sample["image_frames"])[keep], "camera_indices": want}

    def plan(self, inputs, num_samples: int = 1, temperature: float = 0.6, top_p: float = 0.98,
             flow_steps: int = 10, nav_text: str | None = None, guidance: float = 1.0, cameras=None,
             fast: bool = False, max_new_tokens: int | None = None, min_new_tokens: int = 0,
             generator: torch.Generator | None = None, optimized: bool = True,
             draft: NgramDraft | None = None) -> PlanResult:  # fmt: skip
        """Sample `num_samples` trajectories (+ CoC) per input; defaults from spec §5.1.

        `optimized=False` runs the reference decode/expert implementation (benchmarks, tests).
        `draft` (`NgramDraft()`, kept across calls): one input, one sample → the CoC is decoded
        speculatively from the CoCs of earlier calls (same distribution, fewer forwards).
        """
        samples = [inputs] if isinstance(inputs, dict) else list(inputs)
        samples = [self._select_cameras(s, cameras) for s in samples]
        if nav_text is not None:
            samples = [{**s, "nav_text": nav_text} for s in samples]
        tic = time.perf_counter()
        batch = self.processor(samples)
        pre_ms = (time.perf_counter() - tic) * 1e3
        out = self.model.sample_trajectories(
            batch, num_samples=num_samples, temperature=temperature, top_p=top_p, flow_steps=flow_steps,
            fast=fast, guidance=guidance, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
            generator=generator, optimized=optimized, draft=draft,
        )  # fmt: skip
        B, K = out.xyz.shape[:2]
        coc = [[""] * K for _ in range(B)]
        if not fast:
            texts = self.processor.decode_text(out.coc_token_ids.reshape(B * K, -1), "cot")
            coc = [texts[b * K:(b + 1) * K] for b in range(B)]
        yaw = torch.atan2(out.rot[..., 1, 0], out.rot[..., 0, 0])
        return PlanResult(out.xyz, out.rot, yaw, coc, {"processor_ms": pre_ms, **out.timings_ms})

    def read_road(self, inputs, cameras=None) -> torch.Tensor | None:
        """`CordilleraVLA.read_road` on processor inputs: the vision probe's (or lane reader's) reading of
        the ego's lane (B, F) in m / rad (`modeling.probe_fields`), from the images alone; None without one."""
        samples = [inputs] if isinstance(inputs, dict) else list(inputs)
        samples = [self._select_cameras(s, cameras) for s in samples]
        return self.model.read_road(self.processor(samples))

    def ask(self, inputs, question: str, max_new_tokens: int = 64, temperature: float = 0.6, top_p: float = 0.98,
            cameras=None, generator: torch.Generator | None = None) -> list[str]:  # fmt: skip
        """VQA (`<|question_start|>q<|question_end|>`, prefill `<|answer_start|>`): one answer per input."""
        samples = [inputs] if isinstance(inputs, dict) else list(inputs)
        samples = [self._select_cameras(s, cameras) for s in samples]
        ids = self.model.generate_text(self.processor(samples, question=question), max_new_tokens, temperature,
                                       top_p, generator=generator)  # fmt: skip
        return self.processor.decode_text(ids[:, 0], "answer")
