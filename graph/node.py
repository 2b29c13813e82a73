"""`node(id:)`: any object by global id, through the same loaders and RLS as its
own field. Each subgraph registers the types it owns; a process serving both
subgraphs merged resolves them all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry

from graph.context import Info
from graph.errors import ClientError
from graph.relay import Node
from merci.errors import UserError
from merci.ids import from_global

NODE_RESOLVERS: dict[str, Callable[[Info, int], Awaitable[Any]]] = {}


def register(type_name: str, resolver: Callable[[Info, int], Awaitable[Any]]) -> None:
    NODE_RESOLVERS[type_name] = resolver


@strawberry.type
class NodeQueries:
    @strawberry.field(description="Fetch any object by its global id; null when not visible to you.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        try:
            type_name, pk = from_global(id)
        except UserError as err:
            raise ClientError(err.message, err.code) from None
        resolver = NODE_RESOLVERS.get(type_name)
        return None if resolver is None else await resolver(info, pk)
