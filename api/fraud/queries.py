from __future__ import annotations

import strawberry

from api.fraud.types import FlaggedClick, FlagStatus
from graph.context import Info
from graph.relay import Connection, empty, paginate, window
from merci import fraud


@strawberry.type
class FraudQueries:
    @strawberry.field(description="Platform admins: clicks held for review, newest first (empty for anyone else).")
    async def flagged_clicks(
        self, info: Info, status: FlagStatus | None = FlagStatus.HELD, first: int | None = None,
        after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> Connection[FlaggedClick]:
        w = window(first, after, last, before)
        ctx = info.context
        if not ctx.principal.platform_admin or ctx.principal.api_key_id is not None:
            return empty()
        return await paginate(ctx.tx, fraud.flagged(status=None if status is None else str(status.value)), w,
                              lambda r: FlaggedClick.from_row(dict(r)), cursor_of=lambda f: f.pk)
