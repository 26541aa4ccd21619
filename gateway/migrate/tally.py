"""The last line every migrate command prints: a contract that scripts parse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def last_line(
    command: str,
    counts: Mapping[str, int],
    results: Sequence[str],
    *,
    total: str | None = None,
    dry_run: bool = False,
) -> str:
    """`<command>: [<total>=sum] <result>=N ... [dry_run=1]`, counts of absent results as 0."""
    parts = [f"{total}={sum(counts.get(r, 0) for r in results)}"] if total else []
    parts += [f"{r}={counts.get(r, 0)}" for r in results]
    return f"{command}: " + " ".join(parts) + (" dry_run=1" if dry_run else "")
