"""One warning per outage (merci.outage_log), and the click handoff using it: a broker
down under a stream of clicks logs once, counts the rest, and says when it is back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from merci.clicks import Accepted, Handoff
from merci.outage_log import OutageLog


def test_one_warning_per_outage_and_one_when_it_ends() -> None:
    broker = OutageLog("the broker")
    with capture_logs() as logs:
        for _ in range(50):
            broker.failed(ConnectionError("refused"), clicks=3)
        broker.ok()
        broker.ok()  # (working: nothing to say)
        broker.failed(ConnectionError("again"))
    assert [(e["event"], e.get("error"), e.get("failures")) for e in logs] == [
        ("the broker: failing", "refused", None), ("the broker: working again", None, 50),
        ("the broker: failing", "again", None)]
    assert logs[0]["clicks"] == 3 and logs[1]["seconds"] >= 0


async def test_the_click_handoff_logs_a_broker_outage_once() -> None:
    down = True

    async def send(batch: list[list[Any]], signature: str, outbox_id: str | None) -> None:
        if down:
            raise ConnectionError("Connection refused")

    handoff = Handoff(send, secret="s", outbox=False)
    click = Accepted(supporter_id=1, tenant_id=1, thing_id=2, url=None, idempotency_key="k",
                     accepted_at=datetime(2026, 12, 7, 10, tzinfo=UTC))
    with capture_logs() as logs:
        for _ in range(20):
            with pytest.raises(ConnectionError):
                await handoff.direct([click])
        down = False
        await handoff.direct([click])
    assert [e["event"] for e in logs] == ["handing accepted clicks to the broker: failing",
                                          "handing accepted clicks to the broker: working again"]
    assert logs[1]["failures"] == 20
