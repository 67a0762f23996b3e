"""Data in/out for the VLA: named sample dicts → tensor batches, model outputs → trajectories/text.

No `nn.Module` lives here (STYLE.md §5). In order, `VLAProcessor.__call__` does:
  1. order cameras by their spec index (spec/alpamayo_model.md §2.1) and resize frames;
  2. build the prompt (spec §2.4, A1.5 flavour): system line, then per camera
     "{display name}: " and per frame "frame i " + image, the history block, the optional
     `<|route_start|>{nav}<|route_end|>`, the instruction; assistant prefill `<|cot_start|>`;
  3. tokenise; expand each image to `<|vision_start|>` + n×`<|image_pad|>` + `<|vision_end|>`;
  4. history fusion: the 48 `<|traj_history|>` slots get the delta-tokenizer ids (spec §2.3);
  5. training target (if a future is given): `{cot}<|cot_end|><|traj_future_start|>` + 128
     discrete future tokens + `<|traj_future_end|><|im_end|>`, labels on exactly those tokens;
  6. patchify images (uint8 → [0,1] → (x − 0.5)/0.5), `image_grid_thw`, `mm_token_type_ids`;
  7. collate: left padding (so every row's last prompt token is at the same column).

Letters: B batch, N cameras, F frames per camera, L tokens, P patch, TP temporal patch, M merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cordillera.model.configuration import CAMERA_DISPLAY_NAMES, CAMERA_NAMES, VLAConfig

__all__ = [
    "INSTRUCTION",
    "INSTRUCTION_TRAJ_ONLY",
    "IGNORE_INDEX",
    "VLAProcessor",
    "Segment",
    "extract_between",
    "patchify_frames",
]

# [s] spec/alpamayo_model.md §2.4: "output the chain-of-thought reasoning of the driving process"
# + ", then " + "output the future trajectory" + ".".
INSTRUCTION = (
    "output the chain-of-thought reasoning of the driving process, then output the future trajectory."
)
# [s] spec/alpamayo_training_data.md §1.3: components_prompt [traj_future] (trajectory-only models).
INSTRUCTION_TRAJ_ONLY = "output the future trajectory."
IGNORE_INDEX = -100

# Batch keys (defined once; the model imports them from here).
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
MM_TOKEN_TYPE_IDS = "mm_token_type_ids"
PIXEL_VALUES = "pixel_values"
IMAGE_GRID_THW = "image_grid_thw"
LABELS = "labels"
ACTIONS = "actions"  # (B, T, 2) normalised future controls (flow-matching target)
EGO_HISTORY_XYZ = "ego_history_xyz"
EGO_HISTORY_ROT = "ego_history_rot"
EGO_FUTURE_XYZ = "ego_future_xyz"
EGO_FUTURE_ROT = "ego_future_rot"
COT_TEXT = "cot_text"  # training batches: the label CoC strings (list[str]) next to the tensors
UNCOND_PREFIX = "uncond_"  # prompt with the route span removed (guidance), same keys with this prefix


@dataclass(frozen=True)
class Segment:
    """One prompt piece: plain text to tokenise, or a run of one token id repeated `count` times."""

    text: str = ""
    token: str | None = None
    count: int = 1


def extract_between(text: str, key: str) -> str:
    """Text between the last `<|key_start|>` before the first `<|key_end|>` and that end marker.

    [s] spec/alpamayo_model.md §5.2. Returns "" when there is no end marker. If no start marker
    precedes the end marker, the text from the beginning is used (the prefill start token is
    not part of generated ids).
    """
    end = text.find(f"<|{key}_end|>")
    if end < 0:
        return ""
    start = text.rfind(f"<|{key}_start|>", 0, end)
    start = 0 if start < 0 else start + len(f"<|{key}_start|>")
    return text[start:end].strip()


def patchify_frames(pixels: torch.Tensor, patch: int, merge: int, temporal_patch: int) -> torch.Tensor:
    """Frames (N, C, H, W) float → Qwen3-VL patches (N·gh·gw, C·TP·P·P), one image per frame.

    Each frame is repeated over the temporal patch as Qwen's image processor does; patches are
    ordered in merge blocks (t, h/M, w/M, M, M) and each vector is (C, TP, P, P), the layout
    `Qwen3VLVisionPatchEmbed` views it as.
    """
    N, C, H, W = pixels.shape
    gh, gw = H // patch, W // patch
    x = pixels[:, None].expand(N, temporal_patch, C, H, W)  # (N, TP, C, H, W)
    x = x.reshape(N, temporal_patch, C, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (N, gh/M, gw/M, M, M, C, TP, P, P)
    return x.reshape(N * gh * gw, C * temporal_patch * patch * patch)  # (N·gh·gw, C·TP·P·P)


class VLAProcessor:
    """Sample dicts → batch tensors and back. Holds the tokenizer and the two trajectory tokenizers."""

    def __init__(self, cfg: VLAConfig, tokenizer):
        from cordillera.action.tokenizers import DeltaHistoryTokenizer, DiscreteTrajectoryTokenizer
        from cordillera.action.unicycle import ActionSpaceConfig

        self.cfg = cfg
        self.tokenizer = tokenizer
        self.action_cfg = ActionSpaceConfig.from_dict(cfg.action_space)
        tc = cfg.tokenizer
        self.future_tokenizer = DiscreteTrajectoryTokenizer(
            self.action_cfg, tc.future_num_bins, tc.future_dims_min, tc.future_dims_max
        )
        self.history_tokenizer = DeltaHistoryTokenizer(tc.history_num_bins, tc.history_xyz_min, tc.history_xyz_max)
        self.ids = cfg.special_ids
        self.pad_id = self.ids["<|endoftext|>"]
        self._text_cache: dict[str, list[int]] = {}

    # ---- prompt -------------------------------------------------------------------------------
    def camera_order(self, camera_indices) -> list[int]:
        """Positions that sort the given cameras by spec index (ties keep their order)."""
        idx = [int(i) for i in camera_indices]
        for i in idx:
            if not 0 <= i < len(CAMERA_NAMES):
                raise ValueError(f"camera index {i} outside 0..{len(CAMERA_NAMES) - 1}")
        return sorted(range(len(idx)), key=lambda k: idx[k])

    def prompt_segments(
        self,
        camera_indices,
        num_frames: int,
        nav_text: str | None = None,
        question: str | None = None,
        with_history: bool = True,
    ) -> list[Segment]:
        """The prompt as segments (spec §2.4). `camera_indices` must already be sorted."""
        inp = self.cfg.inputs
        n_img = self.cfg.num_image_tokens
        seg = [Segment(token="<|im_start|>"), Segment("system\n" + inp.system_prompt),
               Segment(token="<|im_end|>"), Segment("\n"), Segment(token="<|im_start|>"), Segment("user\n")]  # fmt: skip
        for cam in camera_indices:
            if inp.include_camera_ids:
                seg.append(Segment(f"{CAMERA_DISPLAY_NAMES[CAMERA_NAMES[int(cam)]]}: "))
            for f in range(num_frames):
                if inp.include_frame_nums:
                    seg.append(Segment(f"frame {f} "))
                seg += [Segment(token="<|vision_start|>"), Segment(token="<|image_pad|>", count=n_img),
                        Segment(token="<|vision_end|>")]  # fmt: skip
        if question is not None:
            seg += [Segment(token="<|question_start|>"), Segment(question), Segment(token="<|question_end|>")]
        else:
            if with_history:
                seg += [Segment(token="<|traj_history_start|>"),
                        Segment(token="<|traj_history|>", count=self.cfg.tokenizer.tokens_per_history),
                        Segment(token="<|traj_history_end|>")]  # fmt: skip
            if nav_text:
                seg += [Segment(token="<|route_start|>"), Segment(nav_text), Segment(token="<|route_end|>")]
            seg.append(Segment(INSTRUCTION if inp.use_coc else INSTRUCTION_TRAJ_ONLY))
        seg += [Segment(token="<|im_end|>"), Segment("\n"), Segment(token="<|im_start|>"), Segment("assistant\n"),
                Segment(token="<|answer_start|>" if question is not None else "<|cot_start|>")]  # fmt: skip
        return seg

    @staticmethod
    def render(segments: list[Segment]) -> str:
        return "".join(s.text if s.token is None else s.token * s.count for s in segments)

    def _encode_text(self, text: str) -> list[int]:
        if text not in self._text_cache:  # prompt pieces repeat every call; cache them
            self._text_cache[text] = self.tokenizer.encode(text, add_special_tokens=False)
        return self._text_cache[text]

    def encode_segments(self, segments: list[Segment]) -> list[int]:
        # Adjacent text pieces are tokenised as one run, exactly as tokenising the rendered string
        # (special tokens split the text first, then the pre-tokenizer regex runs per piece).
        ids: list[int] = []
        run = ""
        for s in segments:
            if s.token is None:
                run += s.text
                continue
            if run:
                ids += self._encode_text(run)
                run = ""
            ids += [self.ids[s.token]] * s.count
        if run:
            ids += self._encode_text(run)
        return ids

    # ---- pieces -------------------------------------------------------------------------------
    def images_to_pixels(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, F, 3, H, W) → pixel_values (N·F·gh·gw, 3·TP·P·P), grid_thw (N·F, 3)."""
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"image_frames must be uint8 (N, F, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        inp, vis = self.cfg.inputs, self.cfg.vision
        N, Fr = frames.shape[:2]
        x = frames.flatten(0, 1).float() / 255.0  # (N·F, 3, H, W), camera-major, oldest→newest
        if x.shape[-2:] != (inp.image_height, inp.image_width):
            x = F.interpolate(x, size=(inp.image_height, inp.image_width), mode="bilinear",
                              antialias=True, align_corners=False).clamp_(0.0, 1.0)  # fmt: skip
        x = (x - inp.image_mean) / inp.image_std
        pix = patchify_frames(x, vis.patch_size, vis.spatial_merge_size, vis.temporal_patch_size)
        gh, gw = inp.image_height // vis.patch_size, inp.image_width // vis.patch_size
        grid = torch.tensor([[1, gh, gw]], dtype=torch.long).expand(N * Fr, 3).clone()  # (N·F, 3)
        return pix, grid

    def history_ids(self, hist_xyz: torch.Tensor) -> torch.Tensor:
        """(16, 3) history in the t0 rig frame → 48 vocabulary ids (delta tokenizer + offset)."""
        return self.history_tokenizer.encode(hist_xyz).long() + self.cfg.hist_token_start_id

    def future_ids(self, hist_xyz, hist_rot, fut_xyz, fut_rot) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground-truth future → (normalised actions (T, 2), 128 vocabulary ids)."""
        from cordillera.action.unicycle import traj_to_action

        actions = traj_to_action(hist_xyz, hist_rot, fut_xyz, fut_rot, self.action_cfg)  # (T, 2)
        tokens = self.future_tokenizer.encode_actions(actions).long() + self.cfg.traj_token_start_id
        return actions, tokens

    # ---- one sample ---------------------------------------------------------------------------
    def process_sample(self, sample: dict[str, Any], question: str | None = None) -> dict[str, Any]:
        frames = torch.as_tensor(sample["image_frames"])
        cams = sample.get("camera_indices")
        if cams is None:
            cams = [CAMERA_NAMES.index(c) for c in self.cfg.inputs.cameras]
        cams = [int(c) for c in torch.as_tensor(cams).flatten().tolist()]
        if len(cams) != frames.shape[0]:
            raise ValueError(f"{len(cams)} camera_indices for {frames.shape[0]} cameras of frames")
        order = self.camera_order(cams)
        frames = frames[order]
        cams = [cams[k] for k in order]
        hist_xyz = torch.as_tensor(sample["ego_history_xyz"], dtype=torch.float32)
        hist_rot = torch.as_tensor(sample["ego_history_rot"], dtype=torch.float32)
        H = self.cfg.inputs.history_steps
        if hist_xyz.shape != (H, 3) or hist_rot.shape != (H, 3, 3):
            raise ValueError(f"ego history must be ({H}, 3)/({H}, 3, 3), got {tuple(hist_xyz.shape)}/{tuple(hist_rot.shape)}")
        if not (torch.isfinite(hist_xyz).all() and torch.isfinite(hist_rot).all()):
            raise ValueError("ego history contains NaN/inf")
        nav = sample.get("nav_text")

        out: dict[str, Any] = {}
        prompt = self.encode_segments(self.prompt_segments(cams, frames.shape[1], nav, question))
        prompt_t = torch.tensor(prompt, dtype=torch.long)
        if question is None:
            slots = prompt_t == self.ids["<|traj_history|>"]
            prompt_t[slots] = self.history_ids(hist_xyz)  # history fusion (spec §2.3 step 4)
        ids, labels = prompt_t, torch.full_like(prompt_t, IGNORE_INDEX)
        if sample.get(EGO_FUTURE_XYZ) is not None and question is None:
            actions, fut = self.future_ids(hist_xyz, hist_rot, sample[EGO_FUTURE_XYZ], sample[EGO_FUTURE_ROT])
            cot = (sample.get("cot") or "") if self.cfg.inputs.use_coc else ""  # no-CoC ablation: empty CoC
            target = torch.tensor(
                (self._encode_text(cot) if cot else [])
                + [self.ids["<|cot_end|>"], self.ids["<|traj_future_start|>"]]
                + fut.tolist() + [self.ids["<|traj_future_end|>"], self.ids["<|im_end|>"]],
                dtype=torch.long,
            )  # fmt: skip
            ids = torch.cat([prompt_t, target])
            labels = torch.cat([labels, target])
            out[ACTIONS] = actions.float()
            out[EGO_FUTURE_XYZ] = torch.as_tensor(sample[EGO_FUTURE_XYZ], dtype=torch.float32)
            out[EGO_FUTURE_ROT] = torch.as_tensor(sample[EGO_FUTURE_ROT], dtype=torch.float32)
        out[INPUT_IDS], out[LABELS] = ids, labels
        out[PIXEL_VALUES], out[IMAGE_GRID_THW] = self.images_to_pixels(frames)
        out[EGO_HISTORY_XYZ], out[EGO_HISTORY_ROT] = hist_xyz, hist_rot
        if nav and question is None:
            uncond = torch.tensor(self.encode_segments(self.prompt_segments(cams, frames.shape[1], None)))
            uncond[uncond == self.ids["<|traj_history|>"]] = self.history_ids(hist_xyz)
            out[UNCOND_PREFIX + INPUT_IDS] = uncond
        return out

    # ---- batch --------------------------------------------------------------------------------
    def __call__(self, samples: dict[str, Any] | list[dict[str, Any]], question: str | None = None) -> dict[str, Any]:
        """One sample dict or a list → a left-padded batch (see module docstring)."""
        if isinstance(samples, dict):
            samples = [samples]
        return self.collate([self.process_sample(s, question) for s in samples])

    def _pad_left(self, seqs: list[torch.Tensor], value: int) -> torch.Tensor:
        L = max(len(s) for s in seqs)
        out = torch.full((len(seqs), L), value, dtype=seqs[0].dtype)
        for b, s in enumerate(seqs):
            out[b, L - len(s):] = s
        return out

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        ids = [it[INPUT_IDS] for it in items]
        batch[INPUT_IDS] = self._pad_left(ids, self.pad_id)  # (B, L)
        batch[ATTENTION_MASK] = self._pad_left([torch.ones_like(s) for s in ids], 0)
        batch[LABELS] = self._pad_left([it[LABELS] for it in items], IGNORE_INDEX)
        batch[MM_TOKEN_TYPE_IDS] = (batch[INPUT_IDS] == self.ids["<|image_pad|>"]).int()
        batch[PIXEL_VALUES] = torch.cat([it[PIXEL_VALUES] for it in items])
        batch[IMAGE_GRID_THW] = torch.cat([it[IMAGE_GRID_THW] for it in items])
        for key in (EGO_HISTORY_XYZ, EGO_HISTORY_ROT, ACTIONS, EGO_FUTURE_XYZ, EGO_FUTURE_ROT):
            if all(key in it for it in items):
                batch[key] = torch.stack([it[key] for it in items])
        uk = UNCOND_PREFIX + INPUT_IDS
        if any(uk in it for it in items):
            # rows without a nav text use their own prompt as the unconditional one
            un = [it.get(uk, it[INPUT_IDS]) for it in items]
            batch[uk] = self._pad_left(un, self.pad_id)
            batch[UNCOND_PREFIX + ATTENTION_MASK] = self._pad_left([torch.ones_like(s) for s in un], 0)
            batch[UNCOND_PREFIX + MM_TOKEN_TYPE_IDS] = (batch[uk] == self.ids["<|image_pad|>"]).int()
        return batch

    # ---- outputs ------------------------------------------------------------------------------
    def decode_text(self, token_ids, key: str = "cot") -> list[str]:
        """Generated ids (..., L) → strings between the `key` markers (spec §5.2)."""
        t = torch.as_tensor(token_ids)
        flat = t.reshape(-1, t.shape[-1]).tolist()
        texts = self.tokenizer.batch_decode(flat, skip_special_tokens=False)
        prefix = f"<|{key}_start|>"
        return [extract_between(prefix + s.replace("<|endoftext|>", ""), key) for s in texts]
