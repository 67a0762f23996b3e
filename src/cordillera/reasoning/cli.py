"""``cordillera label DIR`` and ``cordillera label check DIR``.

``main_check`` works on a reasoning parquet directly (a file, or a directory holding
``reasoning/ood_reasoning.parquet`` or ``*.parquet``): decision distribution, phrasing diversity
and text-level leakage checks, printed as rich tables and returned as a dict. ``main_label``
(``label_dataset``) labels a PhysicalAI-AV dataset directory of cordillera-generated clips by
re-driving each clip's scenario (``cordillera label --help`` says what it uses and why).
"""

from __future__ import annotations

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


FLUSH_EVERY_CLIPS = 25  # rewrite the parquet this often: an interrupted run resumes from there


def label_clip(reader, clip_id: str, seed: int | None = None, every_us: int | None = None,
               start_us: int | None = None) -> list[dict]:  # fmt: skip
    """CoC events ``[{event_start_timestamp, cot}]`` of one cordillera-generated clip, exactly as the
    generator labels it (see ``cordillera label --help``); with ``every_us`` also on a t0 grid from
    ``start_us`` (dense labels, as `cordillera train nano` writes). ``seed``: rollout/phrasing seed if
    the metadata has none (default 0, the generator's). Raises ``ValueError`` naming the clip and what
    is missing."""
    from cordillera.data import keys as K
    from cordillera.data import layout as L
    from cordillera.data.generate import (MAX_REDRIVE_DRIFT_M, ROLLOUT_SEED, clip_ego_xy, clip_handover,
                                          clip_perturbation, label_events, redrive, redrive_drift_m)

    meta = reader.metadata(clip_id)
    missing = [k for k in (K.FAMILY, K.SEED) if meta.get(k) is None or (isinstance(meta[k], float) and meta[k] != meta[k])]
    if missing:
        raise ValueError(f"clip {clip_id}: {L.DATA_COLLECTION} has no {' / '.join(missing)} for it (not a "
                         "cordillera-generated clip; the rule labeler re-drives the scenario from them)")
    if clip_handover(meta) is not None:
        raise ValueError(f"clip {clip_id}: a learner drove it before the expert took over "
                         f"({meta.get('handover')}); it cannot be re-driven, its labels are the generator's")
    ego_xy = clip_ego_xy(reader, clip_id)  # the reader's error names the clip and the missing file
    rseed = meta.get(ROLLOUT_SEED)
    if rseed is None or rseed != rseed:  # clips generated before the column existed (or NaN)
        rseed = 0 if seed is None else seed
    duration_us = int(meta.get(K.DURATION_US) or reader.end_timestamp(clip_id))
    pert = clip_perturbation(meta)  # a clip driven with a DART disturbance is re-driven with it
    scenario, rollout = redrive(str(meta[K.FAMILY]), int(meta[K.SEED]), duration_us, int(rseed), pert)
    if rollout.failed:
        raise ValueError(f"clip {clip_id}: the re-driven expert rollout failed ({rollout.error})")
    drift_m = redrive_drift_m(rollout, ego_xy)
    if drift_m > MAX_REDRIVE_DRIFT_M:
        raise ValueError(f"clip {clip_id}: the re-driven expert rollout is {drift_m:.1f} m off the stored egomotion "
                         "(scenario or expert changed since the clip was generated?)")
    events, _, _ = label_events(scenario, rollout, int(rseed), pert, every_us=every_us, start_us=start_us)
    return events


_WORKER_READER = None  # (root, PaiReader): one reader per labelling process (``_label_job``)


def _label_job(args) -> tuple[str, list[dict] | None, str]:
    """(clip, events or None, error) for one clip, in a worker process of ``label_dataset``."""
    global _WORKER_READER
    root, cid, seed, every_us, start_us = args
    from cordillera.data.reader import PaiReader

    if _WORKER_READER is None or _WORKER_READER[0] != root:
        _close_worker_reader()
        _WORKER_READER = (root, PaiReader(root))
    try:
        return cid, label_clip(_WORKER_READER[1], cid, seed, every_us, start_us), ""
    except ValueError as e:  # a clip that cannot be labelled keeps its events; the rest go on
        return cid, None, str(e).splitlines()[0]


