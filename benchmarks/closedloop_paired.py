"""Paired closed-loop comparison of two `cordillera eval closed-loop` runs (e.g. two checkpoints).

Reads each run's `comparison.json`, pairs rollouts on (scenario, rollout seed) present in both and
prints, per metric, A, B and B − A with the 95 % t interval clustered by scenario
(`train.evaluate.paired_difference`), then the per-family scene score. Runs made at different times
pair as long as they share scenarios and seeds (e.g. a 1-seed run against seed 0 of a 3-seed run).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/closedloop_paired.py RUN_A RUN_B
       [--policy vla] [--policy-b NAME] [--seeds 0,1] [--families merge_on_ramp,pass_blocked]
RUN_*: an `--out` directory of `eval closed-loop` or its comparison.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cordillera.train.evaluate import paired_difference

METRICS = ("score", "collision_at_fault", "offroad", "close_encounter", "coc_consistent_rate")


def load_rollouts(run: str | Path, policy: str) -> list[dict]:
    p = Path(run)
    p = p / "comparison.json" if p.is_dir() else p
    data = json.loads(p.read_text())
    if policy not in data["rollouts"]:
        raise SystemExit(f"{p}: no policy {policy!r} (has {sorted(data['rollouts'])})")
    return [r for r in data["rollouts"][policy] if not r.get("failed")]


def keyed(rollouts: list[dict], metric: str, seeds=None, families=None) -> dict:
    out = {}
    for r in rollouts:
        if seeds is not None and r["seed"] not in seeds:
            continue
        if families is not None and r["scenario"].rsplit("-", 1)[0] not in families:
            continue
        v = r.get(metric)
        out[(r["scenario"], r["seed"])] = float("nan") if v is None else float(v)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--policy", default="vla", help="policy name in run A (and B unless --policy-b)")
    ap.add_argument("--policy-b", default=None)
    ap.add_argument("--seeds", default=None, help="comma-separated rollout seeds to keep")
    ap.add_argument("--families", default=None, help="comma-separated scenario families to keep")
    a = ap.parse_args(argv)
    seeds = None if a.seeds is None else {int(s) for s in a.seeds.split(",")}
    fams = None if a.families is None else set(a.families.split(","))
    ra, rb = load_rollouts(a.run_a, a.policy), load_rollouts(a.run_b, a.policy_b or a.policy)
    print(f"A = {a.run_a} ({a.policy}), B = {a.run_b} ({a.policy_b or a.policy})")
    print("| metric | pairs | A | B | B − A [95 % CI, clustered by scenario] | relative [bootstrap] |")
    print("|---|---:|---:|---:|---|---|")
    for m in METRICS:
        ka, kb = keyed(ra, m, seeds, fams), keyed(rb, m, seeds, fams)
        both = [k for k in ka if k in kb and np.isfinite(ka[k]) and np.isfinite(kb[k])]
        if not both:
            continue
        d = paired_difference(kb, ka)
        rel = d["relative"]
        print(f"| {m} | {d['n_pairs']} | {np.mean([ka[k] for k in both]):.3f} | {np.mean([kb[k] for k in both]):.3f} | "
              f"{d['diff']['mean']:+.3f} [{d['diff']['lo']:+.3f}, {d['diff']['hi']:+.3f}] | "
              f"{rel['mean']:+.0%} [{rel['lo']:+.0%}, {rel['hi']:+.0%}] |")
    ka, kb = keyed(ra, "score", seeds, fams), keyed(rb, "score", seeds, fams)
    fam_scores: dict[str, list[tuple[float, float]]] = {}
    for k in ka:
        if k in kb:
            fam_scores.setdefault(k[0].rsplit("-", 1)[0], []).append((ka[k], kb[k]))
    print("per family, score A → B: " + ", ".join(
        f"{f} {np.mean([p[0] for p in v]):.2f} → {np.mean([p[1] for p in v]):.2f}" for f, v in sorted(fam_scores.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
