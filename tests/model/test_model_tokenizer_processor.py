import pytest
import torch

from cordillera.model.configuration import ADDED_SPECIAL_TOKENS, PRESETS, VLAConfig
from cordillera.model.processor import (
    IGNORE_INDEX,
    INSTRUCTION,
    extract_between,
    patchify_frames,
)
from cordillera.model.tokenizer import (
    NANO_TOKENIZER_DIR,
    SEED_CORPUS,
    build_bpe,
    prompt_phrases,
    qwen_tokenizer_available,
)


def test_nano_tokenizer_layout(nano_cfg, nano_tokenizer):
    tok = nano_tokenizer
    assert len(tok) == nano_cfg.vocab_size == 6124
    assert tok.convert_tokens_to_ids("<i0>") == 4096  # <i*> first, right after the base vocab
    assert tok.convert_tokens_to_ids("<i1999>") == 6095
    for k, name in enumerate(ADDED_SPECIAL_TOKENS):  # then the 28 specials in spec order
        assert tok.convert_tokens_to_ids(name) == 6096 + k
    ids = tok.encode("Stop now.<|cot_end|><|traj_future_start|><i7>", add_special_tokens=False)
    assert ids[-3:] == [6096 + ADDED_SPECIAL_TOKENS.index("<|cot_end|>"),
                        6096 + ADDED_SPECIAL_TOKENS.index("<|traj_future_start|>"), 4103]  # fmt: skip
    text = "Yield to the pedestrian crossing ahead. Turn left in 30m"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    # digits are split one by one (Qwen pre-tokenizer)
    assert tok.convert_ids_to_tokens(tok.encode("305", add_special_tokens=False)) == ["3", "0", "5"]


def test_bpe_builder_reproduces_committed_vocab():
    from tokenizers import Tokenizer

    lines = [ln.strip() for ln in SEED_CORPUS.read_text().splitlines() if ln.strip()]
    assert len(lines) >= 300
    fresh = build_bpe(lines + prompt_phrases(), 4096)
    committed = Tokenizer.from_file(str(NANO_TOKENIZER_DIR / "tokenizer.json"))
    assert fresh.get_vocab() == committed.get_vocab()
    with pytest.raises(ValueError, match="too small"):
        build_bpe(lines, 100)


@pytest.mark.skipif(not qwen_tokenizer_available(), reason="qwen-tokenizer not installed (optional)")
def test_qwen_tokenizer_layout():
    from cordillera.model.tokenizer import load_tokenizer

    tok = load_tokenizer(PRESETS["alpamayo-10b"])  # asserts every id of spec §2.5 itself
    assert len(tok) == 155697


def _count(tok, text):
    return len(tok.encode(text, add_special_tokens=False))


def test_prompt_text_exact_one_camera_with_nav(nano_processor, nano_tokenizer):
    p = nano_processor
    segs = p.prompt_segments([1], 2, nav_text="Turn left in 30m")
    img = "<|vision_start|>" + "<|image_pad|>" * 15 + "<|vision_end|>"
    want = (
        "<|im_start|>system\nYou are a driving assistant that generates safe and accurate actions.<|im_end|>\n"
        "<|im_start|>user\nFront camera: frame 0 " + img + "frame 1 " + img
        + "<|traj_history_start|>" + "<|traj_history|>" * 48 + "<|traj_history_end|>"
        + "<|route_start|>Turn left in 30m<|route_end|>" + INSTRUCTION
        + "<|im_end|>\n<|im_start|>assistant\n<|cot_start|>"
    )  # fmt: skip
    assert p.render(segs) == want
    # segment encoding equals tokenising the rendered string
    assert p.encode_segments(segs) == nano_tokenizer.encode(want, add_special_tokens=False)


def test_camera_subsets_and_nav_change_token_counts(nano_processor, nano_tokenizer):
    p, tok = nano_processor, nano_tokenizer
    n4 = len(p.encode_segments(p.prompt_segments([0, 1, 2, 6], 4)))
    n1 = len(p.encode_segments(p.prompt_segments([1], 4)))
    # each camera block is "{name}: frame 0 " (one text run) + image + "frame i " + image ...
    block = {name: _count(tok, f"{name}: frame 0 ") + sum(_count(tok, f"frame {i} ") for i in (1, 2, 3))
             + 4 * (15 + 2) for name in ("Front left camera", "Front right camera", "Front telephoto camera")}  # fmt: skip
    assert n4 - n1 == sum(block.values())
    nav = "Turn right in 75m"
    n_nav = len(p.encode_segments(p.prompt_segments([1], 4, nav_text=nav)))
    assert n_nav - n1 == 2 + _count(tok, nav)
    assert "<|route_start|>" not in p.render(p.prompt_segments([1], 4))


def test_prompt_flags_drop_labels(nano_tokenizer):
    from cordillera.model.processor import VLAProcessor

    cfg = PRESETS["nano"]
    cfg2 = cfg.replace(inputs=cfg.inputs.__class__(include_camera_ids=False, include_frame_nums=False))
    text = VLAProcessor(cfg2, nano_tokenizer).render(VLAProcessor(cfg2, nano_tokenizer).prompt_segments([0, 1], 4))
    assert "camera" not in text and "frame" not in text
    assert text.count("<|vision_start|>") == 8


