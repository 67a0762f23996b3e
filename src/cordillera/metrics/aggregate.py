"""Aggregation, the per-rollout scene score and AlpaSim's output files (spec/alpasim.md §4.3–4.4, §5.2).

Pipeline (``aggregate``), in AlpaSim's order:

1. long table → wide (one row per rollout × timestamp; invalid values become null; a missing
   ``offroad`` column is filled with 0);
2. modifiers a–h (``apply_modifiers``): drop rows before the first ``eval_relevant``; add
   ``offroad_or_collision``, ``collision_at_fault``, ``offroad_or_collision_at_fault``,
   ``duration_frac_20s``; drop rollouts with a black front image; cut each rollout after its first
   offroad/collision row and after its first ``dist_to_gt_trajectory ≥ 4 m`` row (the event row is
   kept); then ``progress_clipped_rel`` = ``progress_rel_to_total``;
3. per rollout: each metric reduced over time with its own time aggregation (nulls ignored);
4. per (run, rollout index): mean over clips, ``n_clips``, ``avg_dist_between_incidents[_at_fault]``
   (km per incident; +inf without incidents);
5. per run: mean and ``<metric>_std`` (population std, ddof 0) over rollout indices, ``n_rollouts``.

The scene score of a rollout is 0 with failure_reason ``collision_at_fault`` (checked first) or
``offroad``, else its progress score. Rollouts that failed to run carry no metrics: they are listed
with their error, score 0 and failure_reason ``rollout_failed`` and counted in ``scene_score`` /
``pass_rate`` of the run, never breaking aggregation. Our extra metrics (red light, stop sign, close
encounter, comfort) are reported beside the score, not scored.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from cordillera.metrics.closedloop import (
    AGG_LAST,
    AGG_MAX,
    AGG_MEAN,
    AGG_MEDIAN,
    AGG_MIN,
    COL_AGGREGATION,
    COL_CLIP,
    COL_NAME,
    COL_ROLLOUT,
    COL_RUN_NAME,
    COL_RUN_UUID,
    COL_TIMESTAMPS,
    COL_VALID,
    COL_VALUES,
    METRICS_COLUMNS,
)

SCHEMA_VERSION = 1
KEYS = (COL_RUN_UUID, COL_RUN_NAME, COL_CLIP, COL_ROLLOUT)
COL_ROLLOUT_INDEX = "rollout_index"
EXTRA_METRICS = ("red_light_violation", "stop_sign_violation", "close_encounter", "comfort")  # reported, not scored
FAILED = "failed"

METRICS_PARQUET = "metrics.parquet"
COMPLETE_MARKER = "_complete"
STATUS_JSON = "status.json"
RUN_METADATA = "run_metadata.yaml"


@dataclass(frozen=True)
class AggregationConfig:
    max_dist_to_gt_trajectory_m: float = 4.0  # spec/alpasim.md §4.3 (h)
    duration_norm_us: int = 20_000_000  # duration_frac_20s
    scene_score_enabled: bool = True
    progress_saturation: float = 0.8  # spec §4.3 scene score
    min_gt_dist_m: float = 5.0  # below: progress score 1.0


@dataclass(frozen=True)
class RolloutStatus:
    """What the batch runner knows about a rollout besides its metrics."""

    clipgt_id: str
    rollout_id: str
    rollout_index: int = 0
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    run_uuid: str = ""
    run_name: str = ""
    policy_name: str = ""
    seed: int = 0
    wall_time_s: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @staticmethod
    def from_dict(d: dict) -> "RolloutStatus":
        return RolloutStatus(**{k: d[k] for k in RolloutStatus.__dataclass_fields__ if k in d})


@dataclass(eq=False)
class AggregateResult:
    per_rollout: pl.DataFrame  # one row per scored rollout: keys, rollout_index, time-aggregated metrics
    results: pl.DataFrame  # one row per run: means, <metric>_std, n_clips, n_rollouts, scores
    rollouts: list[dict]  # results-summary.json "rollouts" entries (failed ones appended)
    time_aggregations: dict[str, str]
    modifiers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: AggregationConfig = field(default_factory=AggregationConfig)


# ----------------------------------------------------------------------------------------------
# 1. long → wide
# ----------------------------------------------------------------------------------------------
def long_to_wide(long_df: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    missing = [c for c in METRICS_COLUMNS if c not in long_df.columns]
    if missing:
        raise ValueError(f"metrics table lacks columns {missing}")
    aggs: dict[str, str] = {}
    for name, agg in long_df.select(COL_NAME, COL_AGGREGATION).unique().iter_rows():
        if aggs.get(name, agg) != agg:
            raise ValueError(f"metric {name!r} has two time aggregations: {aggs[name]!r} and {agg!r}")
        aggs[name] = agg
    vals = long_df.with_columns(
        pl.when(pl.col(COL_VALID)).then(pl.col(COL_VALUES).fill_nan(None)).otherwise(None).alias(COL_VALUES)
    )
    if vals.height == 0:
        wide = pl.DataFrame(schema={**{k: pl.Utf8 for k in KEYS}, COL_TIMESTAMPS: pl.Int64})
    else:
        wide = vals.pivot(on=COL_NAME, index=[*KEYS, COL_TIMESTAMPS], values=COL_VALUES, aggregate_function="first")
    wide = wide.sort([*KEYS, COL_TIMESTAMPS])
    if "offroad" not in wide.columns:
        wide = wide.with_columns(pl.lit(0.0).alias("offroad"))
        aggs["offroad"] = AGG_MAX
    return wide, aggs


# ----------------------------------------------------------------------------------------------
# 2. modifiers a–h
# ----------------------------------------------------------------------------------------------
def _col0(wide: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name).fill_null(0.0) if name in wide.columns else pl.lit(0.0)


def apply_modifiers(wide: pl.DataFrame, aggs: dict[str, str], cfg: AggregationConfig = AggregationConfig()
                    ) -> tuple[pl.DataFrame, dict[str, str], list[str], list[str]]:
    """Modifiers a–h of spec/alpasim.md §4.3, in order. Returns (wide, aggregations, applied, warnings)."""
    aggs = dict(aggs)
    applied: list[str] = []
    warnings: list[str] = []
    keys = list(KEYS)
    n0 = wide.height
    # (a) remove pre-engagement timesteps
    if "eval_relevant" in wide.columns:
        wide = wide.filter((pl.col("eval_relevant").fill_null(0.0) > 0).cum_max().over(keys))
        applied.append(f"remove_timesteps_before_eval_relevant: kept {wide.height}/{n0} rows")
    else:
        warnings.append("no eval_relevant metric: pre-engagement timesteps were kept")
    # (b)–(d) derived incident columns
    wide = wide.with_columns(
        pl.max_horizontal(_col0(wide, "collision_any"), _col0(wide, "offroad")).alias("offroad_or_collision"),
        pl.max_horizontal(_col0(wide, "collision_front"), _col0(wide, "collision_lateral")).alias("collision_at_fault"),
    ).with_columns(
        pl.max_horizontal(pl.col("collision_at_fault"), _col0(wide, "offroad")).alias("offroad_or_collision_at_fault")
    )
    aggs.update(offroad_or_collision=AGG_MAX, collision_at_fault=AGG_MAX, offroad_or_collision_at_fault=AGG_MAX)
    applied += ["add_offroad_or_collision", "add_collision_at_fault", "add_offroad_or_collision_at_fault"]
    # (e) duration fraction of 20 s
    wide = wide.with_columns(
        ((pl.col(COL_TIMESTAMPS) - pl.col(COL_TIMESTAMPS).min().over(keys)) / cfg.duration_norm_us).alias("duration_frac_20s")
    )
    aggs["duration_frac_20s"] = AGG_LAST
    applied.append("add_duration_frac_20s")
    # (f) drop rollouts with a black camera image
    if "img_is_black" in wide.columns:
        black = wide.filter(pl.col("img_is_black").fill_null(0.0) > 0).select(keys).unique()
        if black.height:
            warnings.append(f"{black.height} rollout(s) dropped for a black front-wide image: "
                            + ", ".join(black[COL_ROLLOUT].to_list()))
            wide = wide.join(black, on=keys, how="anti")
        applied.append(f"remove_rollouts_with_black_images: {black.height} dropped")
    # (g) cut after the first offroad or collision (event row kept)
    before = wide.height
    wide = wide.filter(
        ((pl.col("offroad_or_collision") > 0).cast(pl.Int64).cum_sum().shift(1, fill_value=0).over(keys)) == 0
    )
    applied.append(f"remove_timesteps_after_offroad_or_collision: {before - wide.height} rows dropped")
    # (h) cut after the first large distance to the GT path
    if "dist_to_gt_trajectory" in wide.columns:
        before = wide.height
        far = pl.col("dist_to_gt_trajectory").fill_null(0.0) >= cfg.max_dist_to_gt_trajectory_m
        wide = wide.filter((far.cast(pl.Int64).cum_sum().shift(1, fill_value=0).over(keys)) == 0)
        applied.append(f"remove_timesteps_after_dist_to_gt_trajectory>={cfg.max_dist_to_gt_trajectory_m:g}m: "
                       f"{before - wide.height} rows dropped")
    if "progress_rel_to_total" in wide.columns:
        wide = wide.with_columns(pl.col("progress_rel_to_total").alias("progress_clipped_rel"))
        aggs["progress_clipped_rel"] = AGG_LAST
        applied.append("add_progress_clipped_rel")
    return wide, aggs, applied, warnings


# ----------------------------------------------------------------------------------------------
# 3. per rollout, scene score
# ----------------------------------------------------------------------------------------------
_REDUCERS = {
    AGG_MEAN: lambda c: pl.col(c).mean(),
    AGG_MEDIAN: lambda c: pl.col(c).median(),
    AGG_MAX: lambda c: pl.col(c).max(),
    AGG_MIN: lambda c: pl.col(c).min(),
    AGG_LAST: lambda c: pl.col(c).drop_nulls().last(),
}


def reduce_over_time(wide: pl.DataFrame, aggs: dict[str, str]) -> pl.DataFrame:
    metric_cols = [c for c in wide.columns if c not in (*KEYS, COL_TIMESTAMPS)]
    exprs = [_REDUCERS[aggs[c]](c).cast(pl.Float64).alias(c) for c in metric_cols]
    if wide.height == 0:
        return pl.DataFrame(schema={**{k: pl.Utf8 for k in KEYS}, **{c: pl.Float64 for c in metric_cols}})
    return wide.group_by(list(KEYS), maintain_order=True).agg(exprs)


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def scene_score(metrics: dict, cfg: AggregationConfig = AggregationConfig()) -> tuple[float, str | None, dict]:
    """(score, failure_reason, score_metrics) of one rollout's time-aggregated metrics."""
    gt = _num(metrics.get("gt_dist_traveled_m"))
    p = _num(metrics.get("progress_clipped_rel"))
    at_fault = _num(metrics.get("collision_at_fault"))
    offroad = _num(metrics.get("offroad"))
    if not math.isnan(gt) and gt < cfg.min_gt_dist_m:
        progress_score = 1.0
    elif math.isnan(p):
        progress_score = 0.0
    else:
        progress_score = min(min(max(p, 0.0), 1.0) / cfg.progress_saturation, 1.0)
    score_metrics = {"progress_score": progress_score, "progress_clipped_rel": p, "gt_dist_traveled_m": gt,
                     "collision_at_fault": at_fault, "offroad": offroad}
    if not math.isnan(at_fault) and at_fault != 0:
        return 0.0, "collision_at_fault", score_metrics
    if not math.isnan(offroad) and offroad != 0:
        return 0.0, "offroad", score_metrics
    return progress_score, None, score_metrics


