"""Stage 2's prefix store (`train.prefix_store`): a stored, re-batched prefix gives the expert the same
flow error as the backbone computing it; a stage-2 run reading it follows the uncached run's loss
curve and weights, also across a kill and resume; it is off where the prefix is not per sample."""

import csv
import dataclasses
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import make_samples, tiny_config  # noqa: E402

from cordillera.model.configuration import TextConfig  # noqa: E402
from cordillera.model.modeling import STAGE2_PREFIX, CordilleraVLA, Stage2Prefix, prompt_tensors  # noqa: E402
from cordillera.train import loop, prefix_store, stage2  # noqa: E402
from cordillera.train.config import TrainConfig  # noqa: E402
from cordillera.train.data import Collate  # noqa: E402

torch.set_num_threads(1)

COCS = ("Stop for the red light ahead.", "Keep distance to the lead car that is braking hard in our lane.",
        "Resume speed.", "Nudge left around the parked truck since it blocks part of the lane ahead.")  # fmt: skip


def _samples(n):
    """Synthetic samples with CoCs of different lengths (rows of one batch pad differently) and keys."""
    out = make_samples(n)
    for i, s in enumerate(out):
        s["cot"], s["t0_us"] = COCS[i % len(COCS)], 1_700_000 + 1_000_000 * i
    return out


def _config_three_text_layers():
    """The tiny config with a deeper backbone than expert: only the expert's layers are stored."""
    cfg = tiny_config()
    return cfg.replace(text=dataclasses.replace(cfg.text, num_hidden_layers=3))


def test_stored_rows_rejoined_give_the_backbones_flow_error(tok):
    from cordillera.model.processor import VLAProcessor

    cfg = _config_three_text_layers()
    assert isinstance(cfg.text, TextConfig) and cfg.expert.num_hidden_layers == 2
    torch.manual_seed(0)
    vla = CordilleraVLA(cfg)
    batch = VLAProcessor(cfg, tok)(_samples(4))
    m = vla.model
    prefix = m.stage2_prefix(*prompt_tensors(batch))
    assert len(prefix.keys) == 2  # the backbone's third layer is never read by the expert
    lengths = prefix.mask.sum(1)
    assert len(set(lengths.tolist())) > 1  # left padding differs between rows
    rows = prefix.rows()
    assert [kv.shape[3] for kv, _ in rows] == lengths.tolist()
    g = torch.Generator().manual_seed(3)
    x1, noise, t = batch["actions"], torch.randn(4, m.T, 2, generator=g), torch.rand(4, generator=g)
    direct = m.stage2_losses(*prompt_tensors(batch), x1, noise, t)
    rejoined = m.stage2_flow_error(Stage2Prefix.join(rows, m.T), x1, noise, t)
    torch.testing.assert_close(rejoined, direct, rtol=1e-5, atol=1e-6)
    # a row stored alone and batched with others in another order reads the same
    order = [2, 0, 3, 1]
    shuffled = m.stage2_flow_error(Stage2Prefix.join([rows[i] for i in order], m.T), x1[order], noise[order], t[order])
    torch.testing.assert_close(shuffled, direct[order], rtol=1e-5, atol=1e-6)


def test_a_stored_batch_is_the_processor_batchs_targets_and_prefix(proc, tmp_path):
    samples = _samples(5)
    torch.manual_seed(0)
    m = CordilleraVLA(tiny_config()).model
    for history_dropout in (0.0, 0.5):  # the constant-velocity history changes the targets' start state
        collate = Collate(proc, history_dropout=history_dropout)
        store = prefix_store.PrefixStore(tmp_path / f"store{history_dropout}", m.T)
        stored = prefix_store.StoredPrefixCollate(collate, store)
        batch = stored(samples)
        assert batch[prefix_store.PREFIX_KEYS] == [f"clip{i}:{s['t0_us']}" for i, s in enumerate(samples)]
        store.save(batch[prefix_store.PREFIX_KEYS], m.stage2_prefix(*prompt_tensors(batch)), batch["actions"])
        again = stored(samples)
        assert set(again) == {"actions", STAGE2_PREFIX, prefix_store.PREFIX_KEYS}  # no prompt, no pixels
        torch.testing.assert_close(again["actions"], batch["actions"], rtol=0, atol=0)
        assert torch.equal(again[STAGE2_PREFIX].mask.sum(1), m.stage2_prefix(*prompt_tensors(batch)).mask.sum(1))
    with pytest.raises(ValueError, match="2 sample keys for a prefix of 5 rows"):
        store.save(["a", "b"], m.stage2_prefix(*prompt_tensors(batch)), batch["actions"])


def test_a_partly_stored_batch_computes_the_rest_and_gives_the_full_batchs_loss(proc, tmp_path):
    samples = _samples(5)
    torch.manual_seed(0)
    vla = CordilleraVLA(tiny_config())
    collate = Collate(proc)
    full = collate(samples)
    store = prefix_store.PrefixStore(tmp_path / "store", vla.model.T)
    keys = [f"clip{i}:{s['t0_us']}" for i, s in enumerate(samples)]
    some = collate([samples[1], samples[3]])
    store.save([keys[1], keys[3]], vla.model.stage2_prefix(*prompt_tensors(some)), some["actions"])
    batch = prefix_store.StoredPrefixCollate(collate, store)(samples)
    assert batch[prefix_store.STORED_ROWS]["computed"] == [0, 2, 4]
    assert batch[prefix_store.PREFIX_KEYS] == [keys[0], keys[2], keys[4]]
    assert batch["input_ids"].shape[0] == 3  # the backbone runs on the three rows not stored
    torch.testing.assert_close(batch["actions"], full["actions"], rtol=0, atol=0)  # every row, in order
    loss, _ = stage2.stored_loss_fn(store)(vla, batch, torch.Generator().manual_seed(5))
    ref, _ = stage2.loss_fn(vla, full, torch.Generator().manual_seed(5))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    assert all(store.has(k) for k in keys) and store.writes == 5  # the computed rows are stored as well


