"""How fast a nano planning step could be on this CPU: each stage's matmul FLOPs against its time.

`model_latency.py` measures the stages; this asks how far each is from the machine. For the issue's
step (nano random init, 4 cameras × 4 frames, 16 history poses, CoC forced to 40 tokens, 10 Euler
steps of the expert, K = 1) it counts the matrix FLOPs of every stage with
`torch.utils.flop_counter.FlopCounterMode` (matmuls, linear layers, attention; elementwise work
is not counted), times the stages (p50 of `--runs`, interleaved), and measures this machine's
fp32 GEMM rate on the step's own shapes and on a large square product, all in the same run. A
stage's floor is its FLOPs at the large-GEMM rate: no implementation of the same shapes runs
faster on these threads. The floors of the fast path (vision + prefill + expert) and the full
step against the issue's ≤ 40 / ≤ 100 ms targets say whether a target is reachable at all.

Decoding is the exception: one token is ~10 MFLOP in ~40 small products, so it is bound by the
per-call cost and by reading the weights, not by FLOPs; its row also gives the weight bytes read
per token.

    PYTHONPATH=src .venv/bin/python benchmarks/model_flops.py [--runs 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from model_latency import COT_TOKENS, FLOW_STEPS, make_inputs, timed_step  # noqa: E402

from cordillera.model.configuration import PRESETS  # noqa: E402
from cordillera.model.inference import Planner  # noqa: E402

TARGETS_MS = {"fast": 40.0, "full": 100.0}  # the p50 targets at K = 1


def flops_of(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def gemm_gflops(m: int, k: int, n: int, seconds: float = 0.5) -> float:
    """Best fp32 rate of (m×k)@(k×n) over repeated calls for about `seconds`."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        tic = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - tic)
    return 2.0 * m * k * n / best / 1e9


def stage_flops(planner: Planner, batch) -> dict[str, float]:
    """Matrix FLOPs of vision, prefill, one expert Euler step and the 40-token decode (by differences
    of whole `sample_trajectories` calls, so nothing outside them is counted)."""
    m = planner.model
    m.requires_grad_(False)  # FlopCounterMode's module tracker hooks tensors that require grad

    def plan(fast: bool, steps: int):
        g = torch.Generator().manual_seed(0)
        return lambda: m.sample_trajectories(batch, num_samples=1, fast=fast, flow_steps=steps, generator=g,
                                             max_new_tokens=COT_TOKENS, min_new_tokens=COT_TOKENS)  # fmt: skip

    with torch.no_grad():
        vision = flops_of(lambda: m.model.image_features(batch["pixel_values"], batch["image_grid_thw"]))
        fast1, fast10 = flops_of(plan(True, 1)), flops_of(plan(True, FLOW_STEPS))
        full1 = flops_of(plan(False, 1))
    step = (fast10 - fast1) / (FLOW_STEPS - 1)
    return {"vision": vision, "prefill": fast1 - vision - step, "decode": full1 - fast1,
            "expert": FLOW_STEPS * step}  # fmt: skip


def decode_weight_bytes(planner: Planner) -> int:
    """Bytes of the weights one decoded token reads: the text decoder's layers and the lm_head."""
    lm = planner.model.model.vlm
    layers = sum(p.numel() * p.element_size() for p in lm.model.language_model.layers.parameters())
    return layers + lm.lm_head.weight.numel() * lm.lm_head.weight.element_size()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    planner = Planner.random_init(PRESETS["nano"], seed=0)
    inputs = make_inputs(planner.model.cfg)
    batch = planner.processor(inputs)
    gflop = {k: v / 1e9 for k, v in stage_flops(planner, batch).items()}

    cfg = planner.model.cfg
    D, F, De, Fe = cfg.text.hidden_size, cfg.text.intermediate_size, cfg.expert.hidden_size, cfg.expert.intermediate_size
    n_prompt = int(batch["input_ids"].shape[1])
    rates = {  # [GFLOP/s] this machine, these threads, fp32
        "large 2048³": gemm_gflops(2048, 2048, 2048),
        f"prefill MLP ({n_prompt}×{D})@({D}×{F})": gemm_gflops(n_prompt, D, F),
        f"expert MLP (64×{De})@({De}×{Fe})": gemm_gflops(64, De, Fe),
        f"decode MLP (1×{D})@({D}×{F})": gemm_gflops(1, D, F),
    }
    peak = rates["large 2048³"]

    gen = torch.Generator().manual_seed(0)
    cases = {"fast": dict(fast=True), "full": dict(fast=False)}
    runs: dict[str, list[dict]] = {k: [] for k in cases}
    with torch.inference_mode():
        for i in range(a.runs + 1):  # round 0 warms up
            for name, kw in cases.items():
                r = timed_step(planner, inputs, gen, num_samples=1, **kw)
                if i:
                    runs[name].append(r)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    ms = {"vision": med["full"]["vision_ms"], "prefill": med["full"]["prefill_ms"],
          "decode": med["full"]["decode_ms"], "expert": med["full"]["expert_ms"]}  # fmt: skip

    print(f"nano random init, {n_prompt}-token prompt, CoC {COT_TOKENS} tokens, {FLOW_STEPS} flow steps, K = 1, "
          f"{a.threads} threads; load average {os.getloadavg()[0]:.2f}")
    print()
    print("| GEMM (fp32) | GFLOP/s |")
    print("|---|---:|")
    for k, v in rates.items():
        print(f"| {k} | {v:.1f} |")
    print()
    print("| stage | GFLOP | measured p50 ms | achieved GFLOP/s | floor ms at the large-GEMM rate | measured / floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in ("vision", "prefill", "decode", "expert"):
        floor = gflop[k] / peak * 1e3
        print(f"| {k} | {gflop[k]:.3f} | {ms[k]:.1f} | {gflop[k] / ms[k] * 1e3:.1f} | {floor:.1f} | "
              f"{ms[k] / floor:.1f}× |")  # fmt: skip
    for name, parts in (("fast", ("vision", "prefill", "expert")), ("full", ("vision", "prefill", "decode", "expert"))):
        g = sum(gflop[k] for k in parts)
        floor = g / peak * 1e3
        print(f"| **{name} step** (target ≤ {TARGETS_MS[name]:.0f} ms) | {g:.3f} | {med[name]['total_ms']:.1f} | "
              f"{g / med[name]['total_ms'] * 1e3:.1f} | **{floor:.1f}** | {med[name]['total_ms'] / floor:.1f}× |")
    wb = decode_weight_bytes(planner)
    per_tok = ms["decode"] / COT_TOKENS
    print()
    print(f"decode: {per_tok:.2f} ms per token reading {wb / 1e6:.1f} MB of weights "
          f"({wb / per_tok / 1e6:.1f} GB/s); {gflop['decode'] / COT_TOKENS * 1e3:.1f} MFLOP per token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
