"""report.html: the tables' numbers on a hand-made run directory, decision changes, and the page in
headless chromium (no console errors, images decoded, the H.264 video loads)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cordillera.report.html import load_run, policy_summary, scenario_table, write_report
from cordillera.report.plots import decision_changes
from cordillera.sim.batch import save_rollout
from cordillera.sim.types import Plan, Rollout, StepRecord
from cordillera.world.scenario import AgentState

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


# ----------------------------------------------------------------------------------------------
# a hand-made run directory
# ----------------------------------------------------------------------------------------------
def _entry(clip, rid, idx, status, score, reason, metrics, error=None):
    return {"run_uuid": "u1", "run_name": "LR-test", "clipgt_id": clip, "rollout_id": rid, "rollout_index": idx,
            "metrics": metrics, "status": status, "passed": status == "pass", "score": score,
            "failure_reason": reason, "score_metrics": {}, "extras": {}, **({"error": error} if error else {})}


def _hand_run(root: Path, policy: str = "mypolicy") -> Path:
    """4 rollouts: A pass (score 1.0), B at-fault collision, C offroad, D could not run.
    A and B are on scene-a (nominal), C and D on scene-b (long_tail)."""
    m = lambda **kw: {"collision_at_fault": 0.0, "offroad": 0.0, "red_light_violation": 0.0,  # noqa: E731
                      "stop_sign_violation": 0.0, "close_encounter": 0.0, "comfort": 1.0,
                      "progress_clipped_rel": 1.0, **kw}
    rollouts = [
        _entry("scene-a", "ra", 0, "pass", 1.0, None, m(red_light_violation=1.0, comfort=1.0, progress_clipped_rel=0.9)),
        _entry("scene-a", "rb", 1, "fail", 0.0, "collision_at_fault",
               m(collision_at_fault=1.0, close_encounter=1.0, comfort=0.5, progress_clipped_rel=0.4)),
        _entry("scene-b", "rc", 0, "fail", 0.0, "offroad", m(offroad=1.0, comfort=0.0, progress_clipped_rel=0.2)),
        _entry("scene-b", "rd", 1, "failed", 0.0, "rollout_failed", {}, error="policy raised ValueError: boom"),
    ]
    (root / "aggregate").mkdir(parents=True)
    (root / "aggregate" / "results-summary.json").write_text(json.dumps({"schema_version": 1, "rollouts": rollouts}))
    for r in rollouts:
        d = root / "rollouts" / r["clipgt_id"] / r["rollout_id"]
        d.mkdir(parents=True)
        cat = "nominal" if r["clipgt_id"] == "scene-a" else "long_tail"
        (d / "status.json").write_text(json.dumps({"policy_name": policy, "family": r["clipgt_id"].split("-")[0],
                                                   "category": cat, "status": "ok"}))
    # one stored rollout with plans and decisions, for the figure and the change list
    steps = []
    for i in range(30):
        lon = "Resume Speed" if i < 10 else ("Stop" if i < 20 else "Resume Speed")
        t = i * 100_000
        plan = Plan(t_us=t + 100_000 * np.arange(21, dtype=np.int64),
                    xyz_rig=np.column_stack([np.arange(21) * 1.0, np.zeros(21), np.zeros(21)]), yaw_rig=np.zeros(21),
                    decisions={"longitudinal": lon, "lateral": "Keep Lane",
                               "signal": {"id": "L1", "state": "red" if lon == "Stop" else "green"}},
                    timing_ms={"plan": 1.0})
        steps.append(StepRecord(t_us=t, ego=AgentState(x_m=float(i), y_m=0.0, yaw_rad=0.0, speed_mps=10.0 - 0.2 * i),
                                actors={}, signals={}, plan=plan, timing_ms={"policy": float(i % 5)}))
    save_rollout(root / "rollouts" / "scene-a" / "ra" / "rollout", Rollout("scene-a", "ra", policy, 0, steps,
                                                                           force_gt_end_us=500_000))
    return root


def test_policy_summary_numbers(tmp_path):
    run = load_run(_hand_run(tmp_path / "run"))
    assert run.policy == "mypolicy" and run.run_name == "LR-test" and len(run.entries) == 4
    s = policy_summary(run.entries, policy_ms=[1.0, 2.0, 7.0])
    assert s["n_rollouts"] == 4 and s["n_failed"] == 1
    assert s["scene_score"] == pytest.approx(0.25)  # (1 + 0 + 0 + 0) / 4: the failed one counts as 0
    assert s["pass_rate"] == pytest.approx(0.25)
    assert s["collision_at_fault"] == pytest.approx(1 / 3)  # rates over the 3 rollouts that ran
    assert s["offroad"] == pytest.approx(1 / 3)
    assert s["red_light_violation"] == pytest.approx(1 / 3)
    assert s["stop_sign_violation"] == 0.0
    assert s["close_encounter"] == pytest.approx(1 / 3)
    assert s["comfort"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert s["progress"] == pytest.approx(0.5)  # (0.9 + 0.4 + 0.2) / 3
    assert s["policy_ms"] == 2.0


def test_scenario_table_numbers(tmp_path):
    runs = [load_run(_hand_run(tmp_path / "a"), "p1"), load_run(_hand_run(tmp_path / "b"), "p2")]
    rows = scenario_table(runs)
    assert [r["scene_id"] for r in rows] == ["scene-a", "scene-b"]
    a, b = rows
    assert (a["family"], a["category"], a["conditions"]) == ("scene", "nominal", "-")
    assert b["category"] == "long_tail"
    assert a["policies"]["p1"]["score"] == pytest.approx(0.5) and a["policies"]["p2"]["reason"] == "collision_at_fault"
    assert b["policies"]["p1"]["score"] == 0.0
    assert b["policies"]["p1"]["reason"] == "offroad, rollout_failed"


def test_decision_changes_of_stored_rollout(tmp_path):
    run = load_run(_hand_run(tmp_path / "run"))
    ro = run.rollout(run.entries[0])
    ch = decision_changes(ro)
    assert [(c.number, c.t_us, c.longitudinal) for c in ch] == [(1, 0, "Resume Speed"), (2, 1_000_000, "Stop"),
                                                                 (3, 2_000_000, "Resume Speed")]
    assert ch[1].cause == "light L1 red" and ch[1].coc is None


def test_report_html_content_and_assets(tmp_path):
    run_dir = _hand_run(tmp_path / "runs" / "mine")
    out = write_report({"mine": run_dir}, tmp_path / "report.html", title="T <&>", notice="not trained yet")
    page = out.read_text()
    assert "<title>T &lt;&amp;&gt;</title>" in page and 'id="notice">not trained yet<' in page
    summary = re.search(r'<table id="summary">.*?</table>', page, re.S).group(0)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", summary)
    assert cells[:5] == ["4", "1", "0.250", "25%", "33%"]
    assert "http://" not in page and "https://" not in page  # offline: no CDN, no external URL
    srcs = re.findall(r'src="([^"]+)"', page)
    assert srcs == ["report_assets/scene-a.png"]  # one figure (scene-b has no stored rollout), no video
    assert (tmp_path / srcs[0]).stat().st_size > 10_000
    assert "policy raised ValueError: boom" in page


# ----------------------------------------------------------------------------------------------
# the real thing in headless chromium
# ----------------------------------------------------------------------------------------------
def _need_chromium():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs the Debian chromium package)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); CI requires it")
    pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    """Expert + constant velocity on one shortened scenario, with videos, then the report."""
    from cordillera.sim.batch import PolicyFactory, run_batch
    from cordillera.world import generator

    root = tmp_path_factory.mktemp("report")
    sc = replace(generator.make("traffic_light", 3000), duration_us=3_000_000)
    dirs = {}
    for name in ("expert", "constant_velocity"):
        res = run_batch([sc], PolicyFactory(name), root / "runs" / name, workers=1, progress=False, video=True)
        assert res.n_failed == 0, [o.error for o in res.outcomes]
        dirs[name] = res.out_dir
    return write_report(dirs, root / "report.html", title="test report", notice="the nano VLA is not trained yet")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_report_in_headless_chromium(real_report):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    page_html = real_report.read_text()
    videos = re.findall(r'<video[^>]*src="([^"]+)"', page_html)
    assert len(videos) == 2 and all((real_report.parent / v).exists() for v in videos)
    assert all(v.startswith("runs/") for v in videos)  # inside the report's tree: linked, not copied

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(real_report.parent)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                messages, failed = [], []
                page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
                page.on("requestfailed", lambda r: failed.append(r.url))
                page.goto(f"http://127.0.0.1:{srv.server_address[1]}/{real_report.name}")
                page.wait_for_load_state("networkidle")
                state = page.evaluate("""() => new Promise(resolve => {
                    const v = document.querySelector('video');
                    const done = (how) => resolve({how, w: v.videoWidth, h: v.videoHeight, d: v.duration,
                                                   ready: v.readyState});
                    if (v.readyState >= 2) return done('already');
                    v.addEventListener('loadeddata', () => done('loadeddata'));
                    v.addEventListener('error', () => done('error ' + (v.error && v.error.code)));
                    v.preload = 'auto'; v.load();
                    setTimeout(() => done('timeout'), 20000);
                })""")
                imgs = page.evaluate("() => [...document.images].map(i => [i.complete, i.naturalWidth])")
                notice = page.inner_text("#notice")
                rows = page.eval_on_selector_all("#summary tbody tr", "rs => rs.map(r => r.cells[0].innerText)")
            finally:
                browser.close()
    finally:
        srv.shutdown()
    errors = [m for m in messages if m.startswith(("error", "pageerror", "warning"))]
    assert errors == [] and failed == [], (errors, failed)
    assert state["how"] in ("already", "loadeddata") and state["ready"] >= 2, state
    assert (state["w"], state["h"]) == (576, 608) and state["d"] == pytest.approx(3.1, abs=0.15)
    assert imgs and all(ok and w == 1200 for ok, w in imgs), imgs
    assert "not trained yet" in notice
    assert rows == ["expert", "constant_velocity"]


def test_main_report_writes_into_the_run_dir(tmp_path, capsys):
    from cordillera.report.html import main_report

    run_dir = _hand_run(tmp_path / "run")
    out = main_report(run_dir)
    assert out == run_dir / "report.html" and out.exists()
    assert str(out) in capsys.readouterr().out
    page = out.read_text()
    assert "mypolicy" in page and 'href="aggregate/' not in page  # no metrics_results.txt in the hand-made run
    assert (run_dir / "report_assets" / "scene-a.png").exists()
