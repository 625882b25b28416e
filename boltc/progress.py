"""A one-line progress bar on stderr, shown only when stderr is a terminal (or when asked)."""

from __future__ import annotations

import sys
import time


class Progress:
    WIDTH = 30
    REDRAW_SECONDS = 0.1

    def __init__(self, label: str, total: int, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.total, self.done = label, max(total, 1), 0
        self.started = time.perf_counter()
        self.drawn_at = 0.0

    def advance(self, count: int, note: str = "") -> None:
        self.done += count
        now = time.perf_counter()
        if self.enabled and (now - self.drawn_at >= self.REDRAW_SECONDS or self.done >= self.total):
            self.drawn_at = now
            filled = int(self.WIDTH * min(self.done, self.total) / self.total)
            elapsed = now - self.started
            rate = self.done / elapsed if elapsed > 0 else 0.0
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {rate:,.0f} rows/s {note}\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
