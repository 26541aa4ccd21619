"""The import's progress output: a bar at a terminal, plain lines in a log."""

from __future__ import annotations

import io

from gateway.migrate.commands import _Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_the_results_so_far() -> None:
    screen = _Terminal()
    progress = _Progress(screen)
    for result in ["created"] * 3 + ["existing"]:
        progress.tick(result)
    progress.done()
    text = screen.getvalue()
    assert "4 users" in text and "created=3" in text and "existing=1" in text


def test_a_log_gets_a_line_every_thousand_users() -> None:
    log = io.StringIO()
    progress = _Progress(log)
    for _ in range(2500):
        progress.tick("created")
    progress.done()
    assert log.getvalue().splitlines() == ["progress: 1000 users", "progress: 2000 users"]
