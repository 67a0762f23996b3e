"""VLA planning latency on CPU: nano random init, 4 cameras × 4 frames, 16 history poses.

Measures (2 threads) one planning step = processor + vision + prefill + CoC decode (forced to
exactly 40 tokens) + 10 Euler steps of the expert + unicycle integration, for K = 1 and K = 6
samples and for the fast path (no CoC), p50/p90 over `--runs` runs after one warm-up. All cases
run interleaved (one run of each case per round) so that load changes hit them alike.

- "cold" rows: one plan call on fresh inputs, every image encoded (the issue's plain step).
- "prev" rows: the same call with `optimized=False`, the previous implementation (one full HF
  model call per CoC token; the expert appending to and cropping the cache every flow step).
- "closed-loop" rows: a steady-state `VLAPolicy`-style step, where the vision features of the 3
  older frames per camera come from the per-frame cache, so only 4 of 16 images are encoded.
- "bf16" rows: the same cold step with the weights cast to bfloat16
  (`CordilleraVLA.to_inference_dtype`, AMX/AVX512-BF16 matmuls; logits, flow state and outputs
  stay fp32), interleaved with their fp32 twins; the summary prints bf16/fp32 per case.
  `--bf16-only` runs just the 3 fp32/bf16 pairs and skips naive (short runs on a loaded machine).
- naive rows: HF `generate` once per sample (the prefix re-encoded for each), then for every
  flow step the backbone re-runs the full prefix + CoC to rebuild the cache before the expert.

- `--checkpoint DIR` (a trained model, e.g. checkpoints/nano): its weights instead of the random
  init, plus two rows where the CoC ends where the model ends it (≤ 40 tokens), plain and drafted
  (`draft=NgramDraft()` kept across rounds: speculative decoding from the model's earlier CoCs;
  a random-init model writes nothing a draft could predict). The inputs are the same every round,
  so the draft has seen this scene's CoCs: an upper end; `coc_speculative.py` drafts across scenes.

Targets: full step ≤ 100 ms p50 at K = 1, fast ≤ 40 ms, K = 6 ≤ 2.5 × K = 1, peak RSS ≤ 1.5 GB.
`cpu` is the process CPU time of the step (both threads), less sensitive to other jobs than wall.

    .venv/bin/python benchmarks/model_latency.py [--runs 10] [--naive-runs 3] [--bf16-only] [--write]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from cordillera.model import flow_matching as fm
from cordillera.model.configuration import PRESETS
from cordillera.model.drafting import NgramDraft
from cordillera.model.inference import Planner

COT_TOKENS = 40
FLOW_STEPS = 10


def make_inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.inputs.image_height, cfg.inputs.image_width
    t = (torch.arange(16, dtype=torch.float32) - 15) * 0.1
    return dict(
        image_frames=torch.randint(0, 256, (4, 4, 3, h, w), dtype=torch.uint8, generator=g),
        camera_indices=[0, 1, 2, 6],
        ego_history_xyz=torch.stack([t * 8.0, torch.zeros(16), torch.zeros(16)], -1),
        ego_history_rot=torch.eye(3).expand(16, 3, 3).clone(),
    )


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


@torch.no_grad()
def naive_step(planner: Planner, batch, K: int, gen: torch.Generator) -> dict[str, float]:
    """HF generate per sample + expert re-running the whole prefix every flow step."""
    from transformers import DynamicCache

    from cordillera.action.unicycle import action_to_traj

    model = planner.model
    m = model.model
    ids = model.ids
    t_all = time.perf_counter()
    seqs = []
    t0 = model.cfg.traj_token_start_id
    banned = [[i] for i in range(t0, t0 + model.cfg.tokenizer.traj_vocab_size)]
    for _ in range(K):
        out = m.vlm.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
            mm_token_type_ids=batch["mm_token_type_ids"], max_new_tokens=COT_TOKENS - 1,
            min_new_tokens=COT_TOKENS - 1, do_sample=True, temperature=0.6, top_p=0.98,
            bad_words_ids=banned, eos_token_id=None, pad_token_id=ids["<|endoftext|>"],
        )  # fmt: skip
        seqs.append(torch.cat([out, torch.tensor([[ids["<|traj_future_start|>"]]])], dim=1))
    decode_ms = (time.perf_counter() - t_all) * 1e3
    tic = time.perf_counter()
    T = model.cfg.inputs.future_steps
    acts = []
    for seq in seqs:
        am = torch.ones_like(seq)
        mm = (seq == ids["<|image_pad|>"]).int()
        pos = m.rope_positions(seq, mm, batch["image_grid_thw"], am)
        x = fm.sample_noise((1, T, 2), gen)
        for k in range(FLOW_STEPS):
            cache = DynamicCache(config=m.vlm.config.text_config)
            feats = m.image_features(batch["pixel_values"], batch["image_grid_thw"])
            m.backbone(seq, am, pos, feats, mm, past_key_values=cache)  # full prefix again
            p = pos[0, :, -1:] + 1 + torch.arange(T)
            v = m.expert_velocity(x, torch.tensor(k / FLOW_STEPS), cache, p, m.expert_mask(am.bool()))
            x = x + v / FLOW_STEPS
        acts.append(x)
    a = torch.cat(acts)
    action_to_traj(a, batch["ego_history_xyz"].expand(K, 16, 3), batch["ego_history_rot"].expand(K, 16, 3, 3),
                   model.action_cfg)  # fmt: skip
    expert_ms = (time.perf_counter() - tic) * 1e3
    return {"decode_ms": decode_ms, "expert_ms": expert_ms, "total_ms": decode_ms + expert_ms}


def timed_step(planner: Planner, inputs, gen, num_samples=1, fast=False, optimized=True, image_keys=None,
               image_store=None, model=None, draft=None, natural=False) -> dict[str, float]:  # fmt: skip
    """One planning step (processor + sample_trajectories) with its stage timings and CPU time.
    `natural`: the CoC ends where the model ends it (≤ 40 tokens) instead of exactly 40."""
    cpu, tic = time.process_time(), time.perf_counter()
    batch = planner.processor(inputs)
    pre_ms = (time.perf_counter() - tic) * 1e3
    out = (model or planner.model).sample_trajectories(
        batch, num_samples=num_samples, fast=fast, flow_steps=FLOW_STEPS, max_new_tokens=COT_TOKENS,
        min_new_tokens=0 if natural else COT_TOKENS, generator=gen, optimized=optimized, image_keys=image_keys,
        image_store=image_store, draft=draft)  # fmt: skip
    return {"processor_ms": pre_ms, **out.timings_ms, "total_ms": (time.perf_counter() - tic) * 1e3,
            "cpu_ms": (time.process_time() - cpu) * 1e3}  # fmt: skip


class ClosedLoopFrames:
    """Image keys of a steady-state closed loop: each step the window of 4 frames per camera
    slides by one, so 3 of 4 keys per camera were seen (and cached) at the previous step."""

    def __init__(self, n_cams: int = 4, n_frames: int = 4):
        self.n_cams, self.n_frames, self.step = n_cams, n_frames, 0
        self.store: dict = {}

    def next_keys(self) -> list[tuple[int, int]]:
        self.step += 1
        keys = [(c, self.step + f) for c in range(self.n_cams) for f in range(self.n_frames)]
        self.store = {k: v for k, v in self.store.items() if k in keys}  # VLAPolicy keeps only live frames
        return keys


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--naive-runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16-only", action="store_true", help="only the fp32/bf16 pairs, no naive rows")
    ap.add_argument("--write", action="store_true", help="update the model_latency section of RESULTS.md")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="a trained checkpoint instead of the random init; adds natural-length CoC rows, plain and "
                         "drafted (speculative decoding, the draft learning across rounds)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = PRESETS["nano"]
    planner = Planner.random_init(cfg, seed=0) if a.checkpoint is None else Planner.from_pretrained(a.checkpoint)
    cfg = planner.model.cfg
    inputs = make_inputs(cfg)
    batch = planner.processor(inputs)
    n_params = sum(p.numel() for p in planner.model.parameters())
    gen = torch.Generator().manual_seed(0)
    model_bf16 = copy.deepcopy(planner.model).to_inference_dtype(torch.bfloat16)
    pairs = {"full K=1": dict(num_samples=1), "fast K=1": dict(num_samples=1, fast=True),
             "full K=6": dict(num_samples=6)}  # fmt: skip
    bf16_cases = {f"{n} bf16": dict(kw, model=model_bf16) for n, kw in pairs.items()}

    cases = {
        "full K=1 (cold)": dict(num_samples=1), "full K=1 prev": dict(num_samples=1, optimized=False),
        "full K=1 closed-loop": dict(num_samples=1, loop=True),
        "fast K=1 (cold)": dict(num_samples=1, fast=True), "fast K=1 prev": dict(num_samples=1, fast=True, optimized=False),
        "fast K=1 closed-loop": dict(num_samples=1, fast=True, loop=True),
        "full K=6 (cold)": dict(num_samples=6), "full K=6 prev": dict(num_samples=6, optimized=False),
        "fast K=6 (cold)": dict(num_samples=6, fast=True), **bf16_cases,
    }  # fmt: skip
    if a.checkpoint is not None:  # a trained model writes its own CoC, which a draft can predict
        cases["full K=1 natural"] = dict(num_samples=1, natural=True)
        cases["full K=1 natural drafted"] = dict(num_samples=1, natural=True, draft=NgramDraft())
    if a.bf16_only:
        cases = {k: v for n, kw in pairs.items() for k, v in ((f"{n} (cold)", kw), (f"{n} bf16", bf16_cases[f"{n} bf16"]))}
        a.naive_runs = 0
    loops = {name: ClosedLoopFrames() for name, kw in cases.items() if kw.get("loop")}
    rows: dict[str, list[dict]] = {name: [] for name in cases}
    with torch.inference_mode():
        for i in range(a.runs + 1):  # round 0 = warm-up (and fills the closed-loop caches)
            for name, kw in cases.items():
                kw = dict(kw)
                extra = {}
                if kw.pop("loop", False):
                    keys = loops[name].next_keys()
                    extra = dict(image_keys=keys, image_store=loops[name].store)
                r = timed_step(planner, inputs, gen, **kw, **extra)
                if i:
                    rows[name].append(r)
        naive = {}
        for K in (1, 6) if a.naive_runs > 0 else ():
            runs = [naive_step(planner, batch, K, gen) for _ in range(a.naive_runs if K == 1 else 1)]  # K=6 naive ~5 s idle
            naive[f"naive K={K}"] = runs
    load = os.getloadavg()  # other jobs on the machine skew every number; print it
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    stages = ["processor_ms", "vision_ms", "prefill_ms", "decode_ms", "expert_ms", "total_ms"]
    lines = [f"| case | {' | '.join(s[:-3] + ' p50' for s in stages)} | total p90 | cpu p50 |",
             "|---|" + "---:|" * (len(stages) + 2)]  # fmt: skip
    for name, runs in rows.items():
        cells = [f"{statistics.median(r[s] for r in runs):.1f}" for s in stages]
        lines.append(f"| {name} | {' | '.join(cells)} | {pct([r['total_ms'] for r in runs], 0.9):.1f} | "
                     f"{statistics.median(r['cpu_ms'] for r in runs):.1f} |")  # fmt: skip
    for name, runs in naive.items():
        cells = ["–", "–", "–"] + [f"{statistics.median(r[s] for r in runs):.1f}" for s in stages[3:]]
        lines.append(f"| {name} | {' | '.join(cells)} | {pct([r['total_ms'] for r in runs], 0.9):.1f} | – |")
    p50 = {n: statistics.median(r["total_ms"] for r in runs) for n, runs in {**rows, **naive}.items()}
    full, fast = p50["full K=1 (cold)"], p50["fast K=1 (cold)"]
    cpu50 = {n: statistics.median(r["cpu_ms"] for r in runs) for n, runs in rows.items()}
    bf16_line = (
        f"- bf16 (same run, interleaved): full K=1 **{p50['full K=1 bf16']:.0f} ms**, fast K=1 "
        f"**{p50['fast K=1 bf16']:.0f} ms**, full K=6 **{p50['full K=6 bf16']:.0f} ms**; bf16/fp32 wall "
        + ", ".join(f"{n} **{p50[n + ' bf16'] / p50[n + ' (cold)']:.2f}×**" for n in pairs)
        + "; cpu " + ", ".join(f"{n} {cpu50[n + ' bf16'] / cpu50[n + ' (cold)']:.2f}×" for n in pairs))
    summary = [
        f"- cold full K=1 p50 **{full:.0f} ms** (target ≤ 100), cold fast K=1 **{fast:.0f} ms** (target ≤ 40)",
        bf16_line,
        f"- K=6 / K=1 = **{p50['full K=6 (cold)'] / full:.2f}×** (target ≤ 2.5×)",
        f"- peak RSS **{rss_gb:.2f} GB** (target ≤ 1.5 GB, both models loaded); load average (1/5/15 min) at the end "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} on {os.cpu_count()} CPUs",
    ] if a.bf16_only else [
        bf16_line,
        f"- cold full K=1 p50 **{full:.0f} ms** (target ≤ 100), cold fast K=1 **{fast:.0f} ms** (target ≤ 40); "
        f"closed-loop steady state: full **{p50['full K=1 closed-loop']:.0f} ms**, fast **{p50['fast K=1 closed-loop']:.0f} ms**",
        f"- vs previous implementation (same run): full K=1 **{p50['full K=1 prev'] / full:.2f}×**, fast K=1 "
        f"**{p50['fast K=1 prev'] / fast:.2f}×**, full K=6 **{p50['full K=6 prev'] / p50['full K=6 (cold)']:.2f}×**",
        f"- K=6 / K=1 = **{p50['full K=6 (cold)'] / full:.2f}×** (target ≤ 2.5×)",
        f"- vs naive: K=1 **{p50['naive K=1'] / full:.1f}×** faster, K=6 **{p50['naive K=6'] / p50['full K=6 (cold)']:.1f}×** faster",
        f"- peak RSS **{rss_gb:.2f} GB** (target ≤ 1.5 GB); load average (1/5/15 min) at the end "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} on {os.cpu_count()} CPUs",
    ]
    if a.checkpoint is not None:
        nat, drafted = p50["full K=1 natural"], p50["full K=1 natural drafted"]
        dec = {n: statistics.median(r["decode_ms"] for r in rows[n]) for n in ("full K=1 natural", "full K=1 natural drafted")}
        summary.append(f"- natural-length CoC (≤ {COT_TOKENS} tokens): full K=1 plain **{nat:.0f} ms**, drafted "
                       f"**{drafted:.0f} ms** (decode {dec['full K=1 natural']:.0f} → {dec['full K=1 natural drafted']:.0f} ms, "
                       f"**{dec['full K=1 natural'] / dec['full K=1 natural drafted']:.2f}×**); K=6 (forced {COT_TOKENS}, "
                       f"batched) / drafted K=1 = {p50['full K=6 (cold)'] / drafted:.2f}×")
    cmd = ".venv/bin/python benchmarks/model_latency.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    naive_note = "no naive rows" if a.naive_runs <= 0 else f"naive: {a.naive_runs} at K=1, 1 at K=6"
    head = (f"Command: `{cmd}` ({platform.machine()}, torch {torch.__version__}, "
            f"{a.threads} threads). Nano {'random init' if a.checkpoint is None else a.checkpoint} "
            f"({n_params / 1e6:.1f}M params), 4 cameras × 4 frames "
            f"({batch['input_ids'].shape[1]}-token prompt), 16 history poses, CoC forced to {COT_TOKENS} tokens, "
            f"{FLOW_STEPS} flow steps; p50 of {a.runs} interleaved runs ({naive_note}). Times in ms.")  # fmt: skip
    paragraph = "\n".join([f"**{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC run.** " + head, "", *lines, "",
                           *summary, ""])  # fmt: skip
    print(paragraph)
    if a.write:  # new paragraph at the top of the section; older numbers stay below it
        path = Path(__file__).parent / "RESULTS.md"
        text = path.read_text() if path.exists() else "# Benchmark results\n\n"
        start = text.find("## model_latency")
        if start >= 0:
            at = start + len("## model_latency\n\n")
            text = text[:at] + paragraph + "\n" + text[at:]
        else:
            text = text.rstrip() + "\n\n## model_latency\n\n" + paragraph
        path.write_text(text)


if __name__ == "__main__":
    main()
