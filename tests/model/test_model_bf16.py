"""Opt-in bfloat16 inference (issue #7): weights cast (vision tower kept fp32), buffers / logits /
flow state / outputs fp32.

Tolerances. bf16 keeps 8 mantissa bits: one rounding is a relative error ≤ 2^-9 (0.2 %), and
a forward pass through the nano's layers accumulates them like a random walk; one expert call
measured 0.45 % relative action error (rms) on the random-init nano. The tests allow 2 % (4×).
A random-init expert is not a contracting flow: over 10 Euler steps it amplifies any input
perturbation (0.5 % after 1 step became ~12 % after 10, the same growth a fp32 x0 perturbation of
that size shows), so the end-to-end trajectory comparison uses 1 flow step, where what is tested
is the bf16 arithmetic and not the random field's chaos. Positions: 1 s ahead within 15 cm
(measured ≤ 4 cm). On the trained `checkpoints/nano` (10 flow steps, see benchmarks/RESULTS.md)
bf16 and fp32 give the same minADE to 0.01 m.
"""

import copy

import pytest
import torch

from cordillera.model.modeling import FP32_MODULE_PREFIXES, CordilleraVLA, parse_dtype
from cordillera.model.policy import VLAPolicy, VLAPolicyFactory

REL_TOL = 0.02  # relative rms action error, see the module docstring


@pytest.fixture(scope="module")
def bf16_model(nano_model):
    return copy.deepcopy(nano_model).to_inference_dtype("bfloat16")


def _run(model, batch, **kw):
    return model.sample_trajectories(batch, generator=torch.Generator().manual_seed(7), **kw)


def _forced_decode_logits(model, batch, tokens, n: int = 8):
    """Logits (n, V) of n decode steps, feeding `tokens` (or the model's own greedy ones when None)."""
    seen, fed = [], []

    def force(step, logits):
        seen.append(logits[0].float().clone())
        if tokens is None:
            return logits
        out = torch.full_like(logits, float("-inf"))
        out[:, tokens[step]] = 0.0
        return out

    with torch.no_grad():
        logits, cache, next_pos, mask, _ = model._prefill(batch)
        stop = model.ids["<|traj_future_start|>"]
        ids, *_ = model._decode(logits, cache, next_pos, mask, stop, n + 2, 0.0, 1.0, None, min_new_tokens=n + 1,
                                logits_processor=force)
    return torch.stack(seen[1:n + 1]), ids[0].tolist()  # step 0's logits come from the prefill


def test_parse_dtype_names_and_errors():
    assert parse_dtype(None) is torch.float32
    assert parse_dtype("bf16") is parse_dtype("bfloat16") is parse_dtype(torch.bfloat16) is torch.bfloat16
    assert parse_dtype("FP32") is torch.float32
    with pytest.raises(ValueError, match="float16"):
        parse_dtype("float16")
    with pytest.raises(ValueError, match="inference dtype"):
        parse_dtype(torch.float64)


def test_cast_rounds_weights_and_keeps_buffers_fp32(nano_model, bf16_model):
    assert nano_model.dtype is torch.float32 and bf16_model.dtype is torch.bfloat16
    w32 = dict(nano_model.model.named_parameters())
    n_vision = 0
    for name, p in bf16_model.model.named_parameters():
        if name.startswith(FP32_MODULE_PREFIXES):  # the vision tower stays fp32 (faster on CPU)
            n_vision += 1
            assert p.dtype is torch.float32 and torch.equal(p, w32[name]), name
            continue
        assert p.dtype is torch.bfloat16, name
        assert torch.equal(p, w32[name].to(torch.bfloat16)), name  # exactly the rounded fp32 weight
    assert n_vision > 0 and bf16_model.model.vlm.lm_head.weight.dtype is torch.bfloat16
    b32 = dict(nano_model.model.named_buffers())
    names = [n for n, _ in bf16_model.model.named_buffers()]
    assert any(n.endswith("inv_freq") for n in names) and any(n.endswith(".freqs") for n in names)
    for name, b in bf16_model.model.named_buffers():
        assert torch.equal(b, b32[name]) and b.dtype == b32[name].dtype, name  # rotary / Fourier untouched


