"""The demo of ``calroute local``: a user seeded from bundled real calendars, with the most recent
30% of each calendar held back as "unseen" events, then classified through the API.

The folder holds one ``.ics`` per calendar (file stem = calendar id), e.g. ``data/users/d1_student``.
Each file is parsed with the same importer and window as the import API (``calroute.ics``), the
events of each calendar are sorted by start, and the last 30% are held back. The other 70% are
uploaded through the ingest API (``POST /v1/users/{userId}/events``, flat form, labelled): uploading
the whole ``.ics`` through the import route would also store the held-back events, and re-encoding a
subset as iCalendar would lose the "part of a recurring series" flag of the expanded occurrences.

The held-back events are much like the ones learnt from, so the model answers nearly all of them
itself. ``demo_events.json`` in the folder (optional) lists a few *new* events of the kind a user
adds next — some familiar, some unlike anything in the history (a title never seen, a match at 3 am)
— to show the hybrid: the confident ones answered by the model, the others deferred with their
``defer_reason`` and the question the LLM fallback is (or would be) asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

from .client import Client
from .template import ROOT

DEMO_USER = "d3_developer"  # five calendars, two of them alike (PyCon UK and ESUG talks)
DEMO_DIR = ROOT / "data" / "users" / DEMO_USER
HOLDOUT = 0.30
NEW_EVENTS_FILE = "demo_events.json"
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
                    "defer_reason": res.get("defer_reason"),
                    "event_id": ev.event_id,
                })
    return rows


def load_new_events(folder: str | Path) -> list[dict]:
    """The folder's ``demo_events.json``: flat events (no label) the demo classifies as new."""
    import json

    path = Path(folder) / NEW_EVENTS_FILE
    if not path.is_file():
        return []
    events = json.loads(path.read_text(encoding="utf-8"))
    return [e for e in events if isinstance(e, dict)]


def classify_new(client: Client, demo: DemoData, events: list[dict]) -> list[dict]:
    """Classify the new events (one ``/classify/batch`` call); one row per event, with the model's
    candidates and, for a deferred one, what the LLM fallback is asked."""
    if not events:
        return []
    results = client.classify_batch(demo.user, events).get("results", [])
    rows = []
    for ev, res in zip(events, results):
        rows.append({
            "start": str(ev.get("start", ""))[:16].replace("T", " "),
            "summary": ev.get("summary", ""),
            "predicted": res.get("calendar_id"),
            "confidence": res.get("confidence"),
            "method": res.get("method"),
            "defer_reason": res.get("defer_reason"),
            "reason": res.get("reason"),
            "alternatives": res.get("alternatives") or [],
            "event": ev,
        })
    return rows


def llm_question(demo: DemoData, row: dict, k_similar: int = 5) -> str:
    """The data block the LLM fallback sends for a deferred event (``calroute.llm.prompt``): the
    user's calendars, the model's candidates, similar past events (from the events learnt from)."""
    from calroute.llm.prompt import build_messages
    from calroute.llm.similar import similar_events
    from calroute.schema import CalendarInfo, parse_event

    event = parse_event(row["event"], field="event")
    calendars = [CalendarInfo(calendar_id=c, name=c.replace("_", " ")) for c in demo.seen]
    labelled = [e for evs in demo.seen.values() for e in evs]
    similar = similar_events(event, labelled, k_similar, set(demo.seen))
    messages = build_messages(event=event, calendars=calendars, candidates=row["alternatives"], similar=similar,
                              nonce="demo")
    return compact_question(messages[-1]["content"])


def compact_question(content: str, width: int = 150) -> str:
    """The user message's data block, one line per field (compact JSON, cut at ``width``)."""
    import json

    lines = content.strip().splitlines()
    try:
        data = json.loads("\n".join(lines[1:-2]))  # between <data-…> and </data-…>, before the question
    except ValueError:
        return content
    out = []
    for key, value in data.items():
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        out.append(f"{key}: {text if len(text) <= width else text[: width - 1] + '…'}")
    out.append(lines[-1])
    return "\n".join(out)


def _candidates(row: dict, n: int = 2) -> str:
    alts = row.get("alternatives") or []
    return ", ".join(f"{a['calendar_id']} {a.get('probability', 0):.2f}" for a in alts[:n])


def render_new(rows: list[dict]) -> str:
    """The new events: the model's confident answers, the deferred ones with their reason and the
    LLM's answer (or, without an LLM, the candidates it would choose between)."""
    from ..text import table

    out = []
    for r in rows:
        deferred = r["method"] != "ml"
        if r["method"] in ("llm", "llm_only"):
            asked = f"answered: {_cut(r.get('reason') or '', 40)}"
        elif deferred:
            asked = f"choose among: {_candidates(r)}, …"
        else:
            asked = "-"
        out.append([r["start"], _cut(r["summary"], 28), r["predicted"] or "-",
                    "-" if r["confidence"] is None else f"{r['confidence']:.2f}", r["method"],
                    r["defer_reason"] or "-", asked])
    return table(out, ["start", "summary", "answer", "conf", "method", "defer_reason", "the LLM"])


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
        "defer_reasons": {d: sum(r.get("defer_reason") == d for r in rows)
                          for d in sorted({r.get("defer_reason") for r in rows} - {None})},
    }


def render(rows: list[dict], per_calendar: int = 4) -> str:
    """A readable table: a few events per calendar, then a per-calendar and an overall summary."""
    from ..text import table

    shown = []
    by_cal: dict[str, list[dict]] = {}
    for r in rows:
        by_cal.setdefault(r["truth"], []).append(r)
    for cal, rs in by_cal.items():
        deferred = [r for r in rs if r["method"] != "ml"][: per_calendar // 2]  # the interesting ones first
        rest = [r for r in rs if r not in deferred]
        step = max(1, len(rest) // per_calendar)
        shown.extend(deferred + rest[::step][: per_calendar - len(deferred)])
    lines = [table(
        [[r["start"], _cut(r["summary"], 34), r["truth"], r["predicted"] or "-",
          "-" if r["confidence"] is None else f"{r['confidence']:.2f}", r["method"], r.get("defer_reason") or "-",
          "ok" if r["predicted"] == r["truth"] else ("?" if not r["predicted"] else "WRONG")] for r in shown],
        ["start", "summary", "calendar", "predicted", "conf", "method", "defer_reason", "right?"])]
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
