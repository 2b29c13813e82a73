"""One warning per outage, not one per request: while a service keeps failing (the broker
down under 50 clicks a second), the first failure is logged with its error, the next ones
only counted, and the first success after them logs how many there were and for how long
(issue 17). Per process, per what failed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass
class OutageLog:
    """`failed` on each failure, `ok` on each success, of one thing that can fail (`what`)."""

    what: str
    failures: int = 0
    since: float = field(default=0.0)

    def failed(self, error: BaseException | str, **fields: Any) -> None:
        self.failures += 1
        if self.failures == 1:
            self.since = time.monotonic()
            log.warning(f"{self.what}: failing", error=str(error) or type(error).__name__, **fields)

    def ok(self) -> None:
        if self.failures:
            log.warning(f"{self.what}: working again", failures=self.failures,
                        seconds=round(time.monotonic() - self.since, 1))
            self.failures = 0