def _cfg(tmp_path, name, prefix_cache, max_steps=7, **kw):
    return TrainConfig(stage="stage2", init_from=str(tmp_path / "s1"), num_threads=1, progress=False,
                       tensorboard=False, prefix_cache=prefix_cache, data=dict(dir=str(tmp_path / "data"), **kw),
                       optim=dict(lr=1e-3, min_lr=1e-4, warmup_steps=0, max_steps=max_steps, batch_size=2),
                       checkpoint=dict(out_dir=str(tmp_path / name), save_every=1),
                       eval=dict(every=100, num_samples=2, batch_size=2, k=2, flow_steps=2, coc_samples=0),
                       log_every=1)  # fmt: skip


def _losses(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_stage2_reading_the_store_follows_the_uncached_run_across_a_resume(tok, tmp_path, capsys):
    torch.manual_seed(1)
    CordilleraVLA(tiny_config()).save_pretrained(tmp_path / "s1", tokenizer=tok)
    samples = _samples(5)  # batch 2, drop_last: 2 batches an epoch, one sample left out each epoch
    ref = stage2.train(_cfg(tmp_path, "plain", False), loop.RunData(samples, None))
    store_root = tmp_path / "data" / ".cordillera" / "train_cache" / "stage2_prefix"
    assert not store_root.exists()
    # the stored run, killed after 3 steps (store half full), then resumed to the end
    cached = _cfg(tmp_path, "stored", True)
    stage2.train(cached, loop.RunData(samples, None), stop_after=3)
    (store_dir,) = store_root.iterdir()
    assert 4 <= len(list(store_dir.glob("*.safetensors"))) <= 5
    capsys.readouterr()
    res = stage2.train(cached, loop.RunData(samples, None))
    visits = re.search(r"(\d+) samples written, (\d+) sample visits read from it", capsys.readouterr().out)
    assert visits and int(visits[2]) >= 4  # steps 4-7 are the second epoch onwards: read, not recomputed
    assert not store_dir.exists()  # removed once the run finished
    a, b = _losses(tmp_path / "plain"), _losses(tmp_path / "stored")
    assert len(a) == len(b) == 7
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-6)
    w_ref = dict(CordilleraVLA.from_pretrained(ref.final_dir).model.named_parameters())
    for n, p in CordilleraVLA.from_pretrained(res.final_dir).model.named_parameters():
        torch.testing.assert_close(p, w_ref[n], rtol=1e-4, atol=1e-6, msg=n)


def test_weighted_draws_read_partly_stored_batches_and_follow_the_uncached_run(tok, tmp_path, capsys, monkeypatch):
    import numpy as np

    from cordillera.train import data as train_data

    torch.manual_seed(1)
    CordilleraVLA(tiny_config()).save_pretrained(tmp_path / "s1", tokenizer=tok)
    samples = _samples(5)
    # the draws of `data.hard_sample_weight` without the sample cache they are computed from
    monkeypatch.setattr(train_data, "hard_sample_weights", lambda ds, w: np.array([1.0, 6.0, 1.0, 6.0, 1.0]))
    merged = []
    merge = prefix_store.merge_rows
    monkeypatch.setattr(prefix_store, "merge_rows", lambda *a: merged.append(a[1]["computed"]) or merge(*a))
    ref = stage2.train(_cfg(tmp_path, "plain", False, max_steps=6, hard_sample_weight=2.0), loop.RunData(samples, None))
    capsys.readouterr()
    stage2.train(_cfg(tmp_path, "stored", True, max_steps=6, hard_sample_weight=2.0), loop.RunData(samples, None))
    visits = re.search(r"(\d+) samples written, (\d+) sample visits read from it", capsys.readouterr().out)
    assert visits and int(visits[2]) > 0
    assert merged  # some batches mixed stored and new samples
    a, b = _losses(tmp_path / "plain"), _losses(tmp_path / "stored")
    assert len(a) == len(b) == 6
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-6)
    assert ref.step == 6


def test_the_store_is_off_where_a_prefix_is_not_the_samples_alone(tok, tmp_path, capsys):
    torch.manual_seed(1)
    CordilleraVLA(tiny_config()).save_pretrained(tmp_path / "s1", tokenizer=tok)
    stage2.train(_cfg(tmp_path, "swap", True, max_steps=1, coc_swap=0.5), loop.RunData(_samples(4), None))
    assert "prefix_cache off: data.coc_swap > 0" in capsys.readouterr().out
    assert not (tmp_path / "data" / ".cordillera" / "train_cache" / "stage2_prefix").exists()
    assert "trains the backbone" in prefix_store.unusable_reason(TrainConfig(stage="joint"), None)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        prefix_store.store_dir(tmp_path, tmp_path / "nowhere", {})
