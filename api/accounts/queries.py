from __future__ import annotations

import strawberry

from api.accounts.loaders import account_by_id
from api.accounts.types import Account, Creator
from graph.context import Info
from graph.errors import ClientError
from merci import accounts


@strawberry.type
class AccountQueries:
    @strawberry.field(description="The logged-in account, or null; an error (UNAUTHENTICATED) when the token "
                                  "sent is invalid, expired or revoked.")
    async def me(self, info: Info) -> Account | None:
        pk = info.context.principal.account_id
        if pk is None and info.context.credentials_refused is not None:
            err = info.context.unauthenticated("")
            raise ClientError(err.message, err.code)
        return None if pk is None else await Account.load(info, pk)

    @strawberry.field(description="A creator by handle.")
    async def creator(self, info: Info, handle: str) -> Creator | None:
        async with info.context.tx() as conn:
            pk = await accounts.id_by_handle(conn, handle=handle.strip().lower())
        if pk is None:
            return None
        row = await info.context.loader("account", account_by_id).load(pk)
        return Creator.from_row(row) if row else None
