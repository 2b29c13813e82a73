"""The api subgraph's node types."""

from __future__ import annotations

from api.accounts.loaders import account_by_id
from api.accounts.types import Account, Creator
from api.subscriptions.types import GLOBAL_ID_TYPE, ThingSubscription
from api.tenants.types import ApiKey, Tenant
from api.things.types import Thing
from graph.context import Info
from graph.node import register


async def _creator(info: Info, pk: int) -> Creator | None:
    row = await info.context.loader("account", account_by_id).load(pk)
    return Creator.from_row(row) if row else None


register("Creator", _creator)
register("Account", Account.load)
register("Tenant", Tenant.load)
register("ApiKey", ApiKey.load)
register("Thing", Thing.load)
register(GLOBAL_ID_TYPE, ThingSubscription.load)
