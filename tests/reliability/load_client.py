"""The load test's clients, run in worker processes (``python load_client.py '<json spec>'``).

The local stack (moto server, gateway, the real handlers) lives in the pytest process; with the
clients in the same process, 54 client threads would compete with the server for one GIL. Each worker
runs its share of classify clients and ingesters as threads, each thread with its own keep-alive
connection, and prints one JSON line: latencies, request count and the first errors.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

WORDS = ["standup", "sprint", "review", "dentist", "yoga", "dinner", "deploy", "gym"]
MODEL_USER = "load_model_user"
INGESTERS = 4
BATCH = 100


def ingest_event(i: int) -> dict:
    """Event number ``i`` of the ingest stream (the test reads every one back and compares)."""
    day = 1 + i % 28
    return {"event_id": f"load-{i:06d}", "summary": f"{WORDS[i % len(WORDS)]} #{i} \u00e9\U0001F680",
            "description": f"generated event {i}", "start": f"2026-04-{day:02d}T{8 + i % 10:02d}:00:00Z",
            "end": f"2026-04-{day:02d}T{9 + i % 10:02d}:00:00Z", "calendar_id": f"cal{i % 3}",
            "attendees": [f"p{i % 7}@example.test"]}


def ingest_user(w: int) -> str:
    return f"load_ingest_{w}"


def run(spec: dict) -> dict:
    from rel_support import Http

    port, per_client, n_events = spec["port"], spec["per_client"], spec["events"]
    errors: list[str] = []
    lock = threading.Lock()
    lat_classify: list[float] = []
    lat_ingest: list[float] = []

    def err(msg: str) -> None:
        with lock:
            if len(errors) < 20:
                errors.append(msg[:300])

    def classifier(k: int) -> None:
        client = Http(port)
        mine = []
        try:
            for j in range(per_client):  # bounded
                body = {"event": {"summary": f"{WORDS[(k + j) % len(WORDS)]} {WORDS[j % 3]}",
                                  "start": f"2026-03-{1 + j % 28:02d}T{9 + k % 8:02d}:00:00Z"}}
                t = time.perf_counter()
                r = client.request("POST", f"/v1/users/{MODEL_USER}/classify", json_body=body, user=MODEL_USER)
                mine.append((time.perf_counter() - t) * 1000)
                if r.status != 200:
                    err(f"classify {r.status}: {r.raw[:200]!r}")
                else:
                    doc = r.json()
                    if doc["method"] not in ("ml", "ml_low_confidence") or doc["calendar_id"] not in ("work", "home"):
                        err(f"classify answered {doc}")
        except Exception as exc:  # noqa: BLE001 - a failed request is an error of the run, not a crash
            err(f"classify client {k}: {type(exc).__name__}: {exc}")
        finally:
            client.close()
            with lock:
                lat_classify.extend(mine)

    def ingester(w: int) -> None:
        client = Http(port)
        mine = []
        user = ingest_user(w)
        idx = list(range(w, n_events, INGESTERS))
        try:
            for start in range(0, len(idx), BATCH):  # bounded
                events = [ingest_event(i) for i in idx[start:start + BATCH]]
                t = time.perf_counter()
                r = client.request("POST", f"/v1/users/{user}/events", json_body={"events": events}, user=user)
                mine.append((time.perf_counter() - t) * 1000)
                if r.status != 200 or r.json().get("upserted") != len(events):
                    err(f"ingest {r.status}: {r.raw[:200]!r}")
        except Exception as exc:  # noqa: BLE001
            err(f"ingester {w}: {type(exc).__name__}: {exc}")
        finally:
            client.close()
            with lock:
                lat_ingest.extend(mine)

    threads = [threading.Thread(target=classifier, args=(k,)) for k in spec["classifiers"]]
    threads += [threading.Thread(target=ingester, args=(w,)) for w in spec["ingesters"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"lat_classify": lat_classify, "lat_ingest": lat_ingest, "errors": errors}


if __name__ == "__main__":
    here = Path(__file__).resolve()
    sys.path[:0] = [str(here.parent), str(here.parents[1]), str(here.parents[2] / "layers" / "core"),
                   str(here.parents[2] / "tools")]
    print(json.dumps(run(json.loads(sys.argv[1]))))
