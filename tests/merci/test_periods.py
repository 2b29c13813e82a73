"""merci.periods: UTC calendar months, in Python and in the SQL it hands out."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg
import pytest

from merci.periods import (
    PeriodError,
    month_key,
    month_start,
    months_before,
    parse_period,
    period_of,
    sql_month_end,
    sql_period_of,
)


def test_a_moment_belongs_to_its_utc_month() -> None:
    paris = timezone(timedelta(hours=1))
    assert period_of(datetime(2026, 12, 1, 0, 30, tzinfo=paris)) == date(2026, 11, 1)  # 23:30 UTC
    assert period_of(datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5)))) == date(2026, 12, 1)
    assert month_start(date(2026, 12, 1)) == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(("period", "months", "expected"), [
    (date(2026, 3, 1), 1, date(2026, 2, 1)),
    (date(2026, 1, 1), 1, date(2025, 12, 1)),
    (date(2026, 1, 1), 13, date(2024, 12, 1)),
    (date(2026, 12, 1), -1, date(2027, 1, 1)),
    (date(2026, 5, 1), 0, date(2026, 5, 1)),
])
def test_months_before(period: date, months: int, expected: date) -> None:
    assert months_before(period, months) == expected


def test_month_key_orders_months() -> None:
    assert month_key(date(2026, 11, 1)) == 202611
    assert month_key(date(2026, 12, 1)) < month_key(date(2027, 1, 1))


def test_parse_period() -> None:
    assert parse_period("2026-02") == date(2026, 2, 1)
    for bad in ("2026-2", "26-02", "2026-13", "2026-02-01", "", "twenty"):
        with pytest.raises(PeriodError, match="is not a month"):
            parse_period(bad)


@pytest.mark.asyncio
async def test_the_sql_bounds_are_utc_whatever_the_session_zone(server_url: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute("set timezone = 'America/New_York'")
        at = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # still November in New York
        assert await conn.fetchval(f"select {sql_period_of('$1::timestamptz')}", at) == date(2026, 12, 1)
        end = await conn.fetchval(f"select {sql_month_end('$1::date')}", date(2026, 11, 1))
        assert end == month_start(date(2026, 12, 1))
    finally:
        await conn.close()
