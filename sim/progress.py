"""A one-line progress report on stderr for long runs (a terminal line, or a log line every
few seconds when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, what: str, total: int | None = None, out: TextIO = sys.stderr, every: float = 0.5
    ) -> None:
        self.what = what
        self.total = total
        self._out = out
        self._every = every if out.isatty() else max(every, 5.0)
        self._began = self._last = time.monotonic()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._write(now, final=False)

    def finish(self) -> None:
        self._write(time.monotonic(), final=True)

    def _write(self, now: float, final: bool) -> None:
        elapsed = max(now - self._began, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self.done:,}"
        if self.total:
            share = min(1.0, self.done / self.total)
            bar = "#" * int(share * 30)
            text = f"{self.what}: [{bar:<30}] {share:4.0%} {self.done:,}/{self.total:,}"
        text += f"  {rate:,.0f}/s  {elapsed:.0f}s"
        if self.total and not final and rate > 0:
            text += f"  ETA {_duration(max(0.0, (self.total - self.done) / rate))}"
        end = "\n" if final or not self._out.isatty() else ""
        self._out.write(("\r" if self._out.isatty() else "") + text + end)
        self._out.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