def test_sample_processing(nano_cfg, nano_processor, sample_factory):
    p = nano_processor
    s = sample_factory(0, cot="Stop at the stop line since the light is red.", cams=(6, 0))
    b = p(s)
    ids, labels = b["input_ids"][0], b["labels"][0]
    # cameras are re-ordered by spec index: cross-left (0) before front-tele (6)
    text = p.tokenizer.decode(ids)
    assert text.index("Front left camera") < text.index("Front telephoto camera")
    assert torch.equal(b["pixel_values"][:8 * 60], p.images_to_pixels(s["image_frames"][[1, 0]])[0][:8 * 60])
    # history fusion: 48 slots hold history ids, no <|traj_history|> is left
    sid = nano_cfg.special_ids
    hs = (ids == sid["<|traj_history_start|>"]).nonzero().item()
    hist = ids[hs + 1: hs + 49]
    assert torch.equal(hist, p.history_tokenizer.encode(s["ego_history_xyz"]) + nano_cfg.hist_token_start_id)
    assert ids[hs + 49] == sid["<|traj_history_end|>"] and not (ids == sid["<|traj_history|>"]).any()
    # target: labels on exactly cot + <|cot_end|> + <|traj_future_start|> + 128 + end + <|im_end|>
    n_cot = len(p.tokenizer.encode(s["cot"], add_special_tokens=False))
    lab = labels[labels != IGNORE_INDEX]
    assert len(lab) == n_cot + 2 + 128 + 2
    assert lab[n_cot] == sid["<|cot_end|>"] and lab[n_cot + 1] == sid["<|traj_future_start|>"]
    fut = lab[n_cot + 2: n_cot + 130]
    assert ((fut >= nano_cfg.traj_token_start_id) & (fut < nano_cfg.hist_token_start_id)).all()
    assert lab[-2] == sid["<|traj_future_end|>"] and lab[-1] == sid["<|im_end|>"]
    assert ids[(labels != IGNORE_INDEX).nonzero()[0] - 1] == sid["<|cot_start|>"]
    # image bookkeeping: 8 frames x 15 pads
    assert b["image_grid_thw"].tolist() == [[1, 6, 10]] * 8
    assert int(b["mm_token_type_ids"].sum()) == 8 * 15 == int((ids == sid["<|image_pad|>"]).sum())
    assert b["actions"].shape == (1, 64, 2)


def test_trajectory_only_target_and_left_padding(nano_cfg, nano_processor, sample_factory):
    p, sid = nano_processor, nano_cfg.special_ids
    b = p([sample_factory(0, cot="Keep lane."), sample_factory(1, cot=None)])
    L = b["input_ids"].shape[1]
    n_pad = int((b["attention_mask"][1] == 0).sum())
    assert n_pad == len(p.tokenizer.encode("Keep lane.", add_special_tokens=False))
    assert (b["input_ids"][1, :n_pad] == sid["<|endoftext|>"]).all() and b["attention_mask"][1, n_pad:].all()
    first = (b["labels"][1] != IGNORE_INDEX).nonzero()[0].item()
    assert b["input_ids"][1, first] == sid["<|cot_end|>"] and b["input_ids"][1, first - 1] == sid["<|cot_start|>"]
    # left padding aligns the <|traj_future_start|> column of every row
    tfs = (b["input_ids"] == sid["<|traj_future_start|>"]).int().argmax(1)
    assert tfs.tolist() == [L - 131, L - 131]


def test_patchify_layout_matches_pixel_blocks():
    P, M, TP = 16, 2, 2
    x = torch.randn(2, 3, 64, 96)
    pv = patchify_frames(x, P, M, TP)
    gh, gw = 4, 6
    assert pv.shape == (2 * gh * gw, 3 * TP * P * P)
    n, hb, wb, mh, mw = 1, 1, 2, 1, 0
    row = n * gh * gw + ((hb * (gw // M) + wb) * M + mh) * M + mw
    vec = pv[row].view(3, TP, P, P)
    r, c = (hb * M + mh) * P, (wb * M + mw) * P
    for tp in range(TP):  # the frame is repeated over the temporal patch
        torch.testing.assert_close(vec[:, tp], x[n, :, r:r + P, c:c + P])


def test_extract_between_and_bad_inputs(nano_processor, sample_factory):
    assert extract_between("a<|cot_start|> go left <|cot_end|>x", "cot") == "go left"
    assert extract_between("go left <|cot_end|>", "cot") == "go left"
    assert extract_between("no end marker", "cot") == ""
    s = sample_factory(0)
    s["ego_history_xyz"] = s["ego_history_xyz"][:10]
    with pytest.raises(ValueError, match="ego history"):
        nano_processor(s)
    s = sample_factory(0)
    s["image_frames"] = s["image_frames"].float()
    with pytest.raises(ValueError, match="uint8"):
        nano_processor(s)
