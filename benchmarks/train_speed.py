"""Training throughput of the nano preset on the CPU (fp32, forward + backward + AdamW step).

Rows, each against a baseline measured in the same run:
  stage 1 fp32            vs  stage 1 under bf16 autocast (environment.md §2: 2.7x slower on CPUs
                              without BF16/AMX — the reason the loop stays in fp32)
  stage 2 (frozen VLM)    vs  stage 2 with the backbone prefix run under autograd (what co-training /
                              `joint` pays: the prefix keeps its graph, the expert reads it)
  joint (CE + FM)         (for reference)

Samples are synthetic (random images, 4 cameras × 4 frames at 96×160, a 20-word CoC), built
with the real processor, so sequence lengths match training (~470 tokens).

    PYTHONPATH=src .venv/bin/python benchmarks/train_speed.py [--threads 2] [--batch 8] [--steps 4]
"""

from __future__ import annotations

import argparse
import contextlib
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


def time_steps(step, steps: int) -> float:
    step()  # warm-up
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - tic) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from cordillera.model.configuration import get_preset
    from cordillera.model.modeling import CordilleraVLA
    from cordillera.model.processor import VLAProcessor
    from cordillera.model.tokenizer import load_tokenizer
    from cordillera.train import loop, stage2
    from cordillera.train.config import OptimSettings

    cfg = get_preset("nano")
    proc = VLAProcessor(cfg, load_tokenizer(cfg))
    batch = proc(make_samples(a.batch, cfg))
    L = batch["input_ids"].shape[1]
    torch.manual_seed(0)
    vla = CordilleraVLA(cfg)
    n_params = sum(p.numel() for p in vla.parameters())
    gen = torch.Generator().manual_seed(0)

    def trainer(params_filter, loss_fn, autocast=False):
        for n, p in vla.model.named_parameters():
            p.requires_grad_(params_filter(n))
        opt = loop.make_optimizer(vla.model.named_parameters(), OptimSettings(lr=1e-4, min_lr=1e-5, warmup_steps=0),
                                  verbose=False)  # fmt: skip

        def step():
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

    def s2_autograd_prefix(m, b, g):
        # baseline: the same FM loss, but the backbone prefix is built with autograd on (its
        # graph is kept although no gradient may flow into it) — the cost of co-training.
        model = m.model
        with torch.enable_grad():
            from transformers import DynamicCache

            from cordillera.model import flow_matching as fm

            ids, am = b["input_ids"], b["attention_mask"]
            B = ids.shape[0]
            is_tfs = ids == model.tfs_id
            last = ids.shape[1] - 1 - is_tfs.flip(1).int().argmax(dim=1)
            cut = int(last.max()) + 1
            pos = model.rope_positions(ids, b["mm_token_type_ids"], b["image_grid_thw"], am)
            feats = model.image_features(b["pixel_values"], b["image_grid_thw"])
            cache = DynamicCache(config=model.vlm.config.text_config)
            model.backbone(ids[:, :cut], am[:, :cut], pos[:, :, :cut], feats, b["mm_token_type_ids"][:, :cut],
                           past_key_values=cache)  # fmt: skip
            prefix = am[:, :cut].bool() & (torch.arange(cut)[None] <= last[:, None])
            positions = pos[0, torch.arange(B), last][:, None] + 1 + torch.arange(model.T)
            x1 = b["actions"].float()
            noise = fm.sample_noise(tuple(x1.shape), g)
            t = fm.sample_t((B,), g)
            x_t = fm.interpolate(x1, noise, t.view(B, 1, 1))
            v = model.expert_velocity(x_t, t, cache, positions, model.expert_mask(prefix))
            loss = ((v - fm.target_velocity(x1, noise)) ** 2).mean()
        return loss, {}

    vlm_only = lambda n: n.startswith("vlm.")  # noqa: E731
    expert_only = lambda n: not n.startswith("vlm.")  # noqa: E731
    rows = []
    t_s1 = time_steps(trainer(vlm_only, s1), a.steps)
    t_s1_bf16 = time_steps(trainer(vlm_only, s1, autocast=True), max(1, a.steps // 2))
    rows.append(("stage 1 (CE, fp32)", t_s1, "stage 1 under bf16 autocast", t_s1_bf16))
    t_s2 = time_steps(trainer(expert_only, stage2.loss_fn), a.steps)
    t_s2_naive = time_steps(trainer(expert_only, s2_autograd_prefix), a.steps)
    rows.append(("stage 2 (FM, frozen VLM, detached cache)", t_s2, "stage 2 with the prefix under autograd", t_s2_naive))
    t_joint = time_steps(trainer(lambda n: True, stage2.joint_loss_fn), a.steps)
    rows.append(("joint (CE + FM, stop-gradient)", t_joint, "stage 1 + stage 2 run separately", t_s1 + t_s2))

    print(f"nano preset: {n_params / 1e6:.1f}M parameters, batch {a.batch}, sequence {L} tokens, "
          f"{a.threads} threads, fp32")  # fmt: skip
    print(f"| step | s/step | samples/s | baseline | baseline samples/s | speed-up |")
    print("|---|---:|---:|---|---:|---:|")
    for name, t, bname, tb in rows:
        print(f"| {name} | {t:.2f} | {a.batch / t:.1f} | {bname} | {a.batch / tb:.1f} | {tb / t:.2f}x |")


if __name__ == "__main__":
    main()
