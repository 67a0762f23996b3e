"""``cordillera label DIR`` and ``cordillera label check DIR``.

``main_check`` works on a reasoning parquet directly (a file, or a directory holding
``reasoning/ood_reasoning.parquet`` or ``*.parquet``): decision distribution, phrasing diversity
and text-level leakage checks, printed as rich tables and returned as a dict. ``main_label`` needs
the PhysicalAI-AV layout reader (``cordillera.data``), which a later task builds; until then it
raises ``NotImplementedError``. The labelling core itself works on in-memory rollouts
(``labeler.label_rollout``).
"""

from __future__ import annotations

import importlib
import re
from collections import Counter, defaultdict
from pathlib import Path

from cordillera.reasoning.labeler import EVENT_COT, EVENT_T, read_reasoning_parquet
from cordillera.reasoning.schema import LATERAL, LONGITUDINAL, OBJECT_WORDS, parse

REASONING_FILE = Path("reasoning") / "ood_reasoning.parquet"  # spec §6.1 item 5
# Hedging / future words the released prompt bans (spec §6.3, §6.4): they describe what has not
# happened at t0.
LEAKAGE_WORDS = ("potential", "potentially", "possible", "possibly", "likely", "probably", "might", "will", "then",
                 "later", "eventually", "afterwards")
MIN_T0_US = 1_600_000  # spec §1.4 event filter
MAX_T0_US = 20_000_000 - 6_400_000  # spec §1.4 recipes: 20 s clips, 6.4 s future


def find_reasoning_parquet(path: Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    if (path / REASONING_FILE).is_file():
        return path / REASONING_FILE
    cands = sorted(path.glob("*.parquet")) + sorted((path / "reasoning").glob("*.parquet"))
    if not cands:
        raise FileNotFoundError(f"{path}: no reasoning parquet ({REASONING_FILE} or *.parquet)")
    return cands[0]


def _skeleton(text: str) -> str:
    """The sentence with objects, colours, directions and numbers masked: its phrasing."""
    t = text.lower()
    for words in OBJECT_WORDS.values():
        for w in sorted(words, key=len, reverse=True):
            t = re.sub(rf"\b{re.escape(w)}\b", "<obj>", t)
    t = re.sub(r"\b(red|yellow|green|amber|left|right)\b", "<x>", t)
    return re.sub(r"\d+(\.\d+)?", "<n>", t)


def check_events(events_by_clip: dict[str, list[dict]]) -> dict:
    """Statistics of a reasoning table: decisions, phrasing diversity, leakage flags."""
    lon_c: Counter = Counter()
    lat_c: Counter = Counter()
    texts = defaultdict(set)
    skels = defaultdict(set)
    flagged = []
    out_of_window = []
    n = 0
    for clip, evs in events_by_clip.items():
        for e in evs:
            n += 1
            cot, t = e[EVENT_COT], int(e[EVENT_T])
            r = parse(cot)
            lon = r.longitudinal or "(none)"
            lat = (r.lateral or "(none)") + (f" {r.lateral_direction}" if r.lateral_direction else "")
            lon_c[lon] += 1
            lat_c[lat] += 1
            texts[lon].add(cot.strip())
            skels[lon].add(_skeleton(cot))
            hits = [w for w in LEAKAGE_WORDS if re.search(rf"\b{w}\b", cot.lower())]
            if hits:
                flagged.append((clip, t, ",".join(hits), cot))
            if not MIN_T0_US <= t <= MAX_T0_US:
                out_of_window.append((clip, t))
    diversity = {k: {"labels": lon_c[k], "distinct": len(texts[k]), "phrasings": len(skels[k])} for k in lon_c}
    return {
        "clips": len(events_by_clip),
        "events": n,
        "longitudinal": dict(lon_c),
        "lateral": dict(lat_c),
        "diversity": diversity,
        "leakage_flags": flagged,
        "t0_out_of_window": out_of_window,
        "unparsed": lon_c.get("(none)", 0),
    }


def main_check(path: Path) -> dict:
    from rich.console import Console
    from rich.table import Table

    f = find_reasoning_parquet(Path(path))
    stats = check_events(read_reasoning_parquet(f))
    con = Console()
    con.print(f"[bold]{f}[/bold]: {stats['clips']} clips, {stats['events']} events")
    t = Table(title="Longitudinal decisions and phrasing diversity")
    for c in ("decision", "labels", "share", "distinct sentences", "distinct phrasings"):
        t.add_column(c, justify="right" if c != "decision" else "left")
    order = [k for k in (*LONGITUDINAL, "(none)") if k in stats["longitudinal"]]
    for k in order:
        d = stats["diversity"][k]
        t.add_row(k, str(d["labels"]), f"{d['labels'] / max(stats['events'], 1):.1%}", str(d["distinct"]),
                  str(d["phrasings"]))
    con.print(t)
    t2 = Table(title="Lateral decisions")
    t2.add_column("decision")
    t2.add_column("labels", justify="right")
    lat_order = sorted(stats["lateral"], key=lambda k: (next((i for i, x in enumerate(LATERAL) if k.startswith(x)), 99), k))
    for k in lat_order:
        t2.add_row(k, str(stats["lateral"][k]))
    con.print(t2)
    t3 = Table(title="Leakage checks")
    t3.add_column("check")
    t3.add_column("result", justify="right")
    t3.add_row("hedging / future words (potential, likely, then, will, ...)", str(len(stats["leakage_flags"])))
    t3.add_row(f"t0 outside [{MIN_T0_US / 1e6:.1f} s, {MAX_T0_US / 1e6:.1f} s]", str(len(stats["t0_out_of_window"])))
    t3.add_row("no recognisable longitudinal decision", str(stats["unparsed"]))
    con.print(t3)
    for clip, ts, words, cot in stats["leakage_flags"][:10]:
        con.print(f"  [yellow]{clip} @ {ts / 1e6:.1f} s[/yellow] ({words}): {cot}")
    return stats


def main_label(path: Path) -> None:
    try:
        importlib.import_module("cordillera.data.reader")
    except ModuleNotFoundError:
        raise NotImplementedError("needs the data layout (cordillera.data.reader is not built yet); "
                                  "label in memory with cordillera.reasoning.labeler.label_rollout") from None
    raise NotImplementedError("needs the data layout: wiring label_rollout to the PhysicalAI-AV reader is pending")


__all__ = ["find_reasoning_parquet", "check_events", "main_check", "main_label", "LEAKAGE_WORDS"]