def label_dataset(path: Path, overwrite: bool = False, seed: int | None = None, progress: bool = True,
                  every_us: int | None = None, start_us: int | None = None, workers: int = 1) -> dict:  # fmt: skip
    """Label every clip of the dataset at ``path`` (``label_clip``; ``every_us`` / ``start_us``: a dense
    t0 grid too) in ``workers`` processes and write the labels where the dataset keeps them
    (``data.writer.replace_events``: reasoning parquet, ``clip_index.event_t0s``), every
    ``FLUSH_EVERY_CLIPS`` clips. On-policy (handover) clips keep the labels they were generated
    with: they cannot be re-driven. Returns {"labelled": [clip], "skipped": [clip already labelled],
    "on_policy": [clip], "failed": {clip: one-line error}, "events": n}."""
    from cordillera.data.generate import ClipProgress, clip_handover
    from cordillera.data.reader import PaiReader
    from cordillera.data.writer import replace_events

    root = Path(path)
    reader = PaiReader(root)
    clips = reader.clips()
    events = {c: reader.reasoning_events(c) for c in clips}
    on_policy = {c for c in clips if clip_handover(reader.metadata(c)) is not None}
    todo = [c for c in clips if (overwrite or not events[c]) and c not in on_policy]
    reader.close()
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if every_us is not None and every_us <= 0:
        raise ValueError(f"every_us must be > 0, got {every_us}")
    labelled, failed = [], {}
    bar = ClipProgress(len(clips), len(clips) - len(todo), progress)
    jobs = [(root, cid, seed, every_us, start_us) for cid in todo]
    pool = None
    try:
        if workers > 1 and len(jobs) > 1:
            from multiprocessing import get_context

            pool = get_context("spawn").Pool(min(workers, len(jobs)))
            results = pool.imap(_label_job, jobs)
        else:
            results = map(_label_job, jobs)
        for k, (cid, evs, err) in enumerate(results):
            if evs is None:
                failed[cid] = err
                bar.advance(f"[red]{cid[:8]} failed")
            else:
                events[cid] = evs
                labelled.append(cid)
                bar.advance(f"{cid[:8]}: {len(evs)} events")
            if (k + 1) % FLUSH_EVERY_CLIPS == 0:
                replace_events(root, {c: events[c] for c in labelled})
    finally:  # also on Ctrl-C or a crash: what was labelled is kept (a rerun without --overwrite resumes)
        bar.close()
        if pool is not None:
            pool.terminate()
        _close_worker_reader()
        if labelled:  # the index's sample points and the writer's chunk records follow the new labels
            replace_events(root, {c: events[c] for c in labelled})
    return {"labelled": labelled, "skipped": [c for c in clips if c not in todo and c not in on_policy],
            "on_policy": [c for c in clips if c in on_policy], "failed": failed,
            "events": sum(len(events[c]) for c in labelled)}


def _close_worker_reader() -> None:
    global _WORKER_READER
    if _WORKER_READER is not None:
        _WORKER_READER[1].close()
        _WORKER_READER = None


def main_label(path: Path, overwrite: bool = False, seed: int | None = None, every_s: float | None = None,
               start_s: float | None = None, workers: int = 1) -> dict:  # fmt: skip
    """CLI entry (`cordillera label DIR`): ``label_dataset`` with a summary and one line per failure."""
    from rich.console import Console

    if start_s is not None and every_s is None:
        raise ValueError("--start sets where the --every grid begins; give --every too")
    rep = label_dataset(path, overwrite=overwrite, seed=seed, every_us=None if every_s is None else round(every_s * 1e6),
                        start_us=None if start_s is None else round(start_s * 1e6), workers=workers)
    con = Console(highlight=False)
    for cid, err in rep["failed"].items():
        con.print(f"[red]error[/red] {err}", soft_wrap=True)
    con.print(f"label {path}: {len(rep['labelled'])} clips labelled ({rep['events']} events), "
              f"{len(rep['skipped'])} already labelled (--overwrite redoes them), {len(rep['failed'])} failed"
              + (f", {len(rep['on_policy'])} on-policy clips keep their generation labels (they cannot be re-driven)"
                 if rep["on_policy"] else ""), soft_wrap=True)
    return rep


__all__ = ["find_reasoning_parquet", "check_events", "main_check", "label_clip", "label_dataset", "main_label",
           "LEAKAGE_WORDS"]
