import math

import pytest
import torch
from transformers import DynamicCache

from cordillera.model.configuration import PRESETS
from cordillera.model.modeling import CordilleraVLA, VLAModel


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_nano_parameter_count(nano_model):
    n = _n_params(nano_model)
    assert 9e6 < n < 13e6, n


def test_alpamayo_10b_parameter_counts_on_meta():
    """Which parameters each published number counts (spec §1.3), group by group.

    - backbone 8.2B (model card) = the Qwen3-VL-8B *language* part: `vlm.model.language_model`
      (embed_tokens 155697×4096 + 36 layers + norm) + the untied `vlm.lm_head` (155697×4096).
      Qwen3-VL-8B is ~8.77B with its vision tower; minus the 0.58B tower that is ~8.2B.
    - expert 2.3B (model card) = `expert` (36 layers + norm, no embeddings).
    - "10B" nominal / 10.5B = backbone + expert only; it leaves out the vision tower
      `vlm.model.visual` (0.58B) and `action_in_proj` + `action_out_proj` (5.3M).
    - "HF shows 11B" (22 GB in bf16) = every tensor of the checkpoint, vision tower included.
    """
    with torch.device("meta"):
        m = VLAModel(PRESETS["alpamayo-10b"])
    vlm = m.vlm
    assert vlm.lm_head.weight is not vlm.model.language_model.embed_tokens.weight  # untied (spec §1.3)
    groups = {
        "language_model": _n_params(vlm.model.language_model),
        "lm_head": _n_params(vlm.lm_head),
        "vision": _n_params(vlm.model.visual),
        "expert": _n_params(m.expert),
        "action_projections": _n_params(m.action_in_proj) + _n_params(m.action_out_proj),
    }
    total = _n_params(m)
    assert sum(groups.values()) == total  # the groups cover every parameter exactly once
    backbone = groups["language_model"] + groups["lm_head"]
    assert abs(backbone / 8.2e9 - 1) < 0.02, backbone  # 8.221B
    assert abs(groups["expert"] / 2.3e9 - 1) < 0.03, groups["expert"]  # 2.265B
    assert abs((backbone + groups["expert"]) / 10.5e9 - 1) < 0.05  # 10.486B: the published 8.2 + 2.3
    assert abs(groups["vision"] / 0.58e9 - 1) < 0.02, groups["vision"]  # 0.576B, not in the 10.5B
    assert 5e6 < groups["action_projections"] < 6e6  # spec §1.3 "about 5M"
    assert abs(total / 11e9 - 1) < 0.02, total  # 11.068B: the checkpoint total HF displays as 11B


def _prefix_cache(model, batch):
    logits, cache, next_pos, mask, _ = model._prefill(batch)
    return cache, next_pos, mask


def test_action_tokens_are_bidirectional_and_prefix_unaffected(nano_model, nano_processor, sample_factory):
    m = nano_model.model
    b = nano_processor(sample_factory(0, future=False))
    cache, next_pos, mask = _prefix_cache(nano_model, b)
    keys_before = [layer.keys.clone() for layer in cache.layers]
    C = mask.shape[1]
    pos = next_pos[:, None] + torch.arange(64)
    emask = m.expert_mask(mask)
    x = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.3])
    with torch.no_grad():
        v = m.expert_velocity(x, t, cache, pos, emask)
        x2 = x.clone()
        x2[:, 63] += 1.0  # perturb the LAST action token
        v2 = m.expert_velocity(x2, t, cache, pos, emask)
    assert (v2[:, 0] - v[:, 0]).abs().max() > 1e-4  # token 0 sees token 63: bidirectional
    # the cache is back to the prefix, bit for bit, so the prefix never sees the action tokens
    assert cache.get_seq_length() == C
    for k0, layer in zip(keys_before, cache.layers):
        assert torch.equal(k0, layer.keys)
    # a causal mask among the action tokens would hide token 63 from token 0 (sanity of the test)
    causal = emask.clone()
    causal[0, 0, :, C:] = torch.triu(torch.full((64, 64), torch.finfo(torch.float32).min), 1)
    with torch.no_grad():
        c1 = m.expert_velocity(x, t, cache, pos, causal)
        c2 = m.expert_velocity(x2, t, cache, pos, causal)
    torch.testing.assert_close(c1[:, 0], c2[:, 0])
    # the next token's logits after the expert ran equal those from an untouched prefix cache
    nxt = torch.tensor([[nano_model.ids["<|cot_end|>"]]])
    with torch.no_grad():
        l_after, _ = nano_model._step(nxt, cache, next_pos, mask)
        _, cache2, _, _, _ = nano_model._prefill(b)
        l_ref, _ = nano_model._step(nxt, cache2, next_pos, mask)
    torch.testing.assert_close(l_after, l_ref, rtol=0, atol=0)


