from __future__ import annotations

from enum import Enum

import strawberry

from api.fraud.types import FlaggedClick
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from merci import fraud
from merci.errors import UserError
from merci.ids import from_global


@strawberry.enum(description="A review's decision.")
class ClickReview(Enum):
    RELEASE = strawberry.enum_value("released", description="The click counts (if its month is not closing).")
    REJECT = strawberry.enum_value("rejected", description="The click never counts.")


@strawberry.input
class ReviewFlaggedClickInput:
    click_id: strawberry.ID = strawberry.field(description="The flagged click's global id (Click).")
    decision: ClickReview


@strawberry.type
class ReviewFlaggedClickPayload:
    flagged_click: FlaggedClick | None
    user_errors: list[UserErrorType]


@strawberry.type
class FraudMutations:
    @strawberry.mutation(description="Platform admins: release or reject a held click. Final; the same decision"
                                     " again changes nothing (ALREADY_REVIEWED for the other one).")
    async def review_flagged_click(self, info: Info, input: ReviewFlaggedClickInput) -> ReviewFlaggedClickPayload:
        ctx = info.context

        async def work() -> ReviewFlaggedClickPayload:
            if not ctx.principal.platform_admin or ctx.principal.api_key_id is not None:
                raise UserError("FORBIDDEN", "only a platform admin may review flagged clicks")
            _, pk = from_global(input.click_id, expect="Click", field="clickId")
            async with ctx.tx() as conn:
                row = await fraud.review(conn, click_id=pk, decision=str(input.decision.value))
            return ReviewFlaggedClickPayload(flagged_click=FlaggedClick.from_row(row), user_errors=[])

        return await attempt(work, user_errors_only(ReviewFlaggedClickPayload))
