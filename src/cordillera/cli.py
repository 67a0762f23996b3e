"""The ``cordillera`` command line (typer + rich).

Every sub-command of DESIGN.md §2 is registered here and calls one entry point in its module,
imported lazily so ``cordillera --help`` stays fast. Errors print one line; ``-v`` shows the
traceback. A capability that is not built yet exits 2 with "not yet available".
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

# typer vendors click; its exception classes are the ones raised in standalone_mode=False.
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.exceptions import Abort
from typer.exceptions import Exit as ClickExit

from cordillera import code_version

err_console = Console(stderr=True, soft_wrap=True)
console = Console()

_STATE = {"verbose": False}


class NotAvailable(RuntimeError):
    """A command whose capability is not built yet."""


def _not_available(what: str) -> None:
    raise NotAvailable(f"{what}: not yet available")


def _entry(module: str, name: str, what: str):
    """Import ``module.name`` lazily; a missing module means the capability is not built yet."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name + ".") or e.name.startswith("cordillera")):
            _not_available(what)
        raise
    fn = getattr(mod, name, None)
    if fn is None:
        _not_available(what)
    return fn


def _version_callback(value: bool):
    if value:
        console.print(f"cordillera {code_version()}")
        raise typer.Exit()


app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="cordillera: reasoning VLA driving stack — simulator, data, model, training, evaluation.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
):
    _STATE["verbose"] = verbose


# ----------------------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------------------
@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Output directory for the report."),
    config: str = typer.Option("demo", help="Preset name in configs/ or a YAML path."),
    workers: Optional[int] = typer.Option(None, help="Parallel workers (1 = serial)."),
):
    """Run the shipped model closed loop on the demo suite and write demo_out/report.html."""
    fn = _entry("cordillera.demo", "run_demo", "cordillera demo")
    fn(out=out, config=config, workers=workers)


# ----------------------------------------------------------------------------------------------
# sim
# ----------------------------------------------------------------------------------------------
sim_app = typer.Typer(no_args_is_help=True, help="Closed-loop simulation.")
app.add_typer(sim_app, name="sim")


@sim_app.command("run")
def sim_run(
    suite: str = typer.Option("smoke", help="Scenario suite (smoke, standard, long_tail, demo, train)."),
    policy: str = typer.Option("expert", help="expert | constant_velocity | route_follower | vla:<checkpoint>"),
    out: Path = typer.Option(Path("runs/sim"), help="Output directory (AlpaSim layout)."),
    rollouts: int = typer.Option(1, min=1, help="Rollouts per scenario."),
    workers: Optional[int] = typer.Option(None, min=1, help="Ray workers; 1 runs serially in-process."),
    address: Optional[str] = typer.Option(None, help="Address of an existing Ray cluster."),
    video: bool = typer.Option(False, help="Write one MP4 per rollout."),
    services: str = typer.Option("inprocess", help="inprocess | grpc (start services as subprocesses)."),
    wire_precision: bool = typer.Option(
        False, help="In-process: round what AlpaSim's gRPC wire carries to float32, so results equal --services grpc."),
):
    """Run POLICY on every scenario of SUITE, writing metrics, aggregate results and a summary."""
    if services == "grpc":
        fn = _entry("cordillera.serve.launcher", "main_sim_run_grpc", "cordillera sim run --services grpc")
        fn(suite=suite, policy=policy, out=out, rollouts=rollouts, video=video)
        return
    if services != "inprocess":
        raise typer.BadParameter(f"--services must be inprocess or grpc, got {services!r}")
    fn = _entry("cordillera.sim.batch", "main_sim_run", "cordillera sim run")
    fn(suite=suite, policy=policy, out=out, rollouts=rollouts, workers=workers, address=address, video=video,
       wire_precision=wire_precision)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
data_app = typer.Typer(no_args_is_help=True, help="PhysicalAI-AV layout data generation and inspection.")
app.add_typer(data_app, name="data")


