"""Stage specifics: stage-2 freezing and stop-gradient, the stage-1 → stage-2 backbone loader, the
trajectory-only ablation, losses going down on a fixed batch, LoRA placement and merging."""

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import make_samples, tiny_config  # noqa: E402

from cordillera.train import loop, stage1, stage2  # noqa: E402
from cordillera.train.config import LoraSettings, OptimSettings, TrainConfig  # noqa: E402

torch.set_num_threads(1)


def _proc(tok, use_coc=True):
    from cordillera.model.processor import VLAProcessor

    return VLAProcessor(tiny_config(use_coc), tok)


def _vla(seed=0, use_coc=True):
    from cordillera.model.modeling import CordilleraVLA

    torch.manual_seed(seed)
    return CordilleraVLA(tiny_config(use_coc))


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_stage2_freezes_backbone_and_trains_expert(tmp_path):
    cfg = TrainConfig(stage="stage2", num_threads=1, progress=False, tensorboard=False,
                      optim=dict(lr=1e-3, min_lr=1e-4, warmup_steps=0, max_steps=3, batch_size=2, weight_decay=0.1),
                      checkpoint=dict(out_dir=str(tmp_path), save_every=10),
                      eval=dict(every=100, num_samples=2, batch_size=2, k=2, flow_steps=2, coc_samples=0, max_new_tokens=8))  # fmt: skip
    vla = stage2.build_model(cfg, loop.RunData(None, None))
    assert not any(p.requires_grad for p in vla.model.vlm.parameters())
    before = _snapshot(vla.model)
    loop.run_stage(cfg, vla, loop.RunData(make_samples(4), None), stage2.loss_fn, stage2._freeze_eval)
    after = _snapshot(vla.model)
    for n in before:
        same = torch.equal(before[n], after[n])
        if n.startswith("vlm."):
            assert same, f"backbone parameter {n} changed in stage 2"
    for prefix in ("expert.", "action_in_proj.", "action_out_proj."):
        assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith(prefix)), prefix


def test_joint_fm_loss_sends_no_gradient_to_backbone(tok):
    proc = _proc(tok)
    vla = _vla()
    batch = proc(make_samples(2))
    g = torch.Generator().manual_seed(0)
    fm, _ = vla(batch, stage="stage2", generator=g)
    fm.backward()
    assert all(p.grad is None or not p.grad.any() for p in vla.model.vlm.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vla.model.expert.parameters())
    # joint = CE + FM: the backbone's gradient is the CE gradient alone
    vla.zero_grad()
    ce, _ = vla(batch, stage="stage1")
    ce.backward()
    g_ce = {n: p.grad.clone() for n, p in vla.model.vlm.named_parameters() if p.grad is not None}
    vla.zero_grad()
    loss, logs = stage2.joint_loss_fn(vla, batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert {"ce", "fm"} <= set(logs)
    for n, p in vla.model.vlm.named_parameters():
        if n in g_ce:
            assert torch.allclose(p.grad, g_ce[n], atol=1e-7), n
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vla.model.action_in_proj.parameters())


def test_load_stage1_backbone_checks_keys(tmp_path):
    s1 = _vla(seed=1)
    s1.save_pretrained(tmp_path / "s1")
    s2 = _vla(seed=2)
    expert_before = _snapshot(s2.model.expert)
    n = stage2.load_stage1_backbone(s2, tmp_path / "s1")
    assert n == len(s1.model.vlm.state_dict())
    for k, v in s1.model.vlm.state_dict().items():
        assert torch.equal(v, s2.model.vlm.state_dict()[k]), k
    for k, v in s2.model.expert.named_parameters():
        assert torch.equal(v, expert_before[k])  # only the backbone is loaded
    # a checkpoint of another shape is refused with the key named
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tmp_path / "s1" / "model.safetensors"))
    key = next(k for k in sd if k.startswith("vlm.") and sd[k].ndim == 2)
    sd[key] = torch.zeros(3, 3)
    (tmp_path / "bad").mkdir()
    save_file(sd, str(tmp_path / "bad" / "model.safetensors"))
    with pytest.raises(ValueError, match="shape mismatch"):
        stage2.load_stage1_backbone(s2, tmp_path / "bad")
    del sd[key]
    save_file(sd, str(tmp_path / "bad" / "model.safetensors"))
    with pytest.raises(ValueError, match="1 missing"):
        stage2.load_stage1_backbone(s2, tmp_path / "bad")


