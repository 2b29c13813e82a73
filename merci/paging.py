"""Keyset pages: the SQL behind every Relay connection that lists rows by a unique key.

A list is one statement's rows in the order of a unique key (`id desc` for "newest
first"). A window asks for `size` rows after a cursor (forward, `first`/`after`) or
the `size` rows nearest the end or a cursor (backward, `last`/`before`), the way the
Relay connection spec slices a list: `after` and `before` bound it, then `first` takes
from its start or `last` from its end. The key makes both directions one index scan
each, whatever the page's depth (no OFFSET), and a page does not shift when rows are
added before it.

Whether there is more on the far side costs the one extra row fetched; whether there is
something on the near side (before `after`, after `before`) one probe of the index.
Counts are exact up to COUNT_CAP rows, so that no client can make one request read a
million rows by asking for `totalCount`; past it a count says it is a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

COUNT_CAP = 10_000


@dataclass(frozen=True)
class Window:
    """Which slice of a list to read: cursors are key values, in the list's order."""

    size: int
    after: Any = None
    before: Any = None
    backward: bool = False  # `last`: the `size` rows nearest `before` (or the list's end)


@dataclass(frozen=True)
class Page:
    rows: list[asyncpg.Record]  # in the list's order
    has_next: bool
    has_previous: bool


@dataclass(frozen=True)
class Count:
    n: int
    exact: bool  # False: there are more than `n` (= COUNT_CAP)


@dataclass(frozen=True)
class Keyset:
    """A list: `select` (a statement ending in its WHERE clause, with parameters `args`)
    ordered by `key`, a unique column of type `key_type`. Domain modules make these;
    faces page and count them."""

    select: str
    args: tuple[Any, ...]
    key: str = "id"
    key_type: str = "bigint"
    descending: bool = True

    async def page(self, conn: asyncpg.Connection, window: Window) -> Page:
        n, key, key_type = len(self.args), self.key, self.key_type
        after, before, limit = f"${n + 1}::{key_type}", f"${n + 2}::{key_type}", f"${n + 3}"
        # In the list's order, "after c" is past c: a smaller key when the list is descending.
        past, short = ("<", ">") if self.descending else (">", "<")
        order = "desc" if self.descending != window.backward else "asc"
        rows = await conn.fetch(
            f"{self.select} and ({after} is null or {key} {past} {after})"
            f" and ({before} is null or {key} {short} {before}) order by {key} {order} limit {limit}",
            *self.args, window.after, window.before, window.size + 1)
        more = len(rows) > window.size
        rows = rows[: window.size]
        if window.backward:
            rows.reverse()
        # The near side: anything at or before `after` (forward), at or after `before` (backward).
        near, cursor = (f"{short}=", window.after) if not window.backward else (f"{past}=", window.before)
        beyond = cursor is not None and await conn.fetchrow(
            f"{self.select} and {key} {near} ${n + 1}::{key_type} limit 1", *self.args, cursor) is not None
        if window.backward:
            return Page(rows, has_next=beyond, has_previous=more)
        return Page(rows, has_next=more, has_previous=beyond)

    async def count(self, conn: asyncpg.Connection) -> Count:
        """How many rows the list has, reading at most COUNT_CAP + 1 of them."""
        n = int(await conn.fetchval(f"select count(*) from ({self.select} limit {COUNT_CAP + 1}) as listed",
                                    *self.args))
        return Count(min(n, COUNT_CAP), n <= COUNT_CAP)