def test_bf16_fast_path_agrees_with_fp32(nano_model, bf16_model, nano_processor, sample_factory):
    batch = nano_processor(sample_factory(0, future=False))
    ref = _run(nano_model, batch, num_samples=3, fast=True, flow_steps=1)
    got = _run(bf16_model, batch, num_samples=3, fast=True, flow_steps=1)
    for t in (got.xyz, got.rot, got.actions, got.noise):
        assert t.dtype is torch.float32
    assert torch.equal(got.noise, ref.noise)  # same seed → same x0, the flow state starts equal
    assert torch.equal(got.coc_token_ids, ref.coc_token_ids)
    rel = (got.actions - ref.actions).pow(2).mean().sqrt() / ref.actions.pow(2).mean().sqrt()
    assert 0 < rel < REL_TOL  # > 0: bf16 really ran
    err_m = (got.xyz - ref.xyz).norm(dim=-1)  # (1, K, 64)
    assert err_m[..., 9].max() < 0.15  # 1.0 s ahead
    torch.testing.assert_close(got.rot @ got.rot.transpose(-1, -2), torch.eye(3).expand_as(got.rot),
                               atol=1e-5, rtol=0)  # fmt: skip


def test_bf16_expert_velocity_relative_error(nano_model, bf16_model, nano_processor, sample_factory):
    batch = nano_processor(sample_factory(1, future=False))
    x = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.3])
    vs = []
    with torch.no_grad():
        for model in (nano_model, bf16_model):
            _, cache, next_pos, mask, _ = model._prefill(batch)
            ctx = model.model.expert_context(cache, next_pos[:, None] + torch.arange(64), model.model.expert_mask(mask))
            vs.append(model.model.expert_velocity_fast(x, t, ctx))
    assert vs[1].dtype is torch.float32
    rel = (vs[1] - vs[0]).pow(2).mean().sqrt() / vs[0].pow(2).mean().sqrt()
    assert 0 < rel < REL_TOL


def test_bf16_coc_decoding_runs_and_starts_like_fp32(nano_model, bf16_model, nano_processor, sample_factory):
    batch = nano_processor(sample_factory(2, future=False))
    kw = dict(num_samples=2, max_new_tokens=8, min_new_tokens=3, flow_steps=2, temperature=0.0)
    ref, got = _run(nano_model, batch, **kw), _run(bf16_model, batch, **kw)
    tfs = bf16_model.ids["<|traj_future_start|>"]
    ids = got.coc_token_ids[0]  # (K, n)
    assert ids.shape[-1] >= 4 and (ids == tfs).any(dim=1).all()  # ≥ 3 tokens then the forced stop
    t0 = bf16_model.cfg.traj_token_start_id
    assert not ((ids >= t0) & (ids < t0 + bf16_model.cfg.tokenizer.traj_vocab_size)).any()  # <i*> banned
    assert got.coc_token_ids[0, :, 0].eq(ref.coc_token_ids[0, :, 0]).all()  # greedy first token from the prefill
    assert got.xyz.dtype is torch.float32 and torch.isfinite(got.xyz).all()


def test_checkpoint_round_trip_stays_fp32_and_bit_exact(nano_model, bf16_model, tmp_path):
    from safetensors.torch import load_file

    nano_model.save_pretrained(tmp_path / "fp32")
    back = CordilleraVLA.from_pretrained(tmp_path / "fp32")
    assert back.dtype is torch.float32
    for (k, a), (_, b) in zip(nano_model.model.state_dict().items(), back.model.state_dict().items(), strict=True):
        assert torch.equal(a, b) and a.dtype == b.dtype, k
    as_bf16 = CordilleraVLA.from_pretrained(tmp_path / "fp32", dtype="bf16")
    for (k, a), (_, b) in zip(bf16_model.model.state_dict().items(), as_bf16.model.state_dict().items(), strict=True):
        assert torch.equal(a, b) and a.dtype == b.dtype, k  # load-in-dtype = cast after load
    bf16_model.save_pretrained(tmp_path / "from_bf16")  # a cast model still writes fp32
    on_disk = load_file(str(tmp_path / "from_bf16" / "model.safetensors"))
    assert {v.dtype for v in on_disk.values() if v.is_floating_point()} == {torch.float32}
    for k, w in bf16_model.model.named_parameters():
        assert torch.equal(on_disk[k], w.float()), k


