"""Relay: the Node interface, global ids, and connections.

Connections follow the Relay cursor connection spec: `first`/`after` page forward,
`last`/`before` backward (1–100 either way, not both), `pageInfo` has the four fields
relay-compiler requires, and `totalCount` counts the whole list on demand (only when
selected). The keyset SQL lives in merci.paging; this module turns arguments into a
merci.paging.Window and a merci.paging.Page into a connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date
from enum import Enum
from typing import Any, Generic, TypeVar

import asyncpg
import strawberry
from strawberry.dataloader import DataLoader

from graph.context import Context
from graph.errors import ClientError
from merci.ids import MAX_ID
from merci.paging import COUNT_CAP, Count, Keyset, Page, Window

T = TypeVar("T")
K = TypeVar("K")
MAX_FIRST = 100
DEFAULT_FIRST = 20


@strawberry.interface(description="An object with a global id.")
class Node:
    id: strawberry.ID


# Shareable: both subgraphs return pages (Federation 2 would refuse it otherwise).
@strawberry.federation.type(shareable=True, description="Where a page sits in its list (Relay).")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow the page's last one.")
    has_previous_page: bool = strawberry.field(description="More items precede the page's first one.")
    start_cursor: str | None = strawberry.field(description="The first edge's cursor (null on an empty page).")
    end_cursor: str | None = strawberry.field(description="The last edge's cursor (null on an empty page).")


@strawberry.enum(description="How far `totalCount` can be trusted.")
class CountPrecision(Enum):
    EXACT = strawberry.enum_value("EXACT", description="Counted.")
    AT_LEAST = strawberry.enum_value("AT_LEAST", description=(
        f"The list holds more than {COUNT_CAP:,} items: counting stopped there."))
    ESTIMATE = strawberry.enum_value("ESTIMATE", description="Estimated from a sample (search only).")


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


class Counter:
    """A connection's count, made once and only if `totalCount` or its precision is
    selected (they resolve concurrently: the first starts it)."""

    def __init__(self, count: Callable[[], Awaitable[Count]]) -> None:
        self.count = count
        self.task: asyncio.Future[Count] | None = None

    @staticmethod
    def known(n: int) -> Counter:
        async def count() -> Count:
            return Count(n, True)

        return Counter(count)

    @staticmethod
    def of(pool_tx: Callable[[], Any], count: Callable[[asyncpg.Connection], Awaitable[Count]]) -> Counter:
        """Counted in a transaction of its own (`pool_tx`: the context's `tx`)."""
        async def run() -> Count:
            async with pool_tx() as conn:
                return await count(conn)

        return Counter(run)

    async def get(self) -> Count:
        if self.task is None:
            self.task = asyncio.ensure_future(self.count())
        return await self.task


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    counter: strawberry.Private[Counter]

    @strawberry.field
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]

    @strawberry.field(description=f"How many items the whole list holds (all pages), counted up to {COUNT_CAP:,}: "
                                  "see totalCountPrecision.")
    async def total_count(self) -> int:
        return (await self.counter.get()).n

    @strawberry.field(description="EXACT, or AT_LEAST when the list is longer than counting goes.")
    async def total_count_precision(self) -> CountPrecision:
        return CountPrecision.EXACT if (await self.counter.get()).exact else CountPrecision.AT_LEAST


def check_first(first: int | None, default: int = DEFAULT_FIRST, name: str = "first") -> int:
    if first is None:
        return default
    if not 1 <= first <= MAX_FIRST:
        raise ClientError(f"`{name}` must be between 1 and {MAX_FIRST}", "BAD_PAGE_SIZE")
    return first


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(f"c:{value}".encode()).decode()


def decode_cursor(cursor: str | None, name: str = "after") -> str | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ClientError(f"`{name}` is not a valid cursor", "BAD_CURSOR") from exc
    if not raw.startswith("c:"):
        raise ClientError(f"`{name}` is not a valid cursor", "BAD_CURSOR")
    return raw[2:]


def decode_int_cursor(cursor: str | None, name: str = "after") -> int | None:
    raw = decode_cursor(cursor, name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) > MAX_ID:
        raise ClientError(f"`{name}` is not a valid cursor", "BAD_CURSOR")
    return int(raw)