def test_ablation_builds_prompts_without_coc(tok):
    from cordillera.model.processor import INSTRUCTION, INSTRUCTION_TRAJ_ONLY, LABELS
    from cordillera.train.data import Collate

    samples = make_samples(2)
    coc_batch = Collate(_proc(tok, True), use_coc=True)(samples)
    abl_batch = Collate(_proc(tok, False), use_coc=False)(samples)
    with_text = tok.decode(coc_batch["input_ids"][0].tolist())
    without = tok.decode(abl_batch["input_ids"][0].tolist())
    assert samples[0]["cot"] in with_text and INSTRUCTION in with_text
    assert samples[0]["cot"] not in without and INSTRUCTION_TRAJ_ONLY in without and INSTRUCTION not in without
    assert "<|cot_start|><|cot_end|><|traj_future_start|>" in without  # empty CoC before the trajectory
    # labels: 130 trajectory tokens, then only <|cot_end|> and <|im_end|> as text
    cfg = tiny_config(False)
    lab = abl_batch[LABELS][0]
    lab = lab[lab != -100]
    t0 = cfg.traj_token_start_id
    n_traj = int(((lab >= t0) & (lab < t0 + cfg.tokenizer.future_num_bins)).sum())
    assert n_traj == 128 and len(lab) == 128 + 4
    assert abl_batch["cot_text"] == [s["cot"] for s in samples]  # labels kept for reporting only
    # the run config names the ablation; a trajectory-only model never decodes a CoC
    vc = loop.model_config(TrainConfig(use_coc=False))
    assert vc.name == "nano-traj-only" and vc.inputs.use_coc is False
    vla = _vla(use_coc=False).eval()
    out = vla.sample_trajectories(abl_batch, num_samples=1, flow_steps=1)
    ids = cfg.special_ids
    assert out.coc_token_ids[0, 0].tolist() == [ids["<|cot_end|>"], ids["<|traj_future_start|>"]]


