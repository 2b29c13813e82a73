"""Domain errors that become `userErrors` in GraphQL: a code, a message, a field."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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

    def each(self) -> list[UserError]:
        """The refusals this stands for: itself, or each of several (UserErrors)."""
        return [self]


class UserErrors(UserError):
    """Several refusals of one input, reported together (a bad handle must not hide a
    short password). It is also the first of them, for code that reads one."""

    def __init__(self, errors: list[UserError]) -> None:
        first = errors[0]
        super().__init__(first.code, first.message, first.field)
        self.errors = errors

    def __repr__(self) -> str:
        return f"UserErrors({self.errors!r})"

    def each(self) -> list[UserError]:
        return list(self.errors)


class Checks:
    """Runs every check of an input and refuses it once, with all that failed:

        checks = Checks()
        email = checks(normalize_email, raw_email)
        checks(check_password, password)
        checks.done()  # raises UserError (one) or UserErrors (several)

    A check that failed returns None; nothing after `done()` sees such a value.
    """

    def __init__(self) -> None:
        self.errors: list[UserError] = []

    def __call__(self, check: Callable[..., T], *args: object, **kwargs: object) -> T:
        try:
            return check(*args, **kwargs)
        except UserError as err:
            self.errors.extend(err.each())
            return None  # type: ignore[return-value]  # never read: done() raises

    def refuse(self, error: UserError) -> None:
        self.errors.extend(error.each())

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def done(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise UserErrors(self.errors)
