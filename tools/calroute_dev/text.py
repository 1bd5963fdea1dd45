"""Plain-text output shared by the CLI and the local stack's demo (stdlib only): tables, a progress bar."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Sequence, TypeVar

T = TypeVar("T")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [all(_is_num(row[i]) for row in cells if row[i] not in ("", "-"))
               and any(row[i] not in ("", "-") for row in cells)
               for i in range(len(headers))] if cells else [False] * len(headers)

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i])
                         for i, c in enumerate(row)).rstrip()

    lines = [fmt(list(headers)), "  ".join("-" * w for w in widths)]
    lines.extend(fmt(r) for r in cells)
    return "\n".join(lines)


def _is_num(s: str) -> bool:
    try:
        float(s.rstrip("%"))
        return True
    except ValueError:
        return False


def progress(items: Iterable[T], total: Optional[int] = None, label: str = "", stream: Any = None,
             width: int = 30, force: bool = False) -> Iterator[T]:
    """Yield ``items``, drawing ``label [#####.....] 3/10 name`` on stderr as they go (only on a
    terminal, or with ``force``; the line is cleared at the end). An item's name is shown when it is a
    string or a (string, ...) tuple."""
    import sys
    import time

    out = stream if stream is not None else sys.stderr
    items = list(items) if total is None else items
    total = len(items) if total is None else total  # type: ignore[arg-type]
    show = force or bool(getattr(out, "isatty", lambda: False)())
    t0 = time.monotonic()

    def draw(done: int, name: str) -> None:
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "." * (width - filled)
        out.write(f"\r\x1b[2K{label} [{bar}] {done}/{total} {time.monotonic() - t0:5.1f}s {name}"[:200])
        out.flush()

    for i, item in enumerate(items):
        if show:
            name = item if isinstance(item, str) else (item[0] if isinstance(item, tuple) and item
                                                        and isinstance(item[0], str) else "")
            draw(i, name)
        yield item
    if show:
        draw(total, "done")
        out.write("\n")
        out.flush()
