"""The nano pipeline end to end on a tiny dataset (2 rendered clips, a few steps per stage)."""

import csv
import json

import pytest
import torch

from cordillera import code_version
from cordillera.train import nano
from cordillera.train.config import NanoConfig


@pytest.mark.slow
def test_nano_pipeline_end_to_end(tmp_path):
    torch.set_num_threads(1)
    small = {"optim": {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 1, "max_steps": 2, "batch_size": 2},
             "eval": {"every": 100, "num_samples": 2, "batch_size": 2, "k": 2, "flow_steps": 2, "coc_samples": 2,
                      "max_new_tokens": 8},
             "num_threads": 1, "progress": False, "tensorboard": False,
             "data": {"cache_workers": 1}}  # fmt: skip
    cfg = NanoConfig.model_validate({
        "out": str(tmp_path / "nano"), "work_dir": str(tmp_path / "work"), "eval_samples": 4, "val_fraction": 0.5,
        "generate": {"clips": 2, "workers": 1, "image_height": 64, "image_width": 96},
        "stage1": {"stage": "stage1", **small}, "stage2": {"stage": "stage2", **small},
    })  # fmt: skip
    res = nano.run(cfg, command="pytest")
    out = tmp_path / "nano"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "train_log.csv"):
        assert (out / name).exists(), name
    info = res["coc"]
    n_train = info["train_samples"]["stage2"]
    assert info["clips"] == 2 and n_train > 0 and info["val_samples"] > 0
    assert info["train_samples"] == {"stage1": n_train, "stage2": n_train}
    assert info["events"] >= n_train + info["val_samples"]  # every sample carries a CoC
    readme = (out / "README.md").read_text()
    assert "pytest" in readme and "val/min_ade" in readme
    assert info["code_version"] == code_version() and info["data_code_versions"] == {code_version(): 2}
    assert f"- trained by cordillera `{code_version()}`" in readme
    assert f"- data rendered by `{code_version()}` (2 clips)" in readme
    assert "4 validation samples (held-out scenario seeds), K = 2, CoC sampled from the prompt" in readme
    with open(out / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["stage"] for r in rows} == {"stage1", "stage2"}
    cfgj = json.loads((out / "config.json").read_text())
    stats = cfgj["vla"]["action_space"]
    assert stats["accel_std_mps2"] != 1.0 and stats["curvature_std_1pm"] != 1.0  # fitted, not the defaults
    from cordillera.model.inference import Planner

    planner = Planner.from_pretrained(out)
    assert planner.model.cfg.inputs.use_coc

    # the same command again resumes both stages at their last checkpoint: the card keeps the first run's loop times
    rerun = nano.run(cfg.model_copy(update={"skip_generate": True}), command="pytest again")["coc"]
    assert rerun["resumed"].keys() == {"stage 1", "stage 2"}
    for st in ("stage 1", "stage 2"):
        assert rerun["resumed"][st]["at_step"] == 2
        assert rerun["wall_s"][st] == pytest.approx(info["wall_s"][st], rel=0.25)  # less the last save
    assert "resumed at step 2" in (out / "README.md").read_text()

    # stage 2 alone on the stage-1 backbone just trained (expert / data ablations): same data
    stage1_dir = tmp_path / "work" / "coc" / "stage1" / "final"
    hard = cfg.stage2.model_copy(update={"data": cfg.stage2.data.model_copy(update={"hard_sample_weight": 2.0})})
    again = cfg.model_copy(update={"out": str(tmp_path / "nano-s2"), "skip_generate": True,
                                   "stage1_from": str(stage1_dir), "stage2": hard})
    info2 = nano.run(again, command="pytest stage1_from")["coc"]
    out2 = tmp_path / "nano-s2"
    assert info2["train_samples"] == {"stage2": n_train} and info2["hard_sample_weight"] == {"stage2": 2.0}
    assert "stage 1" not in info2["wall_s"]  # the backbone was trained elsewhere
    readme2 = (out2 / "README.md").read_text()
    assert "stage 2 trained on the stage-1 backbone" in readme2
    assert f"{n_train} (stage 2) training" in readme2 and "hard-sample draws (2 (stage 2))" in readme2
    with open(out2 / "train_log.csv") as f:
        assert {r["stage"] for r in csv.DictReader(f)} == {"stage2"}
    from safetensors.torch import load_file

    s1, s2 = load_file(str(stage1_dir / "model.safetensors")), load_file(str(out2 / "model.safetensors"))
    backbone = [k for k in s1 if k.startswith("vlm.")]
    assert backbone and all(torch.equal(s1[k], s2[k]) for k in backbone)  # the backbone is the given one
    with pytest.raises(ValueError, match="not a checkpoint directory"):
        nano.run(again.model_copy(update={"stage1_from": str(tmp_path)}), command="pytest")


def test_data_code_versions_counts_clips_and_names_unstamped_ones():
    from cordillera.data import keys as K

    metas = [{K.CODE_VERSION: "0.1.0+gaaaa"}, {K.CODE_VERSION: "0.1.0+gbbbb"}, {K.CODE_VERSION: "0.1.0+gbbbb"},
             {}, {K.CODE_VERSION: float("nan")}]  # an old clip: no column, or NaN beside stamped clips
    assert nano.data_code_versions(metas) == {"0.1.0+gbbbb": 2, nano.UNSTAMPED: 2, "0.1.0+gaaaa": 1}
    assert list(nano.data_code_versions(metas)) == ["0.1.0+gbbbb", nano.UNSTAMPED, "0.1.0+gaaaa"]  # most first
