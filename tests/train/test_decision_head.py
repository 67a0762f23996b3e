"""The decision head (stage-1 auxiliary classifier of the CoC's decisions): hand-derived classes, its
loss reads the state at <|cot_start|> and reaches the vision tower, and it travels through save/load
and the stage-1 → 2 hand-over (frozen there)."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import make_samples, tiny_config, tiny_config_with_loss  # noqa: E402

from cordillera.model.modeling import CordilleraVLA, decision_targets, prompt_tensors  # noqa: E402
from cordillera.model.processor import COT_TEXT  # noqa: E402
from cordillera.reasoning.schema import (  # noqa: E402
    LATERAL_CLASSES,
    LONGITUDINAL_CLASSES,
    CocRecord,
    decision_classes,
)

torch.set_num_threads(1)


def _head_config(weight=1.0):
    return tiny_config_with_loss(decision_head_weight=weight)


@pytest.fixture(scope="module")
def proc():
    from cordillera.model.processor import VLAProcessor
    from cordillera.model.tokenizer import load_tokenizer

    return VLAProcessor(_head_config(), load_tokenizer(_head_config()))


def _batch(proc, n=2, seed=2):
    samples = make_samples(n, seed=seed)
    batch = proc(samples)
    batch[COT_TEXT] = [s["cot"] for s in samples]
    return batch


def test_decision_classes_hand_values():
    # longitudinal: the schema's 7 decisions then none; lateral: (Lane Change, Nudge, Turn) × (left, right),
    # (Merge, Split) × (none, left, right), Keep Lane, none
    assert len(LONGITUDINAL_CLASSES) == 8 and len(LATERAL_CLASSES) == 14
    assert decision_classes(CocRecord(longitudinal="Yield", lateral="Turn", lateral_direction="right")) == (1, 5)
    assert decision_classes(CocRecord(longitudinal="Stop")) == (0, 13)
    assert decision_classes(CocRecord(lateral="Keep Lane")) == (7, 12)
    assert decision_classes(CocRecord(longitudinal="Keep Distance", lateral="Merge", lateral_direction="left")) == (4, 7)
    with pytest.raises(ValueError, match="direction"):
        decision_classes(CocRecord(lateral="Lane Change"))  # a directed decision without its direction
    # from text, through the parser
    t = decision_targets(["Stop at the stop line since the light is red.",
                          "Turn right at the intersection and yield to the pedestrian.", ""])  # fmt: skip
    assert t.tolist() == [[0, 13], [1, 5], [7, 13]]


def test_stage1_loss_reads_cot_start_and_reaches_the_vision_tower(proc):
    torch.manual_seed(0)
    vla = CordilleraVLA(_head_config(0.5))
    head = vla.model.decision_head
    batch = _batch(proc)
    with torch.no_grad():  # a zero head: uniform logits, CE = ln(classes) on each axis
        head.linear.weight.zero_()
        head.linear.bias.zero_()
    loss, logs = vla(batch, stage="stage1")
    assert logs["decision_ce"] == pytest.approx(0.5 * (math.log(8) + math.log(14)), rel=1e-6)
    assert loss.item() == pytest.approx(logs["ce_traj"] + logs["ce_text"] + 0.5 * logs["decision_ce"], rel=1e-5)
    # the state it reads is the backbone's last hidden state at <|cot_start|> (the CoC's first decode state)
    m = vla.model
    with torch.no_grad():
        _, _, _, _, state = m.stage1_losses(*prompt_tensors(batch), batch["labels"])
        pos = m.rope_positions(*[batch[k] for k in ("input_ids", "mm_token_type_ids", "image_grid_thw", "attention_mask")])
        h, _ = m.backbone(batch["input_ids"], batch["attention_mask"], pos,
                          m.image_features(batch["pixel_values"], batch["image_grid_thw"]), batch["mm_token_type_ids"])  # fmt: skip
    for b in range(2):
        (i,) = (batch["input_ids"][b] == m.cot_start_id).nonzero()[:, 0].tolist()
        assert torch.allclose(state[b], h[b, i], atol=1e-6)
    # a learning head: its CE alone reaches the text layers and the vision tower
    torch.nn.init.normal_(head.linear.weight, std=0.1)
    vla.zero_grad()
    _, _, _, _, state = m.stage1_losses(*prompt_tensors(batch), batch["labels"])
    head.loss(state, decision_targets(batch[COT_TEXT]))[0].backward()
    for part in (m.vlm.model.visual, m.vlm.model.language_model):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    # no head in the config, no extra loss term
    plain = CordilleraVLA(tiny_config())
    assert plain.model.decision_head is None and "decision_ce" not in plain(batch, stage="stage1")[1]


def test_checkpoint_round_trip_and_stage2_freezes_the_head(proc, tmp_path):
    from cordillera.train import loop, stage2
    from cordillera.train.config import TrainConfig

    torch.manual_seed(0)
    vla = CordilleraVLA(_head_config())
    assert set(vla.model.stage1_heads()) == {"decision_head"}
    vla.save_pretrained(tmp_path / "s1")
    back = CordilleraVLA.from_pretrained(tmp_path / "s1")
    assert torch.equal(back.model.decision_head.linear.weight, vla.model.decision_head.linear.weight)
    cfg = TrainConfig(stage="stage2", init_from=str(tmp_path / "s1"), progress=False, tensorboard=False,
                      checkpoint=dict(out_dir=str(tmp_path / "s2")))  # fmt: skip
    s2 = stage2.build_model(cfg, loop.RunData(None, None))
    assert torch.equal(s2.model.decision_head.linear.weight, vla.model.decision_head.linear.weight)
    assert not any(p.requires_grad for p in s2.model.decision_head.parameters())


def test_train_config_sets_the_weight_and_refuses_it_without_coc():
    from cordillera.train import loop
    from cordillera.train.config import TrainConfig

    assert loop.model_config(TrainConfig(decision_head_weight=0.3), base=tiny_config()).loss.decision_head_weight == 0.3
    assert loop.model_config(TrainConfig(), base=tiny_config()).loss.decision_head_weight == 0.0
    with pytest.raises(ValueError, match="use_coc"):
        TrainConfig(decision_head_weight=1.0, use_coc=False)


def test_prompt_state_is_the_state_the_coc_is_decoded_from(proc):
    """`prompt_state` of a prompt batch (ending at <|cot_start|>) gives `_prefill`'s first-token logits
    through lm_head: the decision head at inference reads exactly what CoC decoding starts from."""
    torch.manual_seed(0)
    vla = CordilleraVLA(_head_config()).eval()
    prompts = proc([{k: v for k, v in s.items() if k not in ("cot", "ego_future_xyz", "ego_future_rot")}
                    for s in make_samples(2, seed=3)])  # fmt: skip
    assert (prompts["input_ids"][:, -1] == vla.model.cot_start_id).all()
    with torch.no_grad():
        logits = vla._prefill(prompts)[0]
        state = vla.prompt_state(prompts)
        assert torch.allclose(vla.model.vlm.lm_head(state).float(), logits, atol=1e-5)