def test_policy_dtype_copies_the_callers_model_and_changes_the_fingerprint(nano_model, tmp_path):
    pol = VLAPolicy(nano_model, dtype="bfloat16", threads=None)
    assert pol.model.dtype is torch.bfloat16 and pol.dtype is torch.bfloat16
    assert nano_model.dtype is torch.float32  # the instance passed in was not cast
    assert VLAPolicy(nano_model, threads=None).model is nano_model  # fp32 default: no copy
    with pytest.raises(ValueError, match="inference dtype"):
        VLAPolicy(nano_model, dtype="int8")
    f32 = VLAPolicyFactory(str(tmp_path)).fingerprint()
    f16 = VLAPolicyFactory(str(tmp_path), (("dtype", "bfloat16"),)).fingerprint()
    assert f32 != f16


def test_bf16_model_decodes_with_fp32_copies_outside_the_state_dict(nano_model, bf16_model, nano_processor,
                                                                     sample_factory):  # fmt: skip
    dw = bf16_model.decode_weights
    assert nano_model.decode_weights is None and dw is not None
    # the copies hold the original fp32 weights, and are neither parameters nor checkpoint keys
    ref = dict(nano_model.model.vlm.model.language_model.named_parameters())
    for name, p in dw.text_model.named_parameters():
        assert p.dtype is torch.float32 and torch.equal(p, ref[name]), name
    assert torch.equal(dw.lm_head.weight, nano_model.model.vlm.lm_head.weight)
    n_params = sum(p.numel() for p in bf16_model.parameters())
    assert n_params == sum(p.numel() for p in nano_model.parameters())
    assert bf16_model.model.state_dict().keys() == nano_model.model.state_dict().keys()
    # decoding leaves the cache in the weights' dtype for the expert
    batch = nano_processor(sample_factory(3, future=False))
    with torch.no_grad():
        logits, cache, next_pos, mask, _ = bf16_model._prefill(batch)
        bf16_model._decode(logits, cache, next_pos, mask, bf16_model.ids["<|traj_future_start|>"], 5, 0.0, 1.0, None)
    assert all(layer.keys.dtype is torch.bfloat16 for layer in cache.layers)
    # teacher-forced on the fp32 model's greedy tokens, decode-step logits with the fp32 copies are
    # closer to the fp32 model's than decoding with the bf16 weights (both share the bf16 prefill)
    ref_logits, tokens = _forced_decode_logits(nano_model, batch, None)
    err = {}
    for name, weights in (("fp32 copies", dw), ("bf16 weights", None)):
        bf16_model.decode_weights = weights
        got, _ = _forced_decode_logits(bf16_model, batch, tokens)
        ok = torch.isfinite(ref_logits)  # the stop id is masked while min_new_tokens lasts
        err[name] = float((got - ref_logits)[ok].pow(2).mean().sqrt() / ref_logits[ok].pow(2).mean().sqrt())
    bf16_model.decode_weights = dw
    assert 0 < err["fp32 copies"] < err["bf16 weights"], err
    back = copy.deepcopy(bf16_model).to_inference_dtype("float32")
    assert back.decode_weights is None


def test_cpu_bf16_support_is_read_from_cpuinfo_flags(tmp_path):
    from cordillera.model.modeling import cpu_has_native_bf16

    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_has_native_bf16(f) is False
    f.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_native_bf16(f) is True
    f.write_text("processor\t: 0\n")
    assert cpu_has_native_bf16(f) is None  # no flags line: unknown
    assert cpu_has_native_bf16(tmp_path / "missing") is None


def test_bf16_on_a_cpu_without_native_bf16_warns(nano_model, monkeypatch):
    import warnings

    import cordillera.model.modeling as modeling

    monkeypatch.setattr(modeling, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="without native bf16"):
        copy.deepcopy(nano_model).to_inference_dtype("bfloat16")
    for answer in (True, None):  # native, or unknown: no warning
        monkeypatch.setattr(modeling, "cpu_has_native_bf16", lambda: answer)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            copy.deepcopy(nano_model).to_inference_dtype("bfloat16")