def score_criteria(cfg: AggregationConfig = AggregationConfig()) -> list[str]:
    return [
        "collision_at_fault == 0 (collision_front or collision_lateral), else score 0 'collision_at_fault'",
        "offroad == 0, else score 0 'offroad'",
        f"progress_score = 1.0 if gt_dist_traveled_m < {cfg.min_gt_dist_m:g} "
        f"else min(clamp(progress_clipped_rel, 0, 1) / {cfg.progress_saturation:g}, 1)",
        "rollouts that failed to run score 0 with failure_reason 'rollout_failed'",
    ]


# ----------------------------------------------------------------------------------------------
# 4.–5. per rollout index and per run
# ----------------------------------------------------------------------------------------------
def _finite_or_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def aggregate(long_df: pl.DataFrame, statuses: list[RolloutStatus] | None = None,
              cfg: AggregationConfig = AggregationConfig()) -> AggregateResult:
    """The whole §4.3 pipeline over a concatenated long metrics table plus the status of every
    rollout (failed ones have no rows in ``long_df``)."""
    statuses = list(statuses or [])
    wide, aggs = long_to_wide(long_df)
    wide, aggs, applied, warnings = apply_modifiers(wide, aggs, cfg)
    per = reduce_over_time(wide, aggs)
    metric_cols = [c for c in per.columns if c not in KEYS]

    # rollout index: from the batch runner, else the rank of the rollout id inside its clip
    idx_map = {(s.clipgt_id, s.rollout_id): s.rollout_index for s in statuses}
    all_keys = long_df.select(list(KEYS)).unique().sort(list(KEYS)).iter_rows()
    seen_in_clip: dict[tuple, int] = {}
    for run_uuid, run_name, clip, rid in all_keys:
        if (clip, rid) not in idx_map:
            k = (run_uuid, clip)
            idx_map[(clip, rid)] = seen_in_clip.get(k, 0)
            seen_in_clip[k] = seen_in_clip.get(k, 0) + 1
    per = per.with_columns(
        pl.struct([COL_CLIP, COL_ROLLOUT]).map_elements(lambda s: idx_map[(s[COL_CLIP], s[COL_ROLLOUT])],
                                                        return_dtype=pl.Int64).alias(COL_ROLLOUT_INDEX)
    ) if per.height else per.with_columns(pl.lit(0, dtype=pl.Int64).alias(COL_ROLLOUT_INDEX))

    # scene score and the summary entries
    rollouts: list[dict] = []
    for row in per.iter_rows(named=True):
        metrics = {c: row[c] for c in metric_cols}
        score, reason, sm = scene_score(metrics, cfg)
        rollouts.append({
            "run_uuid": row[COL_RUN_UUID], "run_name": row[COL_RUN_NAME], "clipgt_id": row[COL_CLIP],
            "rollout_id": row[COL_ROLLOUT], "rollout_index": row[COL_ROLLOUT_INDEX],
            "metrics": metrics, "status": "pass" if reason is None else "fail", "passed": reason is None,
            "score": score, "failure_reason": reason, "score_metrics": sm,
            "extras": {k: metrics.get(k) for k in EXTRA_METRICS},
        })
    scored = {(r["clipgt_id"], r["rollout_id"]) for r in rollouts}
    present = {(c, r) for _, _, c, r in long_df.select(list(KEYS)).unique().iter_rows()}
    for clip, rid in sorted(present - scored):  # every row removed by a modifier (e.g. a black image)
        warnings.append(f"rollout {clip}/{rid} has no rows left after the modifiers; it is not scored")
    for s in statuses:
        if s.status != "ok" and (s.clipgt_id, s.rollout_id) not in scored:
            rollouts.append({
                "run_uuid": s.run_uuid, "run_name": s.run_name, "clipgt_id": s.clipgt_id, "rollout_id": s.rollout_id,
                "rollout_index": s.rollout_index, "metrics": {}, "status": FAILED, "passed": False, "score": 0.0,
                "failure_reason": "rollout_failed", "score_metrics": {}, "extras": {}, "error": s.error,
            })
            warnings.append(f"rollout {s.clipgt_id}/{s.rollout_id} failed: {s.error}")

    # per (run, rollout index): mean over clips; then per run: mean/std over indices
    by_run_rows = []
    run_ids: dict[str, str] = {}  # run uuid -> the first run name seen (a resumed run keeps its uuid)
    for r in rollouts:
        run_ids.setdefault(r["run_uuid"], r["run_name"])
    for run_uuid, run_name in sorted(run_ids.items()):
        sub = per.filter(pl.col(COL_RUN_UUID) == run_uuid) if per.height else per
        entries = [r for r in rollouts if r["run_uuid"] == run_uuid]
        out: dict = {COL_RUN_UUID: run_uuid, COL_RUN_NAME: run_name}
        if sub.height:
            by_idx = sub.group_by(COL_ROLLOUT_INDEX, maintain_order=True).agg(
                *[pl.col(c).mean().alias(c) for c in metric_cols],
                pl.len().alias("n_clips"),
                (pl.col("dist_traveled_m").sum() / pl.col("offroad_or_collision").sum() / 1000.0)
                .alias("avg_dist_between_incidents") if "dist_traveled_m" in metric_cols else pl.lit(None).alias("avg_dist_between_incidents"),
                (pl.col("dist_traveled_m").sum() / pl.col("offroad_or_collision_at_fault").sum() / 1000.0)
                .alias("avg_dist_between_incidents_at_fault") if "dist_traveled_m" in metric_cols else pl.lit(None).alias("avg_dist_between_incidents_at_fault"),
            )
            for c in [*metric_cols, "avg_dist_between_incidents", "avg_dist_between_incidents_at_fault"]:
                x = np.asarray(by_idx[c].cast(pl.Float64).fill_null(np.nan).to_numpy(), dtype=np.float64)
                with np.errstate(invalid="ignore"):
                    out[c] = float(np.nanmean(x)) if np.any(~np.isnan(x)) else float("nan")
                    out[f"{c}_std"] = float(np.nanstd(x)) if np.any(~np.isnan(x)) else float("nan")
            out["n_clips"] = int(by_idx["n_clips"].max())
            out["n_rollouts"] = int(by_idx.height)
        else:
            out["n_clips"] = 0
            out["n_rollouts"] = 0
        scores = [r["score"] for r in entries]
        out["scene_score"] = float(np.mean(scores)) if scores else float("nan")
        out["pass_rate"] = float(np.mean([r["passed"] for r in entries])) if entries else float("nan")
        out["n_scored_rollouts"] = sum(1 for r in entries if r["status"] != FAILED)
        out["n_failed_rollouts"] = sum(1 for r in entries if r["status"] == FAILED)
        by_run_rows.append(out)
    aggs = {**aggs, "avg_dist_between_incidents": AGG_MEAN, "avg_dist_between_incidents_at_fault": AGG_MEAN}
    results = pl.DataFrame(by_run_rows) if by_run_rows else pl.DataFrame()
    return AggregateResult(per, results, rollouts, aggs, applied, warnings, cfg)


