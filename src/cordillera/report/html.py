"""The HTML report of one or more closed-loop runs (``cordillera report RUN_DIR``, ``make demo``).

One page, no external URLs (works offline), assets beside it::

    <out>.html
    <out>_assets/<scene_id>.png             per-scenario figure (report.plots.scenario_figure)
    <out>_assets/videos/<name>.mp4          only for videos outside the report's directory (copied)

Videos inside the report's directory tree are linked relatively, not copied. Open the page
directly (file://) or through a server that answers HTTP range requests: ``python -m http.server``
does not, so there the videos play but cannot be seeked. Sections: a notice
(e.g. "the nano VLA is not trained yet"), the per-policy summary table (scene score, pass rate,
at-fault collision / offroad rates, red-light and stop-sign violations, close encounters, comfort,
progress, policy time per step), the per-scenario score table, then per scenario the figure, the
decision/CoC changes per policy and one ``<video controls>`` per rollout.

Numbers come from each run's ``aggregate/results-summary.json`` (the batch runner's aggregation,
computed here if missing), family/category from ``status.json``, conditions and the map from
``rollouts/<scene>/scenario.json``, plans/CoC from ``rollout.npz|json``.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cordillera.metrics.aggregate import STATUS_JSON, aggregate_log_dir
from cordillera.sim.batch import SCENARIO_JSON, VIDEO_CAMERA, load_rollout, video_file

__all__ = ["RolloutEntry", "RunData", "load_run", "policy_summary", "SUMMARY_COLUMNS", "scenario_table",
           "write_report", "main_report"]

RESULTS_SUMMARY = Path("aggregate") / "results-summary.json"
RESULTS_TXT = Path("aggregate") / "metrics_results.txt"

# (key, header, format, tooltip) of the per-policy table; keys are policy_summary() keys
SUMMARY_COLUMNS = (
    ("n_rollouts", "rollouts", "{:d}", "rollouts run (failed ones included)"),
    ("n_failed", "failed", "{:d}", "rollouts that could not run (score 0)"),
    ("scene_score", "score", "{:.3f}", "mean AlpaSim scene score over all rollouts"),
    ("pass_rate", "pass", "{:.0%}", "rollouts without at-fault collision or offroad"),
    ("collision_at_fault", "at-fault coll.", "{:.0%}", "rate of rollouts with an at-fault collision"),
    ("offroad", "offroad", "{:.0%}", "rate of rollouts that left the drivable area"),
    ("red_light_violation", "red light", "{:.0%}", "rate of rollouts that ran a red light"),
    ("stop_sign_violation", "stop sign", "{:.0%}", "rate of rollouts that ran a stop sign"),
    ("close_encounter", "close enc.", "{:.0%}", "rate of rollouts with a close encounter (low TTC)"),
    ("comfort", "comfort", "{:.2f}", "mean comfort (fraction of the six bounds kept)"),
    ("progress", "progress", "{:.2f}", "mean progress relative to the expert reference"),
    ("policy_ms", "policy ms/step", "{:.1f}", "median policy wall time per step"),
)


@dataclass(eq=False)
class RolloutEntry:
    policy: str
    scene_id: str
    rollout_id: str
    rollout_index: int
    family: str
    category: str
    status: str  # "pass" | "fail" | "failed" (could not run)
    score: float
    failure_reason: str | None
    error: str | None
    metrics: dict
    dir: Path
    video: Path | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(eq=False)
class RunData:
    policy: str
    run_dir: Path
    run_name: str
    entries: list[RolloutEntry]
    _rollouts: dict = field(default_factory=dict)

    def rollout(self, e: RolloutEntry):
        """The stored rollout of an entry (None if it has no files)."""
        if e.rollout_id not in self._rollouts:
            stem = e.dir / "rollout"
            self._rollouts[e.rollout_id] = load_rollout(stem)[0] if stem.with_suffix(".json").exists() else None
        return self._rollouts[e.rollout_id]

    def reference(self, scene_id: str):
        stem = self.run_dir / "reference" / scene_id
        if stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
            return load_rollout(stem)[0]
        return None

    def scenario(self, scene_id: str):
        p = self.run_dir / "rollouts" / scene_id / SCENARIO_JSON
        if not p.exists():
            return None
        from cordillera.world.scenario import Scenario

        return Scenario.from_json(p.read_text())


# ----------------------------------------------------------------------------------------------
# Loading and numbers
# ----------------------------------------------------------------------------------------------
def load_run(run_dir: str | Path, policy: str | None = None) -> RunData:
    """Read a batch run directory; the policy name defaults to the one in its status files."""
    run_dir = Path(run_dir)
    if not (run_dir / "rollouts").is_dir():
        raise ValueError(f"{run_dir} is not a run directory (no rollouts/ inside)")
    summary_path = run_dir / RESULTS_SUMMARY
    if not summary_path.exists():
        aggregate_log_dir(run_dir)
    summary = json.loads(summary_path.read_text())
    entries, names, run_names = [], [], []
    for r in summary.get("rollouts", []):
        d = run_dir / "rollouts" / r["clipgt_id"] / r["rollout_id"]
        st = json.loads((d / STATUS_JSON).read_text()) if (d / STATUS_JSON).exists() else {}
        family = st.get("family") or r["clipgt_id"].rsplit("-", 1)[0]
        names.append(st.get("policy_name"))
        run_names.append(r.get("run_name"))
        vid = video_file(run_dir, r["clipgt_id"], r["rollout_id"], VIDEO_CAMERA)
        entries.append(RolloutEntry(
            policy="", scene_id=r["clipgt_id"], rollout_id=r["rollout_id"], rollout_index=int(r.get("rollout_index", 0)),
            family=family, category=st.get("category") or "?", status=r["status"], score=float(r.get("score") or 0.0),
            failure_reason=r.get("failure_reason"), error=r.get("error") or st.get("error"),
            metrics=dict(r.get("metrics") or {}), dir=d, video=vid if vid.exists() else None))
    name = policy or next((n for n in names if n), None) or run_dir.name
    for e in entries:
        e.policy = name
    entries.sort(key=lambda e: (e.scene_id, e.rollout_index, e.rollout_id))
    return RunData(name, run_dir, next((n for n in run_names if n), ""), entries)


def _nanmean(xs) -> float:
    a = np.array([np.nan if x is None else float(x) for x in xs], dtype=float)
    return float(np.nanmean(a)) if a.size and np.any(~np.isnan(a)) else float("nan")


def policy_summary(entries: list[RolloutEntry], policy_ms: list[float] | None = None) -> dict:
    """One row of the per-policy table. Score and pass rate count every rollout (a rollout that
    could not run scores 0 and fails, as in the aggregation); the rates and means are over the
    rollouts that ran (a rate = fraction of rollouts whose time-aggregated flag is non-zero)."""
    ran = [e for e in entries if e.status != "failed"]

    def rate(key):
        vals = [e.metrics.get(key) for e in ran]
        vals = [float(v != 0) for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return float(np.mean(vals)) if vals else float("nan")

    return {
        "n_rollouts": len(entries),
        "n_failed": len(entries) - len(ran),
        "scene_score": float(np.mean([e.score for e in entries])) if entries else float("nan"),
        "pass_rate": float(np.mean([e.passed for e in entries])) if entries else float("nan"),
        "collision_at_fault": rate("collision_at_fault"),
        "offroad": rate("offroad"),
        "red_light_violation": rate("red_light_violation"),
        "stop_sign_violation": rate("stop_sign_violation"),
        "close_encounter": rate("close_encounter"),
        "comfort": _nanmean([e.metrics.get("comfort") for e in ran]),
        "progress": _nanmean([e.metrics.get("progress_clipped_rel") for e in ran]),
        "policy_ms": float(np.median(policy_ms)) if policy_ms else float("nan"),
    }


def _conditions(scenario) -> str:
    if scenario is None:
        return "-"
    c = scenario.conditions
    return f"{c.time_of_day}, {c.weather}"


def scenario_table(runs: list[RunData]) -> list[dict]:
    """Rows of the per-scenario table: scene, family, category, conditions and per policy the mean
    score over its rollouts and the failure reasons (``"collision_at_fault ×2"``)."""
    scenes: dict[str, dict] = {}
    for run in runs:
        for e in run.entries:
            row = scenes.setdefault(e.scene_id, {"scene_id": e.scene_id, "family": e.family, "category": e.category,
                                                 "conditions": None, "policies": {}})
            if row["conditions"] is None:
                row["conditions"] = _conditions(run.scenario(e.scene_id))
            cell = row["policies"].setdefault(run.policy, {"scores": [], "reasons": {}})
            cell["scores"].append(e.score)
            if e.failure_reason:
                cell["reasons"][e.failure_reason] = cell["reasons"].get(e.failure_reason, 0) + 1
    out = []
    for sid in sorted(scenes):
        row = scenes[sid]
        for cell in row["policies"].values():
            cell["score"] = float(np.mean(cell["scores"]))
            cell["reason"] = ", ".join(k if n == 1 else f"{k} ×{n}" for k, n in sorted(cell["reasons"].items())) or None
        out.append(row)
    return out


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------
_CSS = """
:root { --fg:#1b1f24; --muted:#5b6470; --line:#dde1e6; --bg:#f6f7f9; --card:#ffffff; --accent:#1f6fb4;
        --good:#1e7f45; --bad:#b42318; --warn-bg:#fff4e0; --warn-line:#f0b45a; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width:1280px; margin:0 auto; padding:24px 28px 64px; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:18px; margin:34px 0 10px; padding-bottom:4px; border-bottom:2px solid var(--line); }
h3 { font-size:16px; margin:0 0 8px; }
.meta { color:var(--muted); font-size:12.5px; }
.notice { background:var(--warn-bg); border:1px solid var(--warn-line); border-left:5px solid var(--warn-line);
          padding:10px 14px; margin:16px 0; border-radius:6px; font-size:14.5px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:16px 18px; margin:16px 0; }
table { border-collapse:collapse; width:100%; font-size:13px; background:var(--card); }
th, td { padding:6px 9px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { background:#eef1f5; font-weight:600; position:sticky; top:0; }
th:first-child, td:first-child, td.l, th.l { text-align:left; }
tbody tr:nth-child(even) { background:#fafbfc; }
td.reason { color:var(--bad); font-size:12px; text-align:left; white-space:normal; }
.score { font-weight:600; font-variant-numeric:tabular-nums; }
.good { color:var(--good); } .bad { color:var(--bad); } .mid { color:#9a6700; }
.tag { display:inline-block; padding:0 7px; border-radius:10px; font-size:11.5px; background:#eef1f5; color:var(--muted); }
.tag.long_tail { background:#fde8e8; color:var(--bad); }
.scroll { overflow-x:auto; }
img.fig { width:100%; height:auto; border:1px solid var(--line); border-radius:6px; background:#fff; }
.changes { display:grid; grid-template-columns:repeat(auto-fit, minmax(360px, 1fr)); gap:10px 18px; margin-top:10px; }
.changes ol { margin:4px 0 0; padding-left:24px; font-size:12.5px; }
.changes li { margin:2px 0; }
.changes .t { color:var(--muted); font-variant-numeric:tabular-nums; }
.changes .coc { font-style:italic; color:#374151; }
.videos { display:grid; grid-template-columns:repeat(auto-fit, minmax(380px, 1fr)); gap:14px; margin-top:12px; }
figure { margin:0; }
figure video { width:100%; border-radius:6px; background:#000; display:block; }
figcaption { font-size:12.5px; color:var(--muted); margin-top:4px; }
a { color:var(--accent); }
nav.toc { font-size:13px; } nav.toc a { margin-right:12px; }
footer { margin-top:40px; color:var(--muted); font-size:12px; }
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _fmt(fmt: str, x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if "d}" in fmt:
        return fmt.format(int(x))
    return fmt.format(float(x))


def _score_class(s: float) -> str:
    if s is None or math.isnan(s):
        return ""
    return "good" if s >= 0.8 else ("mid" if s >= 0.5 else "bad")


def _href(target: Path, out_dir: Path, assets: Path, copy_subdir: str) -> str:
    """Relative link when ``target`` lies inside ``out_dir``, else a copy under ``assets``."""
    target = target.resolve()
    try:
        rel = target.relative_to(out_dir.resolve())
    except ValueError:
        dest = assets / copy_subdir / target.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or dest.stat().st_size != target.stat().st_size:
            shutil.copy2(target, dest)
        rel = dest.resolve().relative_to(out_dir.resolve())
    return rel.as_posix()


def _policy_ms(run: RunData) -> list[float]:
    vals = []
    for e in run.entries:
        if e.status == "failed":
            continue
        ro = run.rollout(e)
        if ro is None:
            continue
        vals += [float(s.timing_ms["policy"]) for s in ro.steps if "policy" in (s.timing_ms or {})]
    return vals


def _summary_html(runs: list[RunData]) -> str:
    head = "".join(f'<th title="{_e(tip)}">{_e(h)}</th>' for _, h, _, tip in SUMMARY_COLUMNS)
    rows = []
    for run in runs:
        s = policy_summary(run.entries, _policy_ms(run))
        cells = []
        for key, _, fmt, _ in SUMMARY_COLUMNS:
            cls = f' class="score {_score_class(s[key])}"' if key in ("scene_score", "pass_rate") else ""
            cells.append(f"<td{cls}>{_fmt(fmt, s[key])}</td>")
        rows.append(f"<tr><td><b>{_e(run.policy)}</b></td>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table id="summary"><thead><tr><th>policy</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _scenario_table_html(runs: list[RunData], rows: list[dict]) -> str:
    pols = [r.policy for r in runs]
    head = "".join(f'<th>{_e(p)} score</th><th class="l">{_e(p)} failure</th>' for p in pols)
    body = []
    for row in rows:
        cells = []
        for p in pols:
            c = row["policies"].get(p)
            if c is None:
                cells.append("<td>–</td><td></td>")
                continue
            cells.append(f'<td class="score {_score_class(c["score"])}">{c["score"]:.2f}</td>'
                         f'<td class="reason">{_e(c["reason"] or "")}</td>')
        body.append(f'<tr><td><a href="#{_e(row["scene_id"])}">{_e(row["scene_id"])}</a></td>'
                    f'<td class="l">{_e(row["family"])}</td>'
                    f'<td class="l"><span class="tag {_e(row["category"])}">{_e(row["category"])}</span></td>'
                    f'<td class="l">{_e(row["conditions"])}</td>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table id="scenarios"><thead><tr><th>scenario</th><th class="l">family</th>'
            f'<th class="l">category</th><th class="l">conditions</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _changes_html(policy: str, rollout) -> str:
    from cordillera.report.plots import MAX_CHANGES, decision_changes

    ch = decision_changes(rollout) if rollout is not None else []
    if not ch:
        return (f"<div><b>{_e(policy)}</b><div class='meta'>no decisions or CoC (this policy does not "
                f"explain itself)</div></div>")
    items = []
    for c in ch[:MAX_CHANGES]:
        items.append(f'<li value="{c.number}"><span class="t">{c.t_us / 1e6:5.1f} s</span> '
                     f"<b>{_e(c.longitudinal or '–')}</b> · {_e(c.lateral or '–')}"
                     f"{' — ' + _e(c.cause) if c.cause else ''}"
                     f"{'<div class=coc>CoC: ' + _e(c.coc) + '</div>' if c.coc else ''}</li>")
    more = f"<div class='meta'>… and {len(ch) - MAX_CHANGES} more changes</div>" if len(ch) > MAX_CHANGES else ""
    return f"<div><b>{_e(policy)}</b> — decision / CoC changes<ol>{''.join(items)}</ol>{more}</div>"


def _scenario_section(scene_id: str, runs: list[RunData], out_dir: Path, assets: Path) -> str:
    from cordillera.report.plots import scenario_figure

    scenario = next((s for s in (r.scenario(scene_id) for r in runs) if s is not None), None)
    reference = next((x for x in (r.reference(scene_id) for r in runs) if x is not None), None)
    shown, videos, meta_rows = {}, [], []
    for run in runs:
        es = [e for e in run.entries if e.scene_id == scene_id]
        ok = [e for e in es if e.status != "failed"]
        first = ok[0] if ok else None
        ro = run.rollout(first) if first is not None else None
        if ro is not None:
            shown[run.policy] = ro
        for e in es:
            label = (f"{e.policy} · rollout {e.rollout_index} · score {e.score:.2f}"
                     f"{' · ' + e.failure_reason if e.failure_reason else ''}")
            if e.status == "failed":
                meta_rows.append(f"<div class='meta bad'>{_e(e.policy)} rollout {e.rollout_index} could not run: "
                                 f"{_e(e.error)}</div>")
            if e.video is not None:
                src = _href(e.video, out_dir, assets, "videos")
                videos.append(f'<figure><video controls preload="metadata" playsinline src="{_e(src)}"></video>'
                              f"<figcaption>{_e(label)}</figcaption></figure>")
    fam = next((e.family for r in runs for e in r.entries if e.scene_id == scene_id), "?")
    cat = next((e.category for r in runs for e in r.entries if e.scene_id == scene_id), "?")
    parts = [f'<section class="card" id="{_e(scene_id)}"><h3>{_e(scene_id)} '
             f'<span class="tag {_e(cat)}">{_e(cat)}</span> <span class="tag">{_e(_conditions(scenario))}</span></h3>',
             *meta_rows]
    if shown:
        png = scenario_figure(assets / f"{scene_id}.png", scenario, shown, reference,
                              title=f"{scene_id} ({fam})")
        parts.append(f'<img class="fig" alt="{_e(scene_id)}: BEV paths and plans, speed, decisions" '
                     f'src="{_e(_href(png, out_dir, assets, "img"))}">')
        parts.append(f"<div class='changes'>{''.join(_changes_html(p, ro) for p, ro in shown.items())}</div>")
    if videos:
        parts.append(f"<div class='videos'>{''.join(videos)}</div>")
    parts.append("</section>")
    return "\n".join(parts)


def write_report(run_dirs: dict[str, Path], out_html: str | Path, title: str = "cordillera closed-loop report",
                 notice: str | None = None) -> Path:
    """Write the report for ``run_dirs`` (policy name -> batch run directory) to ``out_html``."""
    if not run_dirs:
        raise ValueError("write_report needs at least one run directory")
    out_html = Path(out_html)
    out_dir = out_html.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    assets = out_dir / f"{out_html.stem}_assets"
    assets.mkdir(exist_ok=True)
    runs = [load_run(d, name) for name, d in run_dirs.items()]
    rows = scenario_table(runs)
    runs_meta = []
    for run in runs:
        txt = run.run_dir / RESULTS_TXT
        link = f' · <a href="{_e(_href(txt, out_dir, assets, "results_" + run.policy))}">metrics_results.txt</a>' \
            if txt.exists() else ""
        runs_meta.append(f"<li><b>{_e(run.policy)}</b>: {_e(run.run_name)} — {len(run.entries)} rollouts"
                         f" in <code>{_e(run.run_dir)}</code>{link}</li>")
    toc = " ".join(f'<a href="#{_e(r["scene_id"])}">{_e(r["scene_id"])}</a>' for r in rows)
    sections = "\n".join(_scenario_section(r["scene_id"], runs, out_dir, assets) for r in rows)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{_e(title)}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>{_e(title)}</h1>
<div class="meta">generated {now} · closed loop at 10 Hz, AlpaSim scene score (0 on at-fault collision or offroad,
else progress vs the expert reference / 0.8, capped at 1)</div>
{f'<div class="notice" id="notice">{_e(notice)}</div>' if notice else ''}
<ul class="meta">{''.join(runs_meta)}</ul>
<h2>Summary per policy</h2>
{_summary_html(runs)}
<h2>Scores per scenario</h2>
{_scenario_table_html(runs, rows)}
<h2>Scenarios</h2>
<nav class="toc">{toc}</nav>
<p class="meta">Figures: left, the map with the expert reference path (dashed), each policy's path and its plans
every second; right, speed and the longitudinal decision over time (numbered ticks = the changes listed below).
Videos: front-wide camera with the projected plan and the CoC (or the expert's decision), BEV and per-step
metrics.</p>
{sections}
<footer>cordillera · report written by <code>cordillera.report.html.write_report</code> · open this file
directly or via a server with HTTP range support to seek in the videos</footer>
</main></body></html>
"""
    out_html.write_text(page, encoding="utf-8")
    return out_html


def main_report(run_dir: str | Path) -> Path:
    """``cordillera report RUN_DIR``: ``RUN_DIR/report.html`` for one run (its policy from the run)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    out = write_report({run.policy: run_dir}, run_dir / "report.html",
                       title=f"cordillera report — {run.policy} ({run.run_name or run_dir.name})")
    print(f"report: {out}")
    return out

