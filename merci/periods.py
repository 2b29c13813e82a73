"""Months as Merci counts them: calendar months in UTC, whatever the time zone of the
server or of the database session. A month is named by its first day (a `date`, the
`period` of clicks, journals and closes) and written YYYY-MM.

The SQL helpers give the same bounds inside statements: a bare `date + interval` or
`date_trunc` would be read in the session's time zone, not in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime


class PeriodError(ValueError):
    """Text that does not name a month."""


def period_of(at: datetime) -> date:
    """The month `at` falls in, in UTC."""
    at = at.astimezone(UTC)
    return date(at.year, at.month, 1)


def months_before(period: date, months: int) -> date:
    index = period.year * 12 + period.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def month_start(period: date) -> datetime:
    """The month's first instant: midnight UTC of its first day (its end is the next one's)."""
    return datetime(period.year, period.month, 1, tzinfo=UTC)


def month_key(period: date) -> int:
    """YYYYMM: one integer per month (the second key of the month's advisory locks)."""
    return period.year * 100 + period.month


def parse_period(text: str) -> date:
    """YYYY-MM, and nothing else."""
    try:
        year, month = text.split("-")
        period = date(int(year), int(month), 1)
    except ValueError as exc:
        raise PeriodError(f"{text!r} is not a month (YYYY-MM)") from exc
    if len(year) != 4 or len(month) != 2:
        raise PeriodError(f"{text!r} is not a month (YYYY-MM)")
    return period


def sql_period_of(timestamp: str) -> str:
    """SQL: the period of the timestamptz expression `timestamp`."""
    return f"date_trunc('month', {timestamp} at time zone 'UTC')::date"


def sql_month_end(period: str) -> str:
    """SQL: the timestamptz at which the month of the date expression `period` ends."""
    return f"({period} + interval '1 month') at time zone 'UTC'"