@data_app.command("generate")
def data_generate(
    suite: str = typer.Option("train", help="Scenario suite to generate clips from."),
    clips: Optional[int] = typer.Option(None, min=1, help="Number of 20 s clips (default: 100 of `train`, every "
                                        "scenario of another suite)."),
    out: Path = typer.Option(..., help="Output dataset directory."),
    workers: Optional[int] = typer.Option(None, min=1),
    address: Optional[str] = typer.Option(None),
    perturb_fraction: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of training clips driven with a "
                                           "DART disturbance (the expert pushed off its line, then recovering)."),
    perturb_profile: str = typer.Option("push", help="The disturbances' ranges (sim/policies/perturbed.py "
                                        "PERTURB_PROFILES): push = brief nudges, drift = a turned plan held for "
                                        "seconds (1–3 m off the lane before the recovery)."),
    image_hw: str = typer.Option("320x576", "--image-hw", help="Camera image size HxW (the nano training data "
                                 "and held-out sets are 160x288)."),
    seeds_per_family: Optional[int] = typer.Option(None, min=1, help="Only the first N scenario seeds of each "
                                                   "family (a small set that covers every family)."),
    handover_from: Optional[Path] = typer.Option(None, help="A VLA checkpoint: also write on-policy clips in "
                                                 "which it drives until a handover and the expert then "
                                                 "takes over (DAgger); labelled at generation."),
    handover_fraction: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of the training scenarios that "
                                            "get an on-policy clip (with --handover-from)."),
    label_every_s: Optional[float] = typer.Option(None, min=0.1, help="On-policy clips: also label a t0 grid "
                                                  "every this many seconds (`cordillera label --every`, which "
                                                  "cannot re-drive them)."),
):
    """Generate clips in the PhysicalAI-AV layout from expert rollouts."""
    fn = _entry("cordillera.data.generate", "main_generate", "cordillera data generate")
    fn(suite=suite, clips=clips, out=out, workers=workers, address=address, perturb_fraction=perturb_fraction,
       image_hw=_hw(image_hw), seeds_per_family=seeds_per_family, handover_from=handover_from,
       handover_fraction=handover_fraction if handover_from is not None else 0.0,
       label_every_us=None if label_every_s is None else round(label_every_s * 1e6), perturb_profile=perturb_profile)


@data_app.command("inspect")
def data_inspect(path: Path = typer.Argument(..., help="Dataset directory.")):
    """Print a summary table of a dataset and write a contact sheet of one sample."""
    fn = _entry("cordillera.data.inspect", "main_inspect", "cordillera data inspect")
    fn(path=path)


# ----------------------------------------------------------------------------------------------
# label
# ----------------------------------------------------------------------------------------------
# The label help lives here, not in reasoning/cli.py: importing that module for its text pulled the
# labeler and numpy into every `cordillera` start (184 → 62 ms to import the CLI).
LABEL_HELP = """Auto-label every clip of a PhysicalAI-AV dataset directory with the rule labeler.

The rule labeler is privileged: it needs the scenario (map, stop signs, traffic-light states, actor
visibility, hazard onsets) and the expert's decision at every keyframe, none of which the layout
stores. A cordillera-generated clip carries what reproduces them: its family, scenario seed and
rollout seed in metadata/data_collection.parquet. The scenario is rebuilt from them and the expert
re-drives it without cameras; the re-drive must match the clip's stored egomotion
(labels/egomotion) within 2 m, else the clip is refused. Clips without these (e.g. real
PhysicalAI-AV clips) are reported one line each and keep their events (label those with the LLM
teacher, cordillera.reasoning.teacher). Events go to reasoning/ood_reasoning.parquet (same schema
as `cordillera data generate` writes), atomically; clips that already have events are skipped
unless --overwrite."""


def _label_help() -> str:
    paragraphs = [" ".join(p.split()) for p in LABEL_HELP.split("\n\n")]  # rich keeps single newlines
    return "\n\n".join(paragraphs + ["`cordillera label check DIR` prints decision distribution, phrasing diversity "
                                      "and leakage checks."])


