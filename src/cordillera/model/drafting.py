"""Draft tokens for speculative CoC decoding: an n-gram table of the reasoning the model writes.

CoC text is templated ("The lead vehicle is close ahead, so keep a safe distance, keep lane."),
so the next few tokens are usually predictable from the last few. `NgramDraft` proposes them from
the token sequences it has seen (the model's own earlier CoCs, added after each plan, and any
corpus given at the start); `CordilleraVLA.sample_trajectories(draft=...)` feeds the proposal
through the backbone in one forward and keeps the prefix the model itself would have sampled
(speculative sampling with a deterministic draft: the model's distribution is unchanged, only
the number of forwards drops — a decode step at batch 1 is memory-bound, so checking 8 tokens
costs little more than sampling 1).

Proposals follow the longest context seen (up to `order` tokens, backing off to shorter ones),
taking its most frequent continuation. The table's size is capped (`max_contexts`): beyond it new
contexts are not learnt, so a long-running policy cannot grow it without bound.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["NgramDraft"]

_START = -1  # context marker for the first token of a sequence (never a token id)


class NgramDraft:
    def __init__(self, sequences: Iterable[Sequence[int]] = (), order: int = 4, max_draft: int = 8,
                 max_contexts: int = 200_000):  # fmt: skip
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if max_draft < 1:
            raise ValueError(f"max_draft must be >= 1, got {max_draft}")
        self.order, self.max_draft, self.max_contexts = int(order), int(max_draft), int(max_contexts)
        self._next: dict[tuple[int, ...], Counter] = {}
        self._best: dict[tuple[int, ...], int] = {}  # most frequent continuation, kept current on add
        self.sequences_seen = 0
        for s in sequences:
            self.add(s)

    def __len__(self) -> int:
        return len(self._next)

    def add(self, tokens: Sequence[int]) -> None:
        """Learn one sequence (the CoC's token ids, ending with the tokens that close it)."""
        seq = [_START, *(int(t) for t in tokens)]
        for i in range(1, len(seq)):
            for n in range(1, min(self.order, i) + 1):
                ctx = tuple(seq[i - n:i])
                counts = self._next.get(ctx)
                if counts is None:
                    if len(self._next) >= self.max_contexts:
                        continue
                    counts = self._next[ctx] = Counter()
                counts[seq[i]] += 1
                best = self._best.get(ctx)
                if best is None or counts[seq[i]] > counts[best]:
                    self._best[ctx] = seq[i]
        self.sequences_seen += 1

    def propose(self, context: Sequence[int], k: int | None = None) -> list[int]:
        """Up to `k` (default `max_draft`) tokens that most often followed `context` (the tokens
        generated so far, from the sequence's start); [] when no context of it was seen."""
        k = self.max_draft if k is None else int(k)
        ctx = [_START, *(int(t) for t in context)]
        out: list[int] = []
        while len(out) < k:
            nxt = None
            for n in range(min(self.order, len(ctx)), 0, -1):
                nxt = self._best.get(tuple(ctx[-n:]))
                if nxt is not None:
                    break
            if nxt is None:
                break
            out.append(nxt)
            ctx.append(nxt)
        return out