def decode_period_cursor(cursor: str | None, name: str = "after") -> date | None:
    raw = decode_cursor(cursor, name)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ClientError(f"`{name}` is not a valid cursor", "BAD_CURSOR") from None


def window(first: int | None, after: str | None, last: int | None = None, before: str | None = None, *,
           decode: Callable[[str | None, str], Any] = decode_int_cursor) -> Window:
    """The page the arguments ask for: `first` (default 20) from the start or after
    `after`, or `last` from the end or before `before`."""
    if first is not None and last is not None:
        raise ClientError("give `first` or `last`, not both", "BAD_PAGE_SIZE")
    after_key, before_key = decode(after, "after"), decode(before, "before")
    if last is not None:
        return Window(check_first(last, name="last"), after_key, before_key, backward=True)
    return Window(check_first(first), after_key, before_key)


async def paginate(tx: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]], listing: Keyset,
                   window: Window, make: Callable[[asyncpg.Record], T], *,
                   cursor_of: Callable[[T], object]) -> Connection[T]:
    """A page of a merci list (read in a transaction of `tx`, the context's), counted
    in another only if `totalCount` is asked for."""
    async with tx() as conn:
        page = await listing.page(conn, window)
    return connection_of(page, make, cursor_of=cursor_of, counter=Counter.of(tx, listing.count))


async def paginate_each(ctx: Context, listing: Keyset, window: Window, make: Callable[[asyncpg.Record], T], *,
                        cursor_of: Callable[[T], object]) -> Connection[T]:
    """`paginate` for a connection of a parent that may come in a list (a creator's
    things, under each thing's owner): `listing` is the parent's list (its `$1`), and
    the pages (and counts) of every parent that asks for the same window in this
    request are read together, through per-request DataLoaders (`ctx`: the context)."""
    parent, rest = listing.args[0], listing.args[1:]
    family = (listing.select, listing.key, listing.key_type, listing.descending, rest)

    def pages(c: Context) -> DataLoader[int, Page]:
        async def load(parents: list[int]) -> list[Page]:
            async with c.tx() as conn:
                found = await listing.pages(conn, window, parents=parents)
            return [found[p] for p in parents]

        return DataLoader(load_fn=load)

    def counts(c: Context) -> DataLoader[int, Count]:
        async def load(parents: list[int]) -> list[Count]:
            async with c.tx() as conn:
                found = await listing.counts(conn, parents=parents)
            return [found[p] for p in parents]

        return DataLoader(load_fn=load)

    page = await ctx.loader(("pages", family, window), pages).load(parent)
    counter = Counter(lambda: ctx.loader(("counts", family), counts).load(parent))
    return connection_of(page, make, cursor_of=cursor_of, counter=counter)


def connection_of(page: Page, make: Callable[[asyncpg.Record], T], *, cursor_of: Callable[[T], object],
                  counter: Counter) -> Connection[T]:
    """A connection from a merci.paging page; `cursor_of` names an item's key."""
    return from_items([make(r) for r in page.rows], cursor_of=cursor_of, has_next=page.has_next,
                      has_previous=page.has_previous, counter=counter)


def from_items(items: Sequence[T], *, cursor_of: Callable[[T], object], has_next: bool, has_previous: bool,
               counter: Counter) -> Connection[T]:
    edges = [Edge(cursor=encode_cursor(str(cursor_of(i))), node=i) for i in items]
    return Connection(edges=edges, page_info=page_info([e.cursor for e in edges], has_next, has_previous),
                      counter=counter)


def page_info(cursors: Sequence[str], has_next: bool, has_previous: bool) -> PageInfo:
    return PageInfo(has_next_page=has_next, has_previous_page=has_previous,
                    start_cursor=cursors[0] if cursors else None, end_cursor=cursors[-1] if cursors else None)


def empty() -> Connection[Any]:
    """Nothing to show (e.g. the caller may not see this list): an empty page of an empty list."""
    return from_items([], cursor_of=str, has_next=False, has_previous=False, counter=Counter.known(0))
