"""Progress for long commands: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = -1
        self.started = time.monotonic()

    def update(self, done: int, note: str = "") -> None:
        if done == self.done:
            return
        self.done = done
        elapsed = time.monotonic() - self.started
        if self.tty:
            width = 30
            filled = int(width * done / self.total)
            bar = "█" * filled + "·" * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {elapsed:5.1f}s {note}\x1b[K")
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: {done}/{self.total} ({elapsed:.1f}s) {note}\n")
        self.stream.flush()
