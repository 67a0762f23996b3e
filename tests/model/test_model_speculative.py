"""Speculative CoC decoding (issue #7 latency): the n-gram draft, the exactness of speculative
sampling against a toy model with known probabilities, the real model's greedy CoC unchanged by
any draft, and the policy's per-rollout draft."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cordillera.model.drafting import NgramDraft
from cordillera.model.modeling import TOP_P_CANDIDATES, CordilleraVLA, _top_p_filter


# ---- the draft ------------------------------------------------------------------------------------
def test_draft_proposes_the_most_frequent_continuation_and_backs_off_to_shorter_contexts():
    d = NgramDraft([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4]], order=3)
    assert d.propose([]) == [1, 2, 3, 4]  # from the start of a sequence; stops where the sequences end
    assert d.propose([1, 2]) == [3, 4]  # 4 followed (2, 3) twice, 5 once
    assert d.propose([7, 2]) == [3, 4]  # (7, 2) never seen: backs off to (2,)
    assert d.propose([9]) == []  # nothing known after 9
    assert d.propose([1], k=1) == [2]
    d.add([1, 2, 3, 5])
    d.add([1, 2, 3, 5])  # now 5 is the more frequent continuation
    assert d.propose([1, 2]) == [3, 5]
    assert d.sequences_seen == 5


def test_draft_table_is_capped_and_bad_settings_are_refused():
    d = NgramDraft(order=4, max_contexts=10)
    for s in range(20):
        d.add(list(range(s, s + 8)))
    assert len(d) == 10
    # the first sequence's first 4 tokens filled the 10 contexts (1 + 2 + 3 + 4): only those are known
    assert d.propose([0]) == [1, 2, 3]
    for kw in ({"order": 0}, {"max_draft": 0}):
        with pytest.raises(ValueError):
            NgramDraft(**kw)


def test_top_p_among_the_top_candidates_equals_the_full_sort():
    g = torch.Generator().manual_seed(0)
    for scale in (0.2, 1.0, 4.0):  # flat → the nucleus outgrows the candidates → full sort; peaked → topk
        x = torch.randn(3, 3 * TOP_P_CANDIDATES, generator=g) * scale
        x[:, :5] = float("-inf")  # banned ids
        for top_p in (0.5, 0.9, 0.98):
            fast = _top_p_filter(x, top_p)
            order = x.sort(-1, descending=True)
            probs = order.values.softmax(-1)
            keep = probs.cumsum(-1) - probs <= top_p
            ref = torch.full_like(x, float("-inf")).scatter(-1, order.indices, order.values.masked_fill(~keep, float("-inf")))
            assert torch.equal(torch.isinf(fast), torch.isinf(ref))
            torch.testing.assert_close(fast[~torch.isinf(fast)], ref[~torch.isinf(ref)])


# ---- exactness on a toy model --------------------------------------------------------------------
class _ToyCache:
    def __init__(self, n: int):
        self.n = n

    def get_seq_length(self) -> int:
        return self.n

    def crop(self, k: int) -> None:
        assert k < 0
        self.n += k


def _toy(logit_table: torch.Tensor, cache: _ToyCache):
    """A Markov 'model': the logits after token t are logit_table[t]; feeding grows the cache."""
    def block(toks, s):
        assert cache.n == 10 + s  # fed right after the accepted tokens
        cache.n += toks.shape[1]
        return logit_table[toks]  # (1, n, V)

    def step(tok, s):
        return block(tok[:, None], s)[:, -1]

    step.block = block
    return step


def _speculate(table, first_logits, draft, temperature, top_p=1.0, gen=None, max_new=12, stop=4):
    def rules(step, lg):  # as `_decode`'s: the last step of the budget is the stop
        if step < max_new - 1:
            return lg
        return torch.full_like(lg, float("-inf")).index_fill_(-1, torch.tensor([stop]), 0.0)

    cache = _ToyCache(10)
    out, forwards = CordilleraVLA._speculate(first_logits, cache, 10, _toy(table, cache), rules, stop, max_new,
                                             temperature, top_p, gen, draft)  # fmt: skip
    assert len(out) <= max_new
    assert cache.n == 10 + len(out) and out[-1] == stop  # the stop's K/V kept, rejected proposals dropped
    return out, forwards


def _table(seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(5, 5, generator=g) * 1.5
    table[:, 4] -= 1.0  # stop (id 4) less likely: sequences of a few tokens
    return table, torch.randn(1, 5, generator=g)


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_speculative_sampling_keeps_the_models_distribution(top_p):
    """Whatever the draft proposes (here: a fixed wrong-ish sequence and an n-gram of other
    sequences), the first two tokens are distributed as the model says: P(a) P(b | a)."""
    table, first = _table()
    temp = 0.9

    def dist(lg):
        return _top_p_filter(lg / temp, top_p).softmax(-1)

    p1 = dist(first)[0]
    exact = {(a, b): float(p1[a] * dist(table[a][None])[0][b]) for a in range(5) for b in range(5)}
    n = 3000
    accepted = 0
    for draft in (NgramDraft([[0, 0, 0, 0, 0, 4]] * 3), NgramDraft([[1, 2, 3, 4], [2, 2, 1, 4], [3, 0, 4]])):
        gen = torch.Generator().manual_seed(1)
        counts: dict = {}
        forwards = tokens = 0
        for _ in range(n):
            out, f = _speculate(table, first, draft, temp, top_p, gen)
            key = tuple(out[:2]) if out[0] != 4 else (4, None)
            counts[key] = counts.get(key, 0) + 1
            forwards, tokens = forwards + f, tokens + len(out)
        accepted += tokens - forwards
        for (a, b), p in exact.items():
            if a == 4:
                continue
            freq = counts.get((a, b), 0) / n
            assert abs(freq - p) <= 4.5 * np.sqrt(p * (1 - p) / n) + 2e-3, ((a, b), freq, p)
        p_stop = float(p1[4])
        assert abs(counts.get((4, None), 0) / n - p_stop) <= 4.5 * np.sqrt(p_stop * (1 - p_stop) / n) + 2e-3
    assert accepted > n // 4  # proposals were accepted (so the check is not just plain sampling)


def test_speculative_greedy_is_the_greedy_chain_with_any_draft():
    table, first = _table(3)
    chain, lg = [], first
    for _ in range(12):
        t = 4 if len(chain) == 11 else int(lg.argmax())
        chain.append(t)
        if t == 4:
            break
        lg = table[t][None]
    for draft in (NgramDraft(), NgramDraft([chain]), NgramDraft([[0, 1, 2, 3, 0, 1, 2, 3]])):
        out, forwards = _speculate(table, first, draft, 0.0, max_new=12)
        assert out == chain
    assert _speculate(table, first, NgramDraft(), 0.0)[1] == len(chain) == 12  # no proposals: a forward per token
    # knowing the chain: 1 + 8 tokens (max_draft), then 1 + 1 (room before the budget's forced stop), then the stop
    assert _speculate(table, first, NgramDraft([chain]), 0.0)[1] == 3


# ---- the real model ---------------------------------------------------------------------------------
def _plan(model, batch, draft, temperature=0.0, **kw):
    g = torch.Generator().manual_seed(5)
    return model.sample_trajectories(batch, generator=g, temperature=temperature, flow_steps=3, draft=draft, **kw)


def test_greedy_coc_and_its_cache_are_unchanged_by_any_draft(nano_model, nano_processor, sample_factory):
    batch = nano_processor(sample_factory(4, future=False))
    kw = dict(max_new_tokens=16, min_new_tokens=10)
    plain = _plan(nano_model, batch, None, **kw)
    ids = plain.coc_token_ids[0, 0].tolist()
    assert plain.decode_forwards == len(ids) == 16  # forced to the end by the budget
    right = NgramDraft([ids])  # knows the answer: everything accepted
    wrong = NgramDraft([[int(t) + 1 for t in ids]] * 2)  # proposes other tokens all the time
    for draft, most in ((right, 3), (wrong, 16)):
        out = _plan(nano_model, batch, draft, **kw)
        assert torch.equal(out.coc_token_ids, plain.coc_token_ids)
        assert out.decode_forwards <= most
        assert out.cache_len == plain.cache_len
        # the random-init expert amplifies the K/V's float noise (~1e-6, below) to ~5e-4 in its actions
        torch.testing.assert_close(out.xyz, plain.xyz, rtol=0.0, atol=2e-2)
    assert right.sequences_seen == 2  # each plan's CoC was added to its draft

    # the K/V the expert reads: tokens fed in blocks (and rejected ones cropped) = fed one at a time
    t0 = nano_model.cfg.traj_token_start_id
    banned = torch.arange(t0, t0 + nano_model.cfg.tokenizer.traj_vocab_size)
    caches = []
    for draft in (None, right, wrong):
        with torch.no_grad():
            logits, cache, next_pos, mask, _ = nano_model._prefill(batch)
            nano_model._decode(logits, cache, next_pos, mask, nano_model.model.tfs_id, 16, 0.0, 1.0, None,
                               min_new_tokens=10, banned=banned, draft=draft)  # fmt: skip
        caches.append(cache)
    for other in caches[1:]:
        for a, b in zip(caches[0].layers, other.layers):
            torch.testing.assert_close(b.keys, a.keys, rtol=0.0, atol=1e-5)
            torch.testing.assert_close(b.values, a.values, rtol=0.0, atol=1e-5)


def test_draft_is_only_used_for_one_row_and_learns_every_row(nano_model, nano_processor, sample_factory):
    batch = nano_processor(sample_factory(5, future=False))
    draft = NgramDraft()
    out = _plan(nano_model, batch, draft, temperature=0.6, num_samples=3, max_new_tokens=8)
    assert out.decode_forwards == out.coc_token_ids.shape[-1]  # batched plain decode
    assert draft.sequences_seen == 3


def test_policy_draft_starts_empty_every_rollout(nano_model):
    from cordillera.model.policy import VLAPolicy

    from test_model_policy import feed

    pol = VLAPolicy(nano_model, num_samples=1, threads=1, max_new_tokens=8)
    assert pol.speculative
    a = feed(pol, 500_000, seed=3)
    learnt = pol._draft.sequences_seen
    b = feed(pol, 500_000, seed=3)  # the same rollout again: the same plans despite what the draft had learnt
    assert learnt > 0 and pol._draft.sequences_seen == learnt
    for pa, pb in zip(a[3:], b[3:]):
        assert pa.coc == pb.coc
        np.testing.assert_array_equal(pa.xyz_rig, pb.xyz_rig)
    assert VLAPolicy(nano_model, speculative=False, threads=1)._draft is None