def test_k_samples_independent_and_cache_restored(nano_model, nano_processor, sample_factory):
    b = nano_processor(sample_factory(0, future=False))
    out = nano_model.sample_trajectories(b, num_samples=3, temperature=1.0, top_p=1.0, max_new_tokens=12,
                                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert out.xyz.shape == (1, 3, 64, 3) and out.rot.shape == (1, 3, 64, 3, 3)
    n = out.noise[0]
    assert not torch.equal(n[0], n[1]) and not torch.equal(n[1], n[2])
    coc = out.coc_token_ids[0]
    assert not torch.equal(coc[0], coc[1]) and not torch.equal(coc[1], coc[2])
    t0, nt = PRESETS["nano"].traj_token_start_id, PRESETS["nano"].tokenizer.traj_vocab_size
    assert not ((coc >= t0) & (coc < t0 + nt)).any()  # <i*> masked during CoC decoding
    tfs = nano_model.ids["<|traj_future_start|>"]
    assert ((coc == tfs).sum(1) == 1).all()  # every sample ends its CoC with exactly one tfs
    assert out.cache_len["before_expert"] == out.cache_len["after_expert"]
    assert not torch.allclose(out.xyz[0, 0], out.xyz[0, 1])
    assert torch.isfinite(out.xyz).all()


def test_fast_path_equals_full_path_with_same_tokens_and_noise(nano_model, nano_processor, sample_factory):
    b = nano_processor(sample_factory(2, future=False))
    noise = torch.randn(1, 2, 64, 2, generator=torch.Generator().manual_seed(5))
    forced = [nano_model.ids["<|cot_end|>"], nano_model.ids["<|traj_future_start|>"]]

    def force(step, logits):
        out = torch.full_like(logits, float("-inf"))
        out[:, forced[step]] = 0.0
        return out

    # The caches differ only by float rounding (one 2-token forward vs two 1-token forwards). A
    # random-init action_in_proj has Fourier features up to 100 Hz, so each Euler step amplifies
    # such 1e-6 differences ~30x; compare after 2 steps, where they are still tiny.
    full = nano_model.sample_trajectories(b, num_samples=2, noise=noise, logits_processor=force, flow_steps=2)
    fast = nano_model.sample_trajectories(b, num_samples=2, noise=noise, fast=True, flow_steps=2)
    assert full.coc_token_ids[0, 0].tolist() == forced == fast.coc_token_ids[0, 1].tolist()
    assert full.cache_len == fast.cache_len
    torch.testing.assert_close(full.actions, fast.actions, rtol=0, atol=1e-4)
    torch.testing.assert_close(full.xyz, fast.xyz, rtol=0, atol=1e-3)  # [m] over ~50 m of travel


def test_left_padded_batch_matches_single_rows(nano_model, nano_processor, sample_factory):
    s0 = sample_factory(0, future=False, cams=(0, 1, 2, 6))
    s1 = sample_factory(1, future=False, cams=(1,), nav="Turn left in 30m")
    noise = torch.randn(2, 1, 64, 2, generator=torch.Generator().manual_seed(1))
    # flow_steps=2: see the fast-path test on why random-init Euler steps amplify rounding
    both = nano_model.sample_trajectories(nano_processor([s0, s1]), noise=noise, temperature=0.0, flow_steps=2,
                                          max_new_tokens=6)  # fmt: skip
    for i, s in enumerate((s0, s1)):
        one = nano_model.sample_trajectories(nano_processor(s), noise=noise[i:i + 1], temperature=0.0, flow_steps=2,
                                             max_new_tokens=6)  # fmt: skip
        n = one.coc_token_ids.shape[-1]
        assert both.coc_token_ids[i, :, :n].tolist() == one.coc_token_ids[0].tolist()
        torch.testing.assert_close(both.actions[i], one.actions[0], rtol=1e-4, atol=1e-4)


def test_guidance_weight_one_is_plain_conditional(nano_model, nano_processor, sample_factory):
    b = nano_processor(sample_factory(3, future=False, nav="Turn right in 20m"))
    assert "uncond_input_ids" in b
    # the unconditional prompt is the nav prompt minus <|route_start|>…<|route_end|>
    n_route = len(nano_processor.tokenizer.encode("Turn right in 20m", add_special_tokens=False)) + 2
    assert int(b["attention_mask"].sum() - b["uncond_attention_mask"].sum()) == n_route
    noise = torch.randn(1, 1, 64, 2, generator=torch.Generator().manual_seed(2))
    kw = dict(noise=noise, temperature=0.0, max_new_tokens=5, flow_steps=2)
    no_uncond = {k: v for k, v in b.items() if not k.startswith("uncond_")}
    plain = nano_model.sample_trajectories(no_uncond, **kw)
    w1 = nano_model.sample_trajectories(b, guidance=1.0, **kw)
    w0 = nano_model.sample_trajectories(b, guidance=0.0, **kw)
    assert torch.equal(plain.actions, w1.actions)  # w = 1 never builds the unconditional branch
    assert torch.equal(plain.coc_token_ids, w0.coc_token_ids)  # CoC decoded once, with nav
    assert (plain.actions - w0.actions).abs().max() > 1e-4  # w = 0 uses the nav-free cache
    assert w0.cache_len["before_expert"] == w0.cache_len["after_expert"]


def test_generate_text_stops_at_answer_end(nano_model, nano_processor, sample_factory):
    b = nano_processor(sample_factory(0, future=False, cams=(1,)), question="Is the light red?")
    ids = b["input_ids"][0]
    assert ids[-1] == nano_model.ids["<|answer_start|>"]
    assert (ids == nano_model.ids["<|question_start|>"]).sum() == 1
    assert not (ids == nano_model.ids["<|traj_history_start|>"]).any()
    gen = nano_model.generate_text(b, max_new_tokens=7, num_samples=2, generator=torch.Generator().manual_seed(0))
    assert gen.shape[:2] == (1, 2) and gen.shape[2] <= 7
    assert gen[0, :, -1].tolist() == [nano_model.ids["<|answer_end|>"]] * 2 or gen.shape[2] < 7


def test_save_load_bit_exact_and_pickle_refused(tmp_path, nano_model, nano_tokenizer):
    d = tmp_path / "ckpt"
    nano_model.save_pretrained(d, tokenizer=nano_tokenizer)
    assert (d / "config.json").exists() and (d / "model.safetensors").exists() and (d / "tokenizer.json").exists()
    loaded = CordilleraVLA.from_pretrained(d)
    sd0, sd1 = nano_model.model.state_dict(), loaded.model.state_dict()
    assert sd0.keys() == sd1.keys()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    prefixes = {k.split(".")[0] for k in sd0}
    assert prefixes == {"vlm", "expert", "action_in_proj", "action_out_proj"}
    from cordillera.model.tokenizer import load_tokenizer

    assert len(load_tokenizer(loaded.cfg, d)) == len(nano_tokenizer)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ValueError, match="pickled"):
        CordilleraVLA.from_pretrained(d)
    with pytest.raises(ValueError, match="pickled"):
        CordilleraVLA.from_pretrained(d / "pytorch_model.bin")


