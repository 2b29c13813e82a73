"""`node(id:)`: any object by global id, through the same loaders and RLS as its field."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry

from api.accounts.loaders import account_by_id
from api.accounts.types import Account, Creator
from api.tenants.types import ApiKey, Tenant
from graph.context import Info
from graph.errors import ClientError
from graph.relay import Node
from merci.errors import UserError
from merci.ids import from_global


async def _creator(info: Info, pk: int) -> Creator | None:
    row = await info.context.loader("account", account_by_id).load(pk)
    return Creator.from_row(row) if row else None


NODE_RESOLVERS: dict[str, Callable[[Info, int], Awaitable[Any]]] = {
    "Creator": _creator,
    "Account": Account.load,
    "Tenant": Tenant.load,
    "ApiKey": ApiKey.load,
}


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
