"""Training throughput of the nano preset on the CPU (fp32, forward + backward + AdamW step).

Rows, each against a baseline measured in the same run:
  stage 1 fp32            vs  stage 1 under bf16 autocast (environment.md §2: 2.7x slower on CPUs
                              without BF16/AMX — the reason the loop stays in fp32)
  stage 1 fp32            vs  stage 1 with Qwen3-VL's own Conv3d patch embedding (what
                              `modeling.LinearPatchEmbed` replaces: the same map as a matmul)
  stage 2 (frozen VLM)    vs  stage 2 with the backbone prefix run under autograd (what co-training /
                              `joint` pays: the prefix keeps its graph, the expert reads it)
  stage 2, stored prefix  vs  stage 2 computing the prefix (`train.prefix_store`: a sample's frozen-
                              backbone K/V read from disk after its first visit; the read is timed)

Samples are synthetic (random images, 4 cameras × 4 frames at 96×160, a 20-word CoC), built
with the real processor, so sequence lengths match training (~470 tokens).

    PYTHONPATH=src .venv/bin/python benchmarks/train_speed.py [--threads 2] [--batch 8] [--steps 4]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

import torch

COC = ("Stop before the stop line since the traffic light ahead is red and a pedestrian is crossing "
       "the road in front of the ego vehicle.")  # fmt: skip


def make_samples(n: int, cfg, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.inputs.image_height, cfg.inputs.image_width
    th = (torch.arange(16, dtype=torch.float32) - 15) * 0.1
    tf = torch.arange(1, 65, dtype=torch.float32) * 0.1
    out = []
    for i in range(n):
        v = 5.0 + i % 5
        out.append(dict(
            image_frames=torch.randint(0, 256, (4, 4, 3, h, w), dtype=torch.uint8, generator=g),
            camera_indices=[0, 1, 2, 6],
            ego_history_xyz=torch.stack([th * v, torch.zeros(16), torch.zeros(16)], -1),
            ego_history_rot=torch.eye(3).expand(16, 3, 3).clone(),
            ego_future_xyz=torch.stack([tf * v, torch.zeros(64), torch.zeros(64)], -1),
            ego_future_rot=torch.eye(3).expand(64, 3, 3).clone(),
            cot=COC,
        ))  # fmt: skip
    return out


def time_pair(step_a, step_b, steps: int) -> tuple[float, float]:
    """Best-of-`steps` seconds per step of A and of its baseline B, run alternately (A, B, A, B …)
    so that load from other processes on a shared machine hits both alike."""
    step_a(), step_b()  # warm-up
    ta, tb = [], []
    for _ in range(steps):
        for step, out in ((step_a, ta), (step_b, tb)):
            tic = time.perf_counter()
            step()
            out.append(time.perf_counter() - tic)
    return min(ta), min(tb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed

    from cordillera.model.configuration import get_preset
    from cordillera.model.modeling import STAGE2_PREFIX, CordilleraVLA, prompt_tensors
    from cordillera.model.processor import VLAProcessor
    from cordillera.model.tokenizer import load_tokenizer
    from cordillera.train import stage2

    cfg = get_preset("nano")
    proc = VLAProcessor(cfg, load_tokenizer(cfg))
    batch = proc(make_samples(a.batch, cfg))
    L = batch["input_ids"].shape[1]
    torch.manual_seed(0)
    vla = CordilleraVLA(cfg)
    n_params = sum(p.numel() for p in vla.parameters())
    gen = torch.Generator().manual_seed(0)

    def trainer(params_filter, loss_fn, autocast=False):
        flags = {n: params_filter(n) for n, _ in vla.model.named_parameters()}
        params = [(n, p) for n, p in vla.model.named_parameters() if flags[n]]
        opt = torch.optim.AdamW([p for _, p in params], lr=1e-4)

        def step():
            for n, p in vla.model.named_parameters():
                p.requires_grad_(flags[n])
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
            with ctx:
                loss, _ = loss_fn(vla, batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in vla.parameters() if p.requires_grad], 1.0)
            opt.step()

        return step

    def s1(m, b, g):
        return m(b, stage="stage1")

    def s2_expert_full_prefix(m, b, g):
        # baseline: an expert that does not share the backbone's KV cache but re-runs the whole
        # prefix through its own layers (prefix hidden states + 64 action tokens, one pass).
        from cordillera.model import flow_matching as fm

        model = m.model
        ids, am = b["input_ids"], b["attention_mask"]
        B = ids.shape[0]
        with torch.no_grad():
            pos = model.rope_positions(ids, b["mm_token_type_ids"], b["image_grid_thw"], am)
            feats = model.image_features(b["pixel_values"], b["image_grid_thw"])
            h, _ = model.backbone(ids, am, pos, feats, b["mm_token_type_ids"])  # (B, L, D)
        x1 = b["actions"].float()
        noise = fm.sample_noise(tuple(x1.shape), g)
        t = fm.sample_t((B,), g)
        a = model.action_in_proj(fm.interpolate(x1, noise, t.view(B, 1, 1)), t)  # (B, T, D)
        x = torch.cat([h.detach(), a], dim=1)  # (B, L+T, D)
        p = torch.cat([pos, pos.amax(dim=2, keepdim=True) + 1 + torch.arange(model.T).expand(3, B, -1)], dim=2)
        out = model.expert(inputs_embeds=x, position_ids=p).last_hidden_state[:, -model.T:]
        v = model.action_out_proj(out).float()
        return ((v - fm.target_velocity(x1, noise)) ** 2).mean(), {}

    vlm_only = lambda n: n.startswith("vlm.")  # noqa: E731
    expert_only = lambda n: not n.startswith("vlm.")  # noqa: E731
    rows = []
    s1_step = trainer(vlm_only, s1)
    t_s1, t_s1_bf16 = time_pair(s1_step, trainer(vlm_only, s1, autocast=True), a.steps)
    rows.append(("stage 1 (CE, fp32)", t_s1, "stage 1 under bf16 autocast", t_s1_bf16))
    visual = vla.model.vlm.model.visual
    linear_embed = visual.patch_embed
    conv_embed = Qwen3VLVisionPatchEmbed(vla.model.vlm.config.vision_config)
    conv_embed.proj = linear_embed.proj  # the same parameter, through the Conv3d forward

    def with_embed(embed, step):
        def run():
            visual.patch_embed = embed
            try:
                step()
            finally:
                visual.patch_embed = linear_embed
        return run

    t_lin, t_conv = time_pair(with_embed(linear_embed, s1_step), with_embed(conv_embed, s1_step), a.steps)
    rows.append(("stage 1 (CE, fp32)", t_lin, "stage 1, Conv3d patch embedding", t_conv))
    t_s2, t_s2_naive = time_pair(trainer(expert_only, stage2.loss_fn), trainer(expert_only, s2_expert_full_prefix),
                                 a.steps)  # fmt: skip
    rows.append(("stage 2 (FM, frozen VLM, detached cache)", t_s2, "expert re-running the full prefix (no KV sharing)", t_s2_naive))

    with tempfile.TemporaryDirectory() as tmp:
        from cordillera.train.prefix_store import PrefixStore

        store = PrefixStore(tmp, vla.model.T)
        keys = [f"bench:{i}" for i in range(a.batch)]
        store.save(keys, vla.model.stage2_prefix(*prompt_tensors(batch)), batch["actions"])

        def s2_stored(m, b, g):
            prefix, actions = store.load(keys)
            return stage2.loss_fn(m, {"actions": actions, STAGE2_PREFIX: prefix}, g)

        t_st, t_s2b = time_pair(trainer(expert_only, s2_stored), trainer(expert_only, stage2.loss_fn), a.steps)
        size_mb = store.size_bytes() / a.batch / 2**20
    rows.append((f"stage 2, stored prefix ({size_mb:.1f} MB/sample)", t_st, "stage 2 computing the prefix", t_s2b))

    print(f"nano preset: {n_params / 1e6:.1f}M parameters, batch {a.batch}, sequence {L} tokens, "
          f"{a.threads} threads, fp32")  # fmt: skip
    print(f"| step | s/step | samples/s | baseline | baseline samples/s | speed-up |")
    print("|---|---:|---:|---|---:|---:|")
    for name, t, bname, tb in rows:
        print(f"| {name} | {t:.2f} | {a.batch / t:.1f} | {bname} | {a.batch / tb:.1f} | {tb / t:.2f}x |")


if __name__ == "__main__":
    main()
