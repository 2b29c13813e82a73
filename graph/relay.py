"""Relay: the Node interface, global ids, and connections with `first` (1–100)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Generic, TypeVar

import strawberry

from graph.errors import ClientError
from merci.ids import MAX_ID

T = TypeVar("T")
MAX_FIRST = 100


@strawberry.interface(description="An object with a global id.")
class Node:
    id: strawberry.ID


# Shareable: both subgraphs return pages (Federation 2 would refuse it otherwise).
@strawberry.federation.type(shareable=True)
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int | None = None

    @strawberry.field
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]


def check_first(first: int | None, default: int = 20) -> int:
    if first is None:
        return default
    if not 1 <= first <= MAX_FIRST:
        raise ClientError(f"`first` must be between 1 and {MAX_FIRST}", "BAD_PAGE_SIZE")
    return first


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(f"c:{value}".encode()).decode()


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ClientError("`after` is not a valid cursor", "BAD_CURSOR") from exc
    if not raw.startswith("c:"):
        raise ClientError("`after` is not a valid cursor", "BAD_CURSOR")
    return raw[2:]


def decode_int_cursor(cursor: str | None) -> int | None:
    raw = decode_cursor(cursor)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) > MAX_ID:
        raise ClientError("`after` is not a valid cursor", "BAD_CURSOR")
    return int(raw)


def connection(
    items: Sequence[T], *, first: int, cursor_of: callable, total: int | None = None  # type: ignore[valid-type]
) -> Connection[T]:
    """Build a page from `first + 1` fetched items: the extra one says there is more."""
    page = list(items[:first])
    edges = [Edge(cursor=encode_cursor(str(cursor_of(i))), node=i) for i in page]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(items) > first, end_cursor=edges[-1].cursor if edges else None
        ),
        total_count=total,
    )