@app.command(context_settings={"allow_extra_args": False}, help=_label_help())
def label(
    args: list[str] = typer.Argument(..., metavar="[check] DIR", help="DIR, or `check DIR`."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Relabel clips that already have events."),
    seed: int = typer.Option(None, "--seed", help="Rollout/phrasing seed for clips whose metadata has none "
                                                  "(default 0, as `data generate`)."),
    every: Optional[float] = typer.Option(None, "--every", help="Also label a t0 every this many seconds (dense "
                                          "labels: every sample gets a CoC, as `cordillera train nano` trains on)."),
    start: Optional[float] = typer.Option(None, "--start", help="First t0 of the --every grid in seconds "
                                          "(default 1.6, the shortest history; never inside the force-GT warm-up)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes re-driving clips in parallel."),
):
    if args[0] == "check":
        if len(args) != 2:
            raise typer.BadParameter("usage: cordillera label check DIR")
        fn = _entry("cordillera.reasoning.cli", "main_check", "cordillera label check")
        fn(path=Path(args[1]))
    else:
        if len(args) != 1:
            raise typer.BadParameter("usage: cordillera label DIR")
        fn = _entry("cordillera.reasoning.cli", "main_label", "cordillera label")
        rep = fn(path=Path(args[0]), overwrite=overwrite, seed=seed, every_s=every, start_s=start, workers=workers)
        if rep["failed"]:
            raise typer.Exit(1)


# ----------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------
train_app = typer.Typer(no_args_is_help=True, help="Training: stage 1, stage 2, nano, RL, distillation.")
app.add_typer(train_app, name="train")


def _train(stage: str, config: str, overrides: list[str]):
    fn = _entry(f"cordillera.train.{stage}", "main", f"cordillera train {stage}")
    fn(config=config, overrides=overrides)


@train_app.command("stage1")
def train_stage1(config: str = typer.Option("train_stage1"), set_: list[str] = typer.Option([], "--set")):
    """Stage 1: CoC + discrete trajectory tokens (cross-entropy)."""
    _train("stage1", config, set_)


@train_app.command("stage2")
def train_stage2(config: str = typer.Option("train_stage2"), set_: list[str] = typer.Option([], "--set")):
    """Stage 2: flow-matching action expert on the frozen backbone."""
    _train("stage2", config, set_)


@train_app.command("nano")
def train_nano(config: str = typer.Option("train_nano"), set_: list[str] = typer.Option([], "--set"),
               ablation: bool = typer.Option(False, "--ablation", help="Also train the trajectory-only model.")):
    """Data → stage 1 → stage 2 → eval → checkpoints/nano (and checkpoints/nano-traj-only with --ablation)."""
    _train("nano", config, list(set_) + (["ablation=true"] if ablation else []))


@train_app.command("rl")
def train_rl(config: str = typer.Option("train_rl"), set_: list[str] = typer.Option([], "--set")):
    """GRPO with verifiable rewards."""
    _train("rl", config, set_)


@train_app.command("distill")
def train_distill(config: str = typer.Option("train_distill"), set_: list[str] = typer.Option([], "--set")):
    """Distil a larger model into a smaller one."""
    _train("distill", config, set_)


# ----------------------------------------------------------------------------------------------
# eval
# ----------------------------------------------------------------------------------------------
eval_app = typer.Typer(no_args_is_help=True, help="Closed-loop and open-loop evaluation.")
app.add_typer(eval_app, name="eval")


def _hw(text: str) -> tuple[int, int]:
    """'320x576' → (320, 576)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HxW like 320x576, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise typer.BadParameter(f"height and width must be > 0, got {text!r}")
    return h, w


@eval_app.command("closed-loop")
def eval_closed_loop(
    checkpoint: Path = typer.Option(..., help="Model checkpoint directory."),
    suite: str = typer.Option("standard"),
    out: Path = typer.Option(Path("runs/eval")),
    seeds: int = typer.Option(3, min=1, help="Rollout seeds per scenario (for confidence intervals)."),
    first_seed: int = typer.Option(0, min=0, help="The first rollout seed (seeds first … first + seeds − 1): add "
                                                  "seeds to an earlier run without repeating its own."),
    baselines: str = typer.Option("expert,constant_velocity", help="Comma-separated baselines to compare."),
    workers: Optional[int] = typer.Option(None, min=1),
    duration: Optional[float] = typer.Option(None, min=0.1, help="Shorten every scenario to this many seconds."),
    traj_only: Optional[Path] = typer.Option(
        None, help="Trajectory-only checkpoint to compare (default: checkpoints/nano-traj-only if it exists; "
                   "'none' skips it)."),
    max_new_tokens: Optional[int] = typer.Option(None, min=1, help="CoC token budget per step."),
    replan_every: float = typer.Option(
        0.0, min=0.0, max=2.0, help="Run the models only every this many seconds and re-anchor the last plan in "
                                    "between (0 = every 0.1 s control step, as AlpaSim)."),
    render_hw: str = typer.Option("320x576", help="Camera render size HxW before the resize to the model's "
                                                   "input (the nano training data is rendered at 160x288)."),
    samples: int = typer.Option(1, min=1, help="Trajectory samples (K) per model step; sample 0 drives unless --select."),
    select: str = typer.Option("first", help="'first' (sample 0 drives), 'consistent' (the sample whose own CoC "
                                             "agrees best with its trajectory) or 'medoid' (the trajectory nearest "
                                             "the other samples); the last two need --samples >= 2."),
    families: Optional[str] = typer.Option(None, help="Comma-separated families: run only these of the suite."),
    noise_temperature: Optional[float] = typer.Option(
        None, min=0.0, help="Scale of the action expert's initial flow noise (default: the checkpoint's, 1.0; "
                            "0 = the flow from the mean noise, least lateral scatter)."),
    coc_temperature: Optional[float] = typer.Option(
        None, min=0.0, help="CoC token sampling temperature of the CoC model (default 0.6, spec §5.1; 0 = greedy)."),
    fast: bool = typer.Option(False, "--fast", help="Plan without decoding CoC: the action expert reads the "
                                                    "prompt's KV cache (model.plan fast path; no CoC to check)."),
    reasoning: str = typer.Option(
        "own", help="'own' (the CoC model writes its CoC) or 'privileged' (a diagnostic: the auto-labeler's CoC for "
                    "the simulator state is forced into it, so the run shows how its action expert drives given "
                    "the right reasoning)."),
    steering: str = typer.Option(
        "own", help="'own' or 'privileged' (a diagnostic: each plan is laid onto the expert's path at the model's "
                    "own speeds, so the run shows what perfect lateral control would buy)."),
    speculative: bool = typer.Option(
        True, "--speculative/--no-speculative", help="Decode the CoC speculatively from the rollout's earlier CoCs "
                                                     "(same distribution, fewer backbone forwards; one sample per step)."),
):
    """Run the VLA and baselines closed loop and print a comparison table with 95% CIs."""
    fn = _entry("cordillera.train.evaluate", "main_closed_loop", "cordillera eval closed-loop")
    fn(checkpoint=checkpoint, suite=suite, out=out, seeds=seeds, first_seed=first_seed, baselines=baselines,
       workers=workers, duration_s=duration, max_new_tokens=max_new_tokens, replan_every_s=replan_every, render_hw=_hw(render_hw),
       num_samples=samples, select=select, families=families, noise_temperature=noise_temperature,
       coc_temperature=coc_temperature, fast=fast, reasoning=reasoning, steering=steering, speculative=speculative,
       traj_only="auto" if traj_only is None else (None if str(traj_only).lower() == "none" else traj_only))


@eval_app.command("open-loop")
def eval_open_loop(
    checkpoint: Path = typer.Option(...),
    data: Path = typer.Option(..., help="Dataset directory (PhysicalAI-AV layout)."),
    split: str = typer.Option("val"),
):
    """minADE_6 / ADE / L2@t and CoC metrics on held-out clips."""
    fn = _entry("cordillera.train.evaluate", "main_open_loop", "cordillera eval open-loop")
    fn(checkpoint=checkpoint, data=data, split=split)


@eval_app.command("compare")
def eval_compare(
    run_a: str = typer.Argument(..., help="An `eval closed-loop --out` directory (or its comparison.json); "
                                          "several, comma-separated, are pooled (e.g. one run per seed)."),
    run_b: str = typer.Argument(..., help="The run compared against A (B − A is reported); may pool as A."),
    policy: str = typer.Option("vla", help="Policy of run A (and of B unless --policy-b)."),
    policy_b: Optional[str] = typer.Option(None),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated rollout seeds to keep, e.g. 0."),
    families: Optional[str] = typer.Option(None, help="Comma-separated scenario families to keep."),
):
    """Pair two closed-loop runs on (scenario, seed): B − A per metric with 95% CIs, score per family."""
    fn = _entry("cordillera.train.evaluate", "main_compare", "cordillera eval compare")
    fn(run_a=run_a, run_b=run_b, policy=policy, policy_b=policy_b, seeds=seeds, families=families)


# ----------------------------------------------------------------------------------------------
# infer, serve, bench, report
# ----------------------------------------------------------------------------------------------
@app.command()
def infer(
    checkpoint: Path = typer.Option(...),
    clip: Path = typer.Option(..., help="DATA_DIR/CLIP_ID"),
    t0: int = typer.Option(5_100_000, help="Decision time in µs (clip-relative)."),
    out: Path = typer.Option(Path("infer.png")),
    dtype: str = typer.Option("float32", help="Inference precision of the weights: float32 or bfloat16 "
                                              "(opt-in; outputs stay float32)."),
):
    """Print the CoC and write a PNG with the camera grid and predicted vs ground-truth trajectories."""
    fn = _entry("cordillera.model.infer_cli", "main_infer", "cordillera infer")
    fn(checkpoint=checkpoint, clip=clip, t0=t0, out=out, dtype=dtype)


@app.command()
def serve(
    service: str = typer.Argument(..., help="driver | sensorsim | controller | traffic | physics"),
    port: int = typer.Option(50051, help="Loopback port (0 = pick a free one)."),
    policy: str = typer.Option("expert", help="Driver policy (driver service only)."),
):
    """Serve one AlpaSim-compatible gRPC service."""
    fn = _entry("cordillera.serve.launcher", "main_serve", f"cordillera serve {service}")
    fn(service=service, port=port, policy=policy)


@app.command()
def bench(name: str = typer.Argument(..., help="Benchmark script name in benchmarks/ (without .py).")):
    """Run one benchmark script (prints a table and a ratio against its baseline)."""
    import runpy

    from cordillera.config import REPO_ROOT

    path = REPO_ROOT / "benchmarks" / f"{name}.py"
    if not path.exists():
        avail = sorted(p.stem for p in (REPO_ROOT / "benchmarks").glob("*.py"))
        raise typer.BadParameter(f"unknown benchmark {name!r}; available: {', '.join(avail) or 'none'}")
    sys.argv = [str(path)]
    runpy.run_path(str(path), run_name="__main__")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory written by sim run / eval.")):
    """Write an HTML report (tables, plots, videos) for a run directory."""
    fn = _entry("cordillera.report.html", "main_report", "cordillera report")
    fn(run_dir=run_dir)


# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line per error, traceback with -v, non-zero exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _STATE["verbose"] = "-v" in argv or "--verbose" in argv
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="cordillera")
    except ClickExit as e:
        sys.exit(e.exit_code)
    except Abort:
        err_console.print("aborted")
        sys.exit(130)
    except NoArgsIsHelpError as e:
        e.show()
        sys.exit(0 if not argv else 2)
    except ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except NotAvailable as e:
        err_console.print(f"[yellow]{e}[/yellow]")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as e:  # one line unless -v
        if _STATE["verbose"]:
            err_console.print_exception()
        else:
            err_console.print(f"[red]error:[/red] {type(e).__name__}: {e}  (run with -v for the traceback)")
        sys.exit(1)
    if isinstance(rv, int) and rv:
        sys.exit(rv)
