"""The command line: version, help everywhere, one-line errors, exit codes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import cordillera
from cordillera import __version__, code_version
from cordillera.cli import app, main
from cordillera.render.rig import MODEL_CARD_IMAGE_HW

SUBCOMMANDS = ["demo", "sim", "data", "label", "train", "eval", "infer", "serve", "bench", "report"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cordillera", *args], capture_output=True, text=True, timeout=120)


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"cordillera {code_version()}"


def test_code_version_names_the_commit(monkeypatch):
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                          cwd=Path(cordillera.__file__).parent)
    if head.returncode == 0:  # a git checkout (CI clones one)
        assert re.fullmatch(rf"{re.escape(__version__)}\+g{head.stdout.strip()}(\.dirty)?", code_version())

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert code_version.__wrapped__() == __version__  # no git, or not a checkout: the release version alone


def test_all_design_subcommands_registered():
    import typer.main

    group = typer.main.get_command(app)
    assert set(SUBCOMMANDS) <= set(group.commands)


@pytest.mark.parametrize("cmd", [[c] for c in SUBCOMMANDS] + [["sim", "run"], ["data", "generate"], ["eval", "closed-loop"]])
def test_help_everywhere(cmd, capsys):
    try:
        main([*cmd, "--help"])
    except SystemExit as e:
        assert e.code == 0
    assert "Usage" in capsys.readouterr().out


def test_bad_option_is_one_clear_line_not_a_traceback():
    r = run_cli("sim", "run", "--rollouts", "two")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "--rollouts" in r.stderr


def test_unknown_command_exits_nonzero():
    r = run_cli("fly")
    assert r.returncode == 2
    assert "No such command" in r.stderr


def test_unexpected_error_one_line_and_traceback_with_v(tmp_path, monkeypatch):
    import cordillera.cli as cli

    def boom(**_):
        raise ValueError("scenario file is broken")

    monkeypatch.setattr(cli, "_entry", lambda *a, **k: boom)
    with pytest.raises(SystemExit) as e:
        main(["report", str(tmp_path)])
    assert e.value.code == 1
    with pytest.raises(SystemExit) as e:
        main(["-v", "report", str(tmp_path)])
    assert e.value.code == 1


def test_not_available_is_exit_2(monkeypatch, capsys):
    import cordillera.cli as cli

    def missing(module, name, what):
        raise cli.NotAvailable(f"{what}: not yet available")

    monkeypatch.setattr(cli, "_entry", missing)
    with pytest.raises(SystemExit) as e:
        main(["infer", "--checkpoint", "x", "--clip", "y"])
    assert e.value.code == 2


def test_eval_closed_loop_forwards_replan_render_size_and_no_ablation(monkeypatch, tmp_path):
    import cordillera.train.evaluate as ev

    got = {}
    monkeypatch.setattr(ev, "main_closed_loop", lambda **kw: got.update(kw))
    main(["eval", "closed-loop", "--checkpoint", str(tmp_path), "--replan-every", "0.5", "--render-hw", "160x288",
          "--traj-only", "none"])
    assert got["replan_every_s"] == 0.5 and got["render_hw"] == (160, 288) and got["traj_only"] is None
    assert got["num_samples"] == 1 and got["select"] == "first" and got["noise_temperature"] is None
    assert got["coc_temperature"] is None and got["fast"] is False and got["reasoning"] == "own"
    assert got["steering"] == "own" and got["speculative"] is True and got["first_seed"] == 0
    main(["eval", "closed-loop", "--checkpoint", str(tmp_path), "--reasoning", "privileged", "--steering", "privileged",
          "--no-speculative", "--first-seed", "2"])
    assert got["first_seed"] == 2
    assert got["reasoning"] == "privileged" and got["steering"] == "privileged" and got["speculative"] is False
    main(["eval", "closed-loop", "--checkpoint", str(tmp_path), "--samples", "6", "--select", "medoid",
          "--noise-temperature", "0", "--coc-temperature", "0", "--fast"])
    # the CLI's default literal (the CLI does not import the renderer) is the model-card size
    assert got["replan_every_s"] == 0.0 and got["render_hw"] == MODEL_CARD_IMAGE_HW and got["traj_only"] == "auto"
    assert got["num_samples"] == 6 and got["select"] == "medoid" and got["noise_temperature"] == 0.0
    assert got["coc_temperature"] == 0.0 and got["fast"] is True


def test_eval_closed_loop_bad_render_size_is_one_line():
    r = run_cli("eval", "closed-loop", "--checkpoint", ".", "--render-hw", "3x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "expected HxW like 320x576, got '3x'" in r.stderr


def test_data_generate_options_reach_the_generator(monkeypatch, tmp_path):
    """--seeds-per-family picks the first seeds of every family; --image-hw the render size; without
    --clips `train` gives 100 clips and another suite all of its scenarios."""
    import cordillera.data.generate as gen
    from cordillera.world.generator import first_per_family, suite

    calls = []

    def fake_generate(scenarios, clips, out, **kw):
        calls.append((scenarios, clips, kw))
        return {"written": [], "skipped": [], "failed": [], "clips_total": 0, "wall_s": 0.0}

    monkeypatch.setattr(gen, "generate", fake_generate)
    out = str(tmp_path / "ds")
    for args in (["--suite", "standard", "--seeds-per-family", "3", "--image-hw", "160x288"], ["--suite", "long_tail"],
                 [], ["--handover-from", "ckpt", "--handover-fraction", "0.25", "--label-every-s", "1"]):
        main(["data", "generate", "--out", out, *args])
    (held, n_held, kw_held), (lt, n_lt, kw_lt), (train, n_train, kw_train), (_, _, kw_hand) = calls
    assert held == first_per_family(suite("standard"), 3) and n_held is None and kw_held["image_hw"] == (160, 288)
    assert (lt, n_lt, kw_lt["image_hw"]) == ("long_tail", None, MODEL_CARD_IMAGE_HW)
    assert (train, n_train) == ("train", 100)
    # no learner, no on-policy clips (the fraction's default applies only with --handover-from)
    assert (kw_train["handover_from"], kw_train["handover_fraction"], kw_train["label_every_us"]) == (None, 0.0, None)
    assert (str(kw_hand["handover_from"]), kw_hand["handover_fraction"], kw_hand["label_every_us"]) == ("ckpt", 0.25,
                                                                                                      1_000_000)
    r = run_cli("data", "generate", "--out", out, "--image-hw", "160by288")
    assert r.returncode == 2 and "HxW" in r.stderr and "Traceback" not in r.stderr
