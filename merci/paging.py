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

A list of one parent's rows (a creator's things) names its parent as `$1`. `pages` and
`counts` read the same window of many parents' lists in one statement each (a lateral
join over the parents), so that a connection nested in a list (each thing's owner's
things) costs a fixed number of statements whatever the page sizes: a statement per
parent made one request of 100 × 100 nodes run 10,100 of them (issue 16).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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

    def _per_parent(self) -> str:
        """The statement with its parent ($1) read from the lateral join's `parent.id`."""
        return _FIRST_PARAMETER.sub("parent.id", self.select)

    async def pages(self, conn: asyncpg.Connection, window: Window, *, parents: Sequence[int]) -> dict[int, Page]:
        """The same window of each parent's list (the list of `$1` = that parent), in one
        statement, and one more for the near side when there is a cursor."""
        n, key, key_type = len(self.args), self.key, self.key_type
        after, before, limit = f"${n + 1}::{key_type}", f"${n + 2}::{key_type}", f"${n + 3}"
        past, short = ("<", ">") if self.descending else (">", "<")
        order = "desc" if self.descending != window.backward else "asc"
        ids = list(dict.fromkeys(parents))
        rows = await conn.fetch(
            f"select parent.id as parent_id, listed.* from unnest($1::bigint[]) as parent(id) cross join lateral"
            f" ({self._per_parent()} and ({after} is null or {key} {past} {after})"
            f" and ({before} is null or {key} {short} {before}) order by {key} {order} limit {limit}) as listed",
            ids, *self.args[1:], window.after, window.before, window.size + 1)
        by_parent: dict[int, list[asyncpg.Record]] = {i: [] for i in ids}
        for r in rows:
            by_parent[r["parent_id"]].append(r)
        near, cursor = (f"{short}=", window.after) if not window.backward else (f"{past}=", window.before)
        beyond: set[int] = set()
        if cursor is not None:
            beyond = {r["id"] for r in await conn.fetch(
                f"select parent.id from unnest($1::bigint[]) as parent(id) where exists"
                f" ({self._per_parent()} and {key} {near} ${n + 1}::{key_type})", ids, *self.args[1:], cursor)}
        # (A lateral join's rows come out in each parent's order in practice, but SQL does not promise it.)
        column = key.rsplit(".", 1)[-1]
        pages = {}
        for parent, found in by_parent.items():
            found.sort(key=lambda r: r[column], reverse=order == "desc")
            more = len(found) > window.size
            found = found[: window.size]
            if window.backward:
                found.reverse()
                pages[parent] = Page(found, has_next=parent in beyond, has_previous=more)
            else:
                pages[parent] = Page(found, has_next=more, has_previous=parent in beyond)
        return pages

    async def counts(self, conn: asyncpg.Connection, *, parents: Sequence[int]) -> dict[int, Count]:
        """`count` of each parent's list, in one statement."""
        ids = list(dict.fromkeys(parents))
        rows = await conn.fetch(
            f"select parent.id, counted.n from unnest($1::bigint[]) as parent(id) cross join lateral"
            f" (select count(*) as n from ({self._per_parent()} limit {COUNT_CAP + 1}) as listed) as counted",
            ids, *self.args[1:])
        return {r["id"]: Count(min(int(r["n"]), COUNT_CAP), int(r["n"]) <= COUNT_CAP) for r in rows}

    async def count(self, conn: asyncpg.Connection) -> Count:
        """How many rows the list has, reading at most COUNT_CAP + 1 of them."""
        n = int(await conn.fetchval(f"select count(*) from ({self.select} limit {COUNT_CAP + 1}) as listed",
                                    *self.args))
        return Count(min(n, COUNT_CAP), n <= COUNT_CAP)


_FIRST_PARAMETER = re.compile(r"\$1(?!\d)")
