"""Stage 2 on the backbone's own CoCs (`data.coc_own`, `train.own_coc`): the table is what the model
samples from the prompts training builds, it is sampled once, a restart continues it exactly, and the
prompts (not the labels) carry it."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import make_samples, tiny_config  # noqa: E402

from cordillera.data import keys as K  # noqa: E402
from cordillera.train import loop, stage2  # noqa: E402
from cordillera.train.config import TrainConfig  # noqa: E402
from cordillera.train.data import PROMPT_BATCH, Collate  # noqa: E402
from cordillera.train.own_coc import own_coc_path, sample_key, sample_keys, sample_own_cocs  # noqa: E402

torch.set_num_threads(1)
MAX_NEW = 6


def _vla(seed=0):
    from cordillera.model.modeling import CordilleraVLA

    torch.manual_seed(seed)
    return CordilleraVLA(tiny_config())


def _samples(n):
    samples = make_samples(n)
    for i, s in enumerate(samples):
        s[K.T0_US] = 2_000_000 + 100_000 * i
    return samples


def _table(vla, tok, proc, samples, path, **kw):
    return sample_own_cocs(vla, lambda ids: loop.decode_coc(tok, ids), samples, Collate(proc, with_prompt=True),
                           path, temperature=0.6, top_p=0.98, seed=3, max_new_tokens=MAX_NEW, batch_size=2,
                           progress=False, **kw)  # fmt: skip


def test_table_is_the_models_samples_once_and_a_restart_continues_it(tok, proc, tmp_path):
    vla, samples = _vla(), _samples(5)
    path = tmp_path / "own.json"
    table = _table(vla, tok, proc, samples, path)
    assert list(table) == sample_keys(samples) == [f"clip{i}:{2_000_000 + 100_000 * i}" for i in range(5)]
    assert json.loads(path.read_text()) == {"complete": True, "cocs": table}
    # batch b (samples 2b, 2b+1) is what the model samples from those prompts with seed + b
    g = torch.Generator().manual_seed(3 + 1)
    with torch.inference_mode():
        out = vla.sample_trajectories(Collate(proc, with_prompt=True)(samples[2:4])[PROMPT_BATCH], temperature=0.6,
                                      top_p=0.98, flow_steps=1, max_new_tokens=MAX_NEW, generator=g)  # fmt: skip
    assert loop.decode_coc(tok, out.coc_token_ids[:, 0]) == [table[sample_key(s)] for s in samples[2:4]]
    assert vla.training  # left as it was
    # a crash after the first batch: the restart keeps what was stored and samples only the rest
    first = {k: "stored before the crash" for k in list(table)[:2]}
    path.write_text(json.dumps({"complete": False, "cocs": first}))
    resumed = _table(vla, tok, proc, samples, path)
    assert resumed == {**table, **first}
    # a complete table is read, not sampled again
    path.write_text(json.dumps({"complete": True, "cocs": {"x": "y"}}))
    assert _table(vla, tok, proc, samples, path) == {"x": "y"}


def test_prompts_carry_a_fixed_share_of_own_cocs_and_the_labels_stay(proc):
    from cordillera.model.processor import COT_TEXT

    samples = _samples(40)
    table = {sample_key(s): f"own {i}" for i, s in enumerate(samples)}
    every = Collate(proc, coc_own=1.0, own_cocs=table)
    assert every._cocs(samples) == [f"own {i}" for i in range(40)]
    batch = every(samples[:2])
    assert batch[COT_TEXT] == [s[K.COT_KEY] for s in samples[:2]]  # labels for the metrics stay the label's
    plain = Collate(proc)([{**s, K.COT_KEY: table[sample_key(s)]} for s in samples[:2]])
    assert torch.equal(batch["input_ids"], plain["input_ids"])
    half = Collate(proc, coc_own=0.5, own_cocs=table)
    own = [c.startswith("own") for c in half._cocs(samples)]
    assert 8 <= sum(own) <= 32 and own == [c.startswith("own") for c in half._cocs(samples)]  # fixed per sample
    assert Collate(proc, use_coc=False, coc_own=1.0, own_cocs=table)._cocs(samples[:2]) == [None, None]
    with pytest.raises(ValueError, match="own-CoC table"):
        Collate(proc, coc_own=0.5)
    with pytest.raises(KeyError):
        every([{**samples[0], K.T0_US: 1}])


def test_config_asks_for_stage_2_a_backbone_and_one_source(tmp_path):
    with pytest.raises(ValueError, match="coc_own > 0 with stage 'stage1'"):
        TrainConfig(stage="stage1", init_from="x", data=dict(coc_own=1.0))
    # `train nano` fills init_from in after loading: its config loads, the sampling step asks for it
    from cordillera.train.config import NanoConfig, load_train_config

    nano = load_train_config("train_nano", NanoConfig, ["stage2.data.coc_own=1.0"])
    assert nano.stage2.data.coc_own == 1.0 and nano.stage2.init_from is None
    with pytest.raises(ValueError, match="needs init_from"):
        loop.own_cocs(TrainConfig(stage="stage2", data=dict(coc_own=1.0)), None, None, None, None, 0.0)
    with pytest.raises(ValueError, match="choose one"):
        TrainConfig(stage="stage2", init_from="x", data=dict(coc_own=1.0, coc_swap=0.5))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        own_coc_path(tmp_path, tmp_path, [], 0.6, 0.98, 0, None, {})


def test_stage2_samples_the_table_from_its_backbone_then_trains_on_it(tok, tmp_path):
    s1 = _vla(seed=1)
    s1.save_pretrained(tmp_path / "s1", tokenizer=tok)
    cfg = TrainConfig(stage="stage2", init_from=str(tmp_path / "s1"), num_threads=1, progress=False,
                      tensorboard=False, data=dict(dir=str(tmp_path / "data"), coc_own=1.0),
                      optim=dict(lr=1e-3, min_lr=1e-4, warmup_steps=0, max_steps=2, batch_size=2),
                      checkpoint=dict(out_dir=str(tmp_path / "run"), save_every=10),
                      eval=dict(every=100, num_samples=2, batch_size=2, k=2, flow_steps=2, coc_samples=0,
                                max_new_tokens=MAX_NEW))  # fmt: skip
    samples = _samples(3)
    vla = stage2.build_model(cfg, loop.RunData(None, None))
    loop.run_stage(cfg, vla, loop.RunData(samples, None), stage2.loss_fn, stage2._freeze_eval, tokenizer=tok)
    (stored,) = (tmp_path / "data" / ".cordillera" / "train_cache" / "own_coc").glob("*.json")
    table = json.loads(stored.read_text())
    assert table["complete"] and list(table["cocs"]) == sample_keys(samples)
    # the path names the backbone's weights: another backbone samples its own table
    s1b = _vla(seed=2)
    s1b.save_pretrained(tmp_path / "s1b", tokenizer=tok)
    keys = sample_keys(samples)
    assert own_coc_path(tmp_path, tmp_path / "s1", keys, 0.6, 0.98, 0, None, {}) != \
        own_coc_path(tmp_path, tmp_path / "s1b", keys, 0.6, 0.98, 0, None, {})  # fmt: skip


def test_the_trajectory_only_variant_ignores_coc_own(tmp_path):
    # `train nano --ablation` shares stage 2's settings: the model without reasoning samples nothing
    cfg = TrainConfig(stage="stage2", use_coc=False, num_threads=1, progress=False, tensorboard=False,
                      data=dict(dir=str(tmp_path / "data"), coc_own=1.0),
                      optim=dict(lr=1e-3, min_lr=1e-4, warmup_steps=0, max_steps=1, batch_size=2),
                      checkpoint=dict(out_dir=str(tmp_path / "run"), save_every=10),
                      eval=dict(every=100, num_samples=2, batch_size=2, k=2, flow_steps=2, coc_samples=0))  # fmt: skip
    from cordillera.model.modeling import CordilleraVLA

    torch.manual_seed(0)
    vla = CordilleraVLA(tiny_config(use_coc=False))
    loop.run_stage(cfg, vla, loop.RunData(make_samples(2, cot=False), None), stage2.loss_fn, stage2._freeze_eval)
    assert not (tmp_path / "data" / ".cordillera" / "train_cache" / "own_coc").exists()