# ----------------------------------------------------------------------------------------------
# Output files
# ----------------------------------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(path: str | Path, df: pl.DataFrame) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.write_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rollout_dir(log_dir: str | Path, clipgt_id: str, rollout_id: str) -> Path:
    return Path(log_dir) / "rollouts" / clipgt_id / rollout_id


def write_rollout_metrics(log_dir: str | Path, frame: pl.DataFrame) -> Path:
    """Write one rollout's long table to ``rollouts/<scene_id>/<rollout_id>/metrics.parquet``."""
    if tuple(frame.columns) != METRICS_COLUMNS:
        raise ValueError(f"metrics frame columns must be {METRICS_COLUMNS}, got {tuple(frame.columns)}")
    clips = frame[COL_CLIP].unique().to_list()
    rids = frame[COL_ROLLOUT].unique().to_list()
    if len(clips) != 1 or len(rids) != 1:
        raise ValueError(f"one rollout per metrics file, got clips {clips} and rollouts {rids}")
    path = rollout_dir(log_dir, clips[0], rids[0]) / METRICS_PARQUET
    atomic_write_parquet(path, frame)
    return path


def new_run_identity() -> tuple[str, str]:
    run_uuid = str(uuid.uuid4())
    return run_uuid, f"LR-{run_uuid}"


