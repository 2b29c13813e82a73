"""Domain errors that become `userErrors` in GraphQL: a code, a message, a field."""

from __future__ import annotations


class UserError(Exception):
    """Refused input. Raised before anything is written, or inside a rolled-back transaction."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"UserError({self.code!r}, {self.message!r}, field={self.field!r})"

    @property
    def extensions(self) -> dict[str, str]:
        # graphql-core copies this onto a GraphQLError raised from a resolver.
        return {"code": self.code}
