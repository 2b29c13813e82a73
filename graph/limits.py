"""Schema extensions that bound what one request may cost."""

from __future__ import annotations

from strawberry.extensions import (
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from graph.errors import should_mask

MAX_DEPTH = 12
MAX_TOKENS = 3000
MAX_ALIASES = 30


def extensions(extra: list[type[SchemaExtension]] | None = None) -> list[object]:
    return [
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaskErrors(should_mask_error=should_mask, error_message="Unexpected error."),
        *(extra or []),
    ]