def write_run_metadata(log_dir: str | Path, run_uuid: str, run_name: str, description: str = "",
                       test_suite_id: str | None = None, run_args: list[str] | None = None) -> Path:
    """``run_metadata.yaml`` with the keys the AlpaSim wizard writes (spec/alpasim.md §5.2)."""
    log_dir = Path(log_dir)
    meta = {
        "run_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_name": run_name,
        "run_uuid": run_uuid,
        "slurm_job_id": None,
        "run_user": _user(),
        "run_dir": str(log_dir.resolve()),
        "run_args": list(run_args or []),
        "submitter": "cordillera",
        "description": description,
        "test_suite_id": test_suite_id,
    }
    path = log_dir / RUN_METADATA
    atomic_write_text(path, yaml.safe_dump(meta, sort_keys=False))
    return path


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def read_run_metadata(log_dir: str | Path) -> dict | None:
    path = Path(log_dir) / RUN_METADATA
    if not path.exists():
        return None
    return yaml.safe_load(path.read_text())


def _fmt(mean, std) -> str:
    def f(x):
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "nan"
        return "inf" if math.isinf(x) else f"{x:.2f}"

    return f"{f(mean)} ± {f(std)}"


def results_text(result: AggregateResult, width: int = 100) -> str:
    """The rich text of ``metrics_results.txt``: Warnings, Modifiers applied, Results per run."""
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=width, file=open(os.devnull, "w"), color_system=None)
    console.print("[bold]Warnings[/bold]")
    for w in result.warnings or ["(none)"]:
        console.print(f"  - {w}", markup=False)
    console.print("[bold]Modifiers applied[/bold]")
    for m in result.modifiers:
        console.print(f"  - {m}", markup=False)
    console.print("[bold]Results[/bold]")
    for row in result.results.iter_rows(named=True) if result.results.height else []:
        n_clips, n_roll = row.get("n_clips", 0), row.get("n_rollouts", 0)
        table = Table(title=f"{row[COL_RUN_NAME]}", caption=f"n_clips: {n_clips}, n_rollouts/clip: {n_roll}")
        table.add_column("Metric Name")
        table.add_column("Metric Value")
        table.add_column("Time Aggregation")
        names = sorted(k for k in row if k in result.time_aggregations and not k.endswith("_std"))
        for k in names:
            table.add_row(k, _fmt(row.get(k), row.get(f"{k}_std")), result.time_aggregations[k])
        table.add_row("scene_score", _fmt(row.get("scene_score"), None).replace(" ± nan", ""), "-")
        table.add_row("pass_rate", _fmt(row.get("pass_rate"), None).replace(" ± nan", ""), "-")
        table.add_row("n_failed_rollouts", str(row.get("n_failed_rollouts", 0)), "-")
        console.print(table)
    return console.export_text()