def test_image_hw_sets_a_fresh_models_input_size_in_whole_tokens():
    from pydantic import ValidationError

    vc = loop.model_config(TrainConfig(image_hw=(128, 224)))
    assert (vc.inputs.image_height, vc.inputs.image_width) == (128, 224)
    assert (loop.model_config(TrainConfig()).inputs.image_height, vc.inputs.use_coc) == (96, True)  # else the preset's
    # one LLM token covers patch 16 × merge 2 = 32 px: 128×224 is 4×7 tokens per frame, 100×224 is not whole
    with pytest.raises(ValueError, match=r"multiples of 32 px \(patch 16 × merge 2\)"):
        loop.model_config(TrainConfig(image_hw=(100, 224)))
    with pytest.raises(ValidationError, match="keeps the input size"):
        TrainConfig(image_hw=(128, 224), init_from="runs/x/stage1/final")


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_losses_decrease_on_fixed_batch(tok, stage):
    proc = _proc(tok)
    vla = _vla()
    if stage == "stage2":
        vla.model.vlm.requires_grad_(False)
    batch = proc(make_samples(2))
    opt = loop.make_optimizer(vla.model.named_parameters(), OptimSettings(lr=3e-3, min_lr=3e-3, warmup_steps=0),
                              verbose=False)  # fmt: skip
    noise = torch.randn(2, 64, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.3, 0.6])
    losses = []
    for _ in range(25):
        loss, _ = vla(batch, stage="stage1") if stage == "stage1" else vla(batch, stage="stage2", noise=noise, t=t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_lora_wraps_only_backbone_linear_layers():
    from peft.tuners.lora import LoraLayer

    vla = _vla()
    vla.model.requires_grad_(False)
    vla.model.vlm.requires_grad_(True)
    wrapped = loop.apply_lora(vla, LoraSettings(enabled=True, r=4, alpha=8))
    cfg = tiny_config()
    assert len(wrapped) == cfg.text.num_hidden_layers * 7
    assert all(re.fullmatch(r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj", n) for n in wrapped)
    assert not any(isinstance(m, LoraLayer) for m in vla.model.expert.modules())
    assert not any(isinstance(m, LoraLayer) for m in vla.model.vlm.model.visual.modules())
    params = dict(vla.model.named_parameters())
    for n, p in params.items():
        if "lora_" in n:
            assert p.requires_grad, n
        elif ".base_layer." in n:
            assert not p.requires_grad, n
        elif n.startswith("expert."):
            assert not p.requires_grad, n
    assert params["vlm.model.language_model.embed_tokens.weight"].requires_grad  # not a LoRA target
    # merging folds the adapters in: same outputs, plain Linear layers, original key names
    with torch.no_grad():
        for n, p in params.items():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    vla.eval()
    ids = torch.randint(0, 4000, (1, 12))
    before = vla.model.vlm.model.language_model(input_ids=ids).last_hidden_state
    assert loop.merge_lora(vla) == len(wrapped)
    after = vla.model.vlm.model.language_model(input_ids=ids).last_hidden_state
    assert torch.allclose(before, after, atol=1e-5)
    assert set(vla.model.state_dict()) == set(_vla().model.state_dict())


def test_stage1_build_freezes_expert():
    cfg = TrainConfig(stage="stage1", model="nano")
    from cordillera.model import configuration

    orig = configuration.PRESETS["nano"]
    configuration.PRESETS["nano"] = tiny_config()  # keep the test small
    try:
        vla = stage1.build_model(cfg, loop.RunData(None, None))
    finally:
        configuration.PRESETS["nano"] = orig
    assert all(p.requires_grad for p in vla.model.vlm.parameters())
    for mod in (vla.model.expert, vla.model.action_in_proj, vla.model.action_out_proj):
        assert not any(p.requires_grad for p in mod.parameters())


def test_validation_samples_from_the_prompt_not_the_teacher_forced_target(tok):
    """Regression: validation used to sample after the training row (prompt + label CoC + 128
    trajectory tokens), so CoC accuracy and minADE measured a continuation of the answer."""
    from types import SimpleNamespace

    from cordillera.train.data import PROMPT_BATCH, Collate

    samples = make_samples(2)
    proc = _proc(tok, True)
    batch = Collate(proc, use_coc=True, with_prompt=True)(samples)
    prompt = batch[PROMPT_BATCH]
    cfg = tiny_config(True)
    t0 = cfg.traj_token_start_id
    for b in range(2):
        ids = prompt["input_ids"][b][prompt["attention_mask"][b].bool()].tolist()
        text = tok.decode(ids)
        assert text.endswith("<|cot_start|>") and samples[b]["cot"] not in text
        assert not any(t0 <= i < t0 + cfg.tokenizer.future_num_bins for i in ids)
        # the training row starts with exactly this prompt
        full = batch["input_ids"][b][batch["attention_mask"][b].bool()].tolist()
        assert full[: len(ids)] == ids and len(full) > len(ids)
    assert PROMPT_BATCH not in Collate(proc, use_coc=True)(samples)  # training batches stay lean

    vla = _vla().eval()
    seen = []
    real = vla.sample_trajectories

    def spy(b, **kw):
        seen.append(b["input_ids"])
        return real(b, **kw)

    vla.sample_trajectories = spy
    ev = SimpleNamespace(k=1, temperature=0.6, top_p=0.98, flow_steps=1, max_new_tokens=4, coc_samples=2)
    logs = loop.evaluate(vla, [batch], "stage2", None, ev, True, tok)
    assert len(seen) == 1 and torch.equal(seen[0], prompt["input_ids"])
    assert "val/min_ade" in logs and "val/coc_decision_acc" in logs
