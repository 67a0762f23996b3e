"""The optimized inference paths give the numbers of the reference paths (issue #7 latency work).

`optimized=True` (default) decodes by calling the HF decoder layers with rotary/mask precomputed
once per plan and runs the expert over a read-only prefix K/V view; `optimized=False` is the
earlier implementation (full HF model call per token, expert appending to + cropping the cache).
"""

import torch

from cordillera.model.modeling import PrefixKV


def _run(model, batch, optimized, **kw):
    g = torch.Generator().manual_seed(123)
    return model.sample_trajectories(batch, generator=g, optimized=optimized, flow_steps=4, **kw)


def _assert_same(a, b):
    assert torch.equal(a.coc_token_ids, b.coc_token_ids)
    torch.testing.assert_close(b.actions, a.actions, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.xyz, a.xyz, rtol=1e-5, atol=1e-4)
    assert a.cache_len == b.cache_len


def test_optimized_decode_and_expert_equal_reference_on_padded_batch(nano_model, nano_processor, sample_factory):
    # rows with 4 and 1 cameras → different prompt lengths → left padding exercises the masks
    batch = nano_processor([sample_factory(0, future=False), sample_factory(1, future=False, cams=(0,))])
    assert not batch["attention_mask"].bool().all()
    ref = _run(nano_model, batch, False, num_samples=2, max_new_tokens=12, min_new_tokens=3)
    opt = _run(nano_model, batch, True, num_samples=2, max_new_tokens=12, min_new_tokens=3)
    _assert_same(ref, opt)
    assert opt.coc_token_ids.shape[-1] > 3  # tokens were really sampled (temperature 0.6)


def test_optimized_fast_path_and_guidance_equal_reference(nano_model, nano_processor, sample_factory):
    batch = nano_processor(sample_factory(2, future=False, nav="Turn left in 30m"))
    for kw in (dict(fast=True, num_samples=3), dict(guidance=2.0, num_samples=2, max_new_tokens=6)):
        _assert_same(_run(nano_model, batch, False, **kw), _run(nano_model, batch, True, **kw))


def test_expert_velocity_fast_equals_cache_path_and_leaves_cache_alone(nano_model, nano_processor, sample_factory):
    m = nano_model.model
    batch = nano_processor([sample_factory(0, future=False), sample_factory(3, future=False, cams=(1, 2))])
    _, cache, next_pos, mask, _ = nano_model._prefill(batch)
    keys = [layer.keys for layer in cache.layers]
    pos = next_pos[:, None] + torch.arange(64)
    emask = m.expert_mask(mask)
    x = torch.randn(2, 64, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.2, 0.7])
    with torch.no_grad():
        ctx = m.expert_context(cache, pos, emask)
        fast = m.expert_velocity_fast(x, t, ctx)
        assert all(a is layer.keys for a, layer in zip(keys, cache.layers))  # not even re-assigned
        ref = m.expert_velocity(x, t, cache, pos, emask)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)


def test_prefix_kv_update_concatenates_without_storing():
    cache = type("C", (), {})()
    layer = type("L", (), {"keys": torch.zeros(1, 2, 5, 4), "values": torch.ones(1, 2, 5, 4)})()
    cache.layers = [layer]
    p = PrefixKV(cache, 1)
    k, v = p.update(torch.full((1, 2, 3, 4), 7.0), torch.full((1, 2, 3, 4), 9.0), 0)
    assert k.shape == (1, 2, 8, 4) and v.shape == (1, 2, 8, 4)
    assert torch.equal(k[:, :, 5:], torch.full((1, 2, 3, 4), 7.0)) and torch.equal(v[:, :, :5], layer.values)
    assert p.keys[0].shape[2] == 5  # a second update starts from the prefix again


def test_cached_vision_features_equal_batched_encoding(nano_model, nano_processor, sample_factory):
    m = nano_model.model
    b = nano_processor(sample_factory(4, future=False))  # 4 cameras × 4 frames = 16 images
    keys = [(cam, f) for cam in range(4) for f in range(4)]
    with torch.no_grad():
        ref = m.image_features(b["pixel_values"], b["image_grid_thw"])
        store = {}
        # encode the last frame of every camera alone first (what a closed-loop step adds)...
        newest = [i for i, k in enumerate(keys) if k[1] == 3]
        counts = b["image_grid_thw"].prod(-1).tolist()
        chunks = b["pixel_values"].split(counts)
        m.image_features_cached(torch.cat([chunks[i] for i in newest]), b["image_grid_thw"][newest],
                                [keys[i] for i in newest], store)  # fmt: skip
        assert len(store) == 4
        got = m.image_features_cached(b["pixel_values"], b["image_grid_thw"], keys, store)  # ...then the other 12
    assert len(store) == 16
    for a, c in zip(ref.pooler_output, got.pooler_output, strict=True):
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5)
    for la, lc in zip(ref.deepstack_features, got.deepstack_features, strict=True):
        for a, c in zip(la, lc, strict=True):
            torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5)
    # a call whose keys are all stored encodes nothing: it returns the stored tensors themselves
    again = m.image_features_cached(b["pixel_values"][:0], b["image_grid_thw"], keys, store)
    assert all(x is store[k][0] for x, k in zip(again.pooler_output, keys))


def test_linear_patch_embed_equals_qwen3vl_conv3d_forward_and_grad(nano_model):
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed

    from cordillera.model.modeling import LinearPatchEmbed

    embed = nano_model.model.vlm.model.visual.patch_embed
    assert isinstance(embed, LinearPatchEmbed)
    # the original module, same weights: checkpoints keep key `...patch_embed.proj.weight` (D, C, T, P, P)
    ref = Qwen3VLVisionPatchEmbed(nano_model.model.vlm.config.vision_config)
    ref.load_state_dict(embed.state_dict())
    assert embed.proj.weight.shape == (128, 3, 2, 16, 16)
    x = torch.randn(37, 3 * 2 * 16 * 16, generator=torch.Generator().manual_seed(0))  # `pixel_values` rows
    fast, slow = LinearPatchEmbed(ref)(x), ref(x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    (fast * torch.arange(128.0)).sum().backward()
    g_fast = ref.proj.weight.grad.clone()
    ref.zero_grad()
    (ref(x) * torch.arange(128.0)).sum().backward()
    torch.testing.assert_close(g_fast, ref.proj.weight.grad, rtol=1e-4, atol=1e-3)