def _json_clean(x):
    if isinstance(x, dict):
        return {k: _json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return _finite_or_none(float(x))
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def results_summary(result: AggregateResult) -> dict:
    """The ``results-summary.json`` document (schema_version 1; non-finite numbers become null)."""
    return _json_clean({
        "schema_version": SCHEMA_VERSION,
        "scene_score_enabled": result.config.scene_score_enabled,
        "rollouts": result.rollouts,
        "metrics_results": result.results.to_dicts() if result.results.height else [],
        "score_criteria": score_criteria(result.config),
    })


def write_aggregate(log_dir: str | Path, long_df: pl.DataFrame, result: AggregateResult) -> dict[str, Path]:
    agg = Path(log_dir) / "aggregate"
    paths = {
        "metrics_unprocessed": agg / "metrics_unprocessed.parquet",
        "metrics_results": agg / "metrics_results.parquet",
        "metrics_results_txt": agg / "metrics_results.txt",
        "results_summary": agg / "results-summary.json",
    }
    atomic_write_parquet(paths["metrics_unprocessed"], long_df)
    atomic_write_parquet(paths["metrics_results"], result.results)
    atomic_write_text(paths["metrics_results_txt"], results_text(result))
    atomic_write_text(paths["results_summary"], json.dumps(results_summary(result), indent=1))
    return paths


def read_log_dir(log_dir: str | Path) -> tuple[pl.DataFrame, list[RolloutStatus]]:
    """Concatenate every ``rollouts/*/*/metrics.parquet`` and read every ``status.json``."""
    root = Path(log_dir) / "rollouts"
    frames, statuses = [], []
    for d in sorted(p for p in root.glob("*/*") if p.is_dir()):
        st = d / STATUS_JSON
        if st.exists():
            statuses.append(RolloutStatus.from_dict(json.loads(st.read_text())))
        m = d / METRICS_PARQUET
        if m.exists():
            frames.append(pl.read_parquet(m))
    if frames:
        long_df = pl.concat(frames, how="vertical")
    else:
        long_df = pl.DataFrame(schema={COL_NAME: pl.Utf8, COL_TIMESTAMPS: pl.Int64, COL_VALUES: pl.Float64,
                                       COL_VALID: pl.Boolean, COL_AGGREGATION: pl.Utf8, COL_CLIP: pl.Utf8,
                                       COL_ROLLOUT: pl.Utf8, COL_RUN_UUID: pl.Utf8, COL_RUN_NAME: pl.Utf8})
    return long_df, statuses


def aggregate_log_dir(log_dir: str | Path, cfg: AggregationConfig = AggregationConfig()) -> AggregateResult:
    """Read a log dir, aggregate, write ``aggregate/*``; returns the result."""
    long_df, statuses = read_log_dir(log_dir)
    result = aggregate(long_df, statuses, cfg)
    write_aggregate(log_dir, long_df, result)
    return result


__all__ = [
    "SCHEMA_VERSION", "EXTRA_METRICS", "METRICS_PARQUET", "COMPLETE_MARKER", "STATUS_JSON", "RUN_METADATA",
    "AggregationConfig", "RolloutStatus", "AggregateResult", "long_to_wide", "apply_modifiers", "reduce_over_time",
    "scene_score", "score_criteria", "aggregate", "atomic_write_bytes", "atomic_write_text", "atomic_write_parquet",
    "rollout_dir", "write_rollout_metrics", "new_run_identity", "write_run_metadata", "read_run_metadata",
    "results_text", "results_summary", "write_aggregate", "read_log_dir", "aggregate_log_dir",
]
