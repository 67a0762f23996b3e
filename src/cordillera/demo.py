"""``make demo`` / ``cordillera demo``: the shipped model closed loop on the demo suite, with a report.

What runs depends on what exists:

- a trained ``nano`` checkpoint in ``DemoConfig.checkpoint`` (``config.json`` + ``model.safetensors``)
  *and* the sim adapter ``cordillera.model.policy.VLAPolicy``: the VLA (cameras rendered every
  step) and the expert for comparison;
- otherwise the best that exists, said loudly on the console and in the report: the privileged
  expert planner and the constant-velocity baseline (no cameras needed, so none are rendered in
  the loop; the videos render the front-wide camera from the recorded states).

Each policy runs through ``sim.batch.run_batch`` into ``<out>/runs/<policy>/`` (AlpaSim layout,
resumable), with one MP4 per rollout when ``DemoConfig.video``; the report is ``<out>/report.html``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

from cordillera.config import REPO_ROOT, DemoConfig, load_config, preset_path

__all__ = ["NOT_TRAINED_NOTICE", "trained_checkpoint", "vla_policy_class", "demo_sim_config", "run_demo"]

NOT_TRAINED_NOTICE = "The nano VLA is not trained yet; this demo shows the expert planner and a baseline."
CHECKPOINT_FILES = ("config.json", "model.safetensors")


def trained_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint directory if it holds a saved model (``save_pretrained`` files), else None."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = REPO_ROOT / p
    return p if all((p / f).is_file() for f in CHECKPOINT_FILES) else None


def vla_policy_class():
    """``cordillera.model.policy.VLAPolicy`` if the adapter exists, else None."""
    if importlib.util.find_spec("cordillera.model.policy") is None:
        return None
    return getattr(importlib.import_module("cordillera.model.policy"), "VLAPolicy", None)


def demo_sim_config(cfg: DemoConfig, cameras: bool):
    """The runtime config from the demo preset; ``cameras=False`` renders nothing in the loop."""
    from cordillera.sim.runtime import SimConfig

    s = cfg.sim
    return SimConfig(control_period_us=s.control_period_us, physics_substep_us=s.physics_substep_us,
                     controller=s.controller, cameras=tuple(s.cameras) if cameras else (),
                     keep_images=False, policy_timeout_s=s.policy_timeout_s, force_gt_duration_us=s.force_gt_duration_us)


def _load(config) -> DemoConfig:
    if isinstance(config, DemoConfig):
        return config
    p = Path(str(config))
    if p.suffix in (".yaml", ".yml") or p.exists():
        return load_config(p, DemoConfig)
    return load_config(preset_path(str(config)), DemoConfig)


def run_demo(out: str | Path = "demo_out", config: str | Path | DemoConfig = "demo", workers: int | None = None, *,
             limit: int | None = None, duration_s: float | None = None, progress: bool = True) -> Path:
    """Run the demo and write ``<out>/report.html``; returns its path. ``limit`` keeps the first N
    scenarios of the suite and ``duration_s`` shortens them (tests, quick looks)."""
    from rich.console import Console

    from cordillera.report.html import write_report
    from cordillera.sim.batch import PolicyFactory, _err, run_batch
    from cordillera.world import generator

    console = Console(soft_wrap=True)  # paths stay on one line (copy-pasteable, greppable)
    c0 = time.perf_counter()
    cfg = _load(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    scenarios, broken = [], {}
    pairs = generator.suite(cfg.suite)
    for family, seed in pairs[:limit] if limit else pairs:
        try:
            sc = generator.make(family, seed)
        except Exception as e:  # noqa: BLE001 - a broken family must not stop the demo
            broken[f"{family}-{int(seed):05d}"] = _err(e)
            continue
        scenarios.append(generator.truncated(sc, duration_s))

    ckpt = trained_checkpoint(cfg.checkpoint)
    vla = vla_policy_class()
    if ckpt is not None and vla is not None:
        notice = None
        from cordillera.model.policy import VLAPolicyFactory

        plan = [("vla_nano", VLAPolicyFactory(str(ckpt), name="vla_nano"), True),
                ("expert", PolicyFactory("expert"), False)]
        console.print(f"[bold]demo:[/bold] the nano VLA from {ckpt} and the expert on suite {cfg.suite!r}")
    else:
        why = ("no trained checkpoint in " + str(cfg.checkpoint)) if ckpt is None else "no cordillera.model.policy.VLAPolicy"
        notice = NOT_TRAINED_NOTICE
        plan = [("expert", PolicyFactory("expert"), False),
                ("constant_velocity", PolicyFactory("constant_velocity"), False)]
        console.print(f"[bold yellow]{notice}[/bold yellow] ({why})")
        notice = f"{notice} ({why}.)"
    console.print(f"{len(scenarios)} scenarios × {len(plan)} policies, videos {'on' if cfg.video else 'off'}")

    n_workers = workers if workers is not None else cfg.workers
    if n_workers is None:
        n_workers = min(2, os.cpu_count() or 1)
    ray_started = False
    if n_workers > 1:  # one Ray session for every policy (run_batch reuses an initialised Ray)
        from cordillera.sim.batch import _ray_env_defaults

        _ray_env_defaults()
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            ray_started = True
    run_dirs = {}
    try:
        for name, factory, cameras in plan:
            res = run_batch(scenarios, factory, out / "runs" / name, workers=n_workers,
                            config=demo_sim_config(cfg, cameras), progress=progress, policy_name=name,
                            broken=broken, test_suite_id=cfg.suite, description=f"demo suite={cfg.suite} policy={name}",
                            video=cfg.video)
            if progress:
                sys.stdout.write(res.summary_text)  # already laid out (140 columns); rich would re-wrap it
            run_dirs[name] = res.out_dir
    finally:
        if ray_started:
            import ray

            ray.shutdown()

    title = "cordillera demo — closed loop on the demo suite"
    report = write_report(run_dirs, out / "report.html", title=title, notice=notice)
    console.print(f"[bold green]report:[/bold green] {report.resolve()}  ({time.perf_counter() - c0:.0f} s)")
    if notice:
        console.print(f"[yellow]{NOT_TRAINED_NOTICE}[/yellow]")
    return report