def test_load_rejects_wrong_shapes(tmp_path, nano_model):
    from safetensors.torch import load_file, save_file

    d = tmp_path / "bad"
    nano_model.save_pretrained(d)
    sd = load_file(str(d / "model.safetensors"))
    sd["action_out_proj.weight"] = torch.zeros(3, sd["action_out_proj.weight"].shape[1])
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match="shape mismatch for action_out_proj.weight"):
        CordilleraVLA.from_pretrained(d)
    del sd["action_out_proj.weight"]
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match="tensors"):
        CordilleraVLA.from_pretrained(d)


def test_losses_decrease_on_fixed_batch(nano_cfg, nano_processor, sample_factory):
    torch.manual_seed(1)
    model = CordilleraVLA(nano_cfg).train()
    # one camera, one frame: the shortest real prompt (~180 tokens) keeps 40 optimizer steps cheap
    b = nano_processor(sample_factory(0, cot="Keep lane since the road ahead is clear.", cams=(1,), n_frames=1))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 64, 2, generator=g)
    t = torch.tensor([0.4])
    hist = {"stage1": [], "stage2": []}
    for stage in ("stage1", "stage2"):
        for _ in range(20):
            loss, logs = model(b, stage, noise=noise, t=t)
            assert math.isfinite(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
            hist[stage].append(logs["loss"])
    assert hist["stage1"][-1] < 0.5 * hist["stage1"][0], hist["stage1"]
    assert hist["stage2"][-1] < 0.5 * hist["stage2"][0], hist["stage2"]
    # stage 2 trains only the expert side: the VLM got no gradient from it
    loss, _ = model(b, "stage2", noise=noise, t=t)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.model.vlm.parameters())
    assert model.model.action_in_proj.trunk[0].weight.grad.abs().max() > 0
