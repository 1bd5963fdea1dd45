"""The demo of ``calroute local``: a user seeded from bundled real calendars, with the most recent
30% of each calendar held back as "unseen" events, then classified through the API.

The folder holds one ``.ics`` per calendar (file stem = calendar id), e.g. ``data/users/d1_student``.
Each file is parsed with the same importer and window as the import API (``calroute.ics``), the
events of each calendar are sorted by start, and the last 30% are held back. The other 70% are
uploaded through the ingest API (``POST /v1/users/{userId}/events``, flat form, labelled): uploading
the whole ``.ics`` through the import route would also store the held-back events, and re-encoding a
subset as iCalendar would lose the "part of a recurring series" flag of the expanded occurrences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

from .client import Client
from .template import ROOT

DEMO_USER = "d1_student"
DEMO_DIR = ROOT / "data" / "users" / DEMO_USER
HOLDOUT = 0.30
INGEST_CHUNK = 500
CLASSIFY_CHUNK = 100


@dataclass
class DemoData:
    user: str
    seen: dict[str, list]  # calendar id -> Events (labelled) to ingest
    unseen: dict[str, list]  # calendar id -> Events held back

    @property
    def n_seen(self) -> int:
        return sum(len(v) for v in self.seen.values())

    @property
    def n_unseen(self) -> int:
        return sum(len(v) for v in self.unseen.values())


def calendar_files(folder: str | Path) -> dict[str, Path]:
    """``{calendar id: path}`` for every ``*.ics`` in ``folder`` (file stem = calendar id)."""
    from calroute import ids

    out = {}
    for path in sorted(Path(folder).glob("*.ics")):
        out[ids.calendar_id(path.stem, field="file")] = path
    return out


def import_window(now: Optional[datetime] = None) -> tuple[datetime, datetime]:
    """The window the import API uses (Settings ``ics_window_days_back/forward``)."""
    from calroute.config import Settings
    from calroute.ics.reader import import_window as window

    cfg = Settings.from_env()
    return window(cfg.ics_window_days_back, cfg.ics_window_days_forward, now)


def split_holdout(events: list, fraction: float = HOLDOUT) -> tuple[list, list]:
    """Time-ordered split: the most recent ``fraction`` (at least one event when there are 2+)."""
    from calroute.schema import sort_by_start

    ordered = sort_by_start(events)
    n_unseen = int(round(len(ordered) * fraction))
    if len(ordered) >= 2:
        n_unseen = max(1, n_unseen)
    cut = len(ordered) - n_unseen
    return ordered[:cut], ordered[cut:]


def load_demo(folder: str | Path = DEMO_DIR, user: Optional[str] = None, *, fraction: float = HOLDOUT,
              now: Optional[datetime] = None, max_seen_per_calendar: Optional[int] = None) -> DemoData:
    """Parse the folder's calendars and split each into seen (oldest 70%) and unseen (newest 30%).

    ``max_seen_per_calendar`` keeps only the most recent N seen events of each calendar (faster
    training for tests); the unseen events are the same either way.
    """
    from calroute.ics.reader import parse_ics

    folder = Path(folder)
    seen, unseen = {}, {}
    window = import_window(now)
    for cal, path in calendar_files(folder).items():
        events = parse_ics(path.read_bytes(), cal, window=window)
        seen[cal], unseen[cal] = split_holdout(events, fraction)
        if max_seen_per_calendar is not None:
            seen[cal] = seen[cal][-max_seen_per_calendar:]
    return DemoData(user or folder.name, seen, unseen)


def seed(client: Client, demo: DemoData, progress: Callable[[str], None] = print) -> int:
    """Register the calendars and upload the seen events through the API. Returns events upserted."""
    total = 0
    for cal, events in demo.seen.items():
        client.put_calendar(demo.user, cal, name=cal.replace("_", " "))
        n = 0
        for i in range(0, len(events), INGEST_CHUNK):
            chunk = [e.to_flat() for e in events[i:i + INGEST_CHUNK]]
            n += int(client.ingest(demo.user, chunk).get("upserted", len(chunk)))
        progress(f"  {cal:<32} {n:>5} events uploaded, {len(demo.unseen[cal]):>4} held back")
        total += n
    return total


def _unlabelled(ev) -> dict:
    flat = ev.to_flat()
    flat.pop("calendar_id", None)
    return flat


def classify_unseen(client: Client, demo: DemoData) -> list[dict]:
    """Classify every held-back event through ``/classify/batch``; one row per event."""
    rows = []
    for cal, events in demo.unseen.items():
        for i in range(0, len(events), CLASSIFY_CHUNK):
            chunk = events[i:i + CLASSIFY_CHUNK]
            results = client.classify_batch(demo.user, [_unlabelled(e) for e in chunk]).get("results", [])
            for ev, res in zip(chunk, results):
                rows.append({
                    "start": ev.start.isoformat()[:16].replace("T", " "),
                    "summary": ev.summary,
                    "truth": cal,
                    "predicted": res.get("calendar_id"),
                    "confidence": res.get("confidence"),
                    "method": res.get("method"),
                    "event_id": ev.event_id,
                })
    return rows


def summarize(rows: list[dict]) -> dict:
    """Accuracy overall and on the events the model kept (method ml), and the ml share."""
    n = len(rows)
    ml = [r for r in rows if r["method"] == "ml"]
    answered = [r for r in rows if r["predicted"]]
    return {
        "events": n,
        "ml_share": len(ml) / n if n else 0.0,
        "accuracy_ml": (sum(r["predicted"] == r["truth"] for r in ml) / len(ml)) if ml else None,
        "accuracy_answered": (sum(r["predicted"] == r["truth"] for r in answered) / len(answered))
        if answered else None,
        "methods": {m: sum(r["method"] == m for r in rows) for m in sorted({r["method"] for r in rows})},
    }


def render(rows: list[dict], per_calendar: int = 4) -> str:
    """A readable table: a few events per calendar, then a per-calendar and an overall summary."""
    from ..text import table

    shown = []
    by_cal: dict[str, list[dict]] = {}
    for r in rows:
        by_cal.setdefault(r["truth"], []).append(r)
    for cal, rs in by_cal.items():
        step = max(1, len(rs) // per_calendar)
        shown.extend(rs[::step][:per_calendar])
    lines = [table(
        [[r["start"], _cut(r["summary"], 34), r["truth"], r["predicted"] or "-",
          "-" if r["confidence"] is None else f"{r['confidence']:.2f}", r["method"],
          "ok" if r["predicted"] == r["truth"] else ("?" if not r["predicted"] else "WRONG")] for r in shown],
        ["start", "summary", "calendar", "predicted", "conf", "method", ""])]
    lines.append("")
    per = []
    for cal, rs in by_cal.items():
        s = summarize(rs)
        per.append([cal, s["events"], f"{s['ml_share']:.0%}",
                    "-" if s["accuracy_ml"] is None else f"{s['accuracy_ml']:.1%}",
                    "-" if s["accuracy_answered"] is None else f"{s['accuracy_answered']:.1%}"])
    s = summarize(rows)
    per.append(["ALL", s["events"], f"{s['ml_share']:.0%}",
                "-" if s["accuracy_ml"] is None else f"{s['accuracy_ml']:.1%}",
                "-" if s["accuracy_answered"] is None else f"{s['accuracy_answered']:.1%}"])
    lines.append(table(per, ["calendar", "unseen", "ml (confident)", "accuracy of ml", "accuracy answered"]))
    return "\n".join(lines)


def _cut(text: str, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"
