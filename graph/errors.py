"""userErrors, and the errors that clients may see (everything else is masked)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors

from merci.errors import RETRY_AFTER_SECONDS, UserError, unavailable
from merci.ratelimit import RateLimited

T = TypeVar("T")


# Shareable: both subgraphs return userErrors (Federation 2 would refuse it otherwise).
@strawberry.federation.type(name="UserError", shareable=True,
                            description="Why an input was refused; nothing was changed.")
class UserErrorType:
    field: list[str] | None
    message: str
    code: str

    @staticmethod
    def of(err: UserError) -> UserErrorType:
        # A dotted field locates it in a nested input: "admin.email" is ["admin", "email"].
        return UserErrorType(field=err.field.split(".") if err.field else None, message=err.message, code=err.code)


class ClientError(Exception):
    """An error about the request itself (bad argument, limit): shown, never masked."""

    def __init__(self, message: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.extensions = {"code": code}


def should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or error.path is None:
        # Syntax, validation and variable errors: about the request, never internal.
        return False
    return not isinstance(original, ClientError | UserError | GraphQLError | RateLimited)


def error_code(error: GraphQLError) -> str:
    """The code of an error raised without one, named as the gateways name theirs: a
    document that does not parse, one that does not validate, variables that do not
    coerce, and anything else (a bug: masked, see should_mask)."""
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if error.path is None and error.message.startswith("Variable '$"):
        return "BAD_USER_INPUT"
    if error.path is None and error.original_error is None:
        return "GRAPHQL_VALIDATION_FAILED"
    return "INTERNAL_SERVER_ERROR"


def name_error(error: GraphQLError) -> None:
    """Give `error` its code (extensions.code) if it has none, so that every error a
    client sees has one: a client tells a request error from a bug by it, and the answer
    through a gateway, which names its errors so, is the answer of the process itself."""
    if not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": error_code(error)}


class MaskUnexpected(MaskErrors):
    """Strawberry's MaskErrors, with the code that the gateways give a masked error. An
    outage (the database or the broker unreachable: merci.errors.unavailable) is not a
    bug: it answers UNAVAILABLE with a sentence to show, its details masked all the same."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        outage = unavailable(error.original_error)
        if outage is not None:
            masked.message = outage.message
            masked.extensions = {"code": "UNAVAILABLE", "retryAfter": RETRY_AFTER_SECONDS}
        else:
            masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
        return masked


def has_outage(data: dict[str, Any]) -> bool:
    """Whether a GraphQL result holds an UNAVAILABLE error (graph.http answers it 503)."""
    return any(isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "UNAVAILABLE"
               for e in data.get("errors") or ())


async def attempt(
    work: Callable[[], Awaitable[T]], on_error: Callable[[list[UserErrorType]], T]
) -> T:
    """Run a mutation's work; a UserError becomes a payload with userErrors.

    The work runs inside its own transaction, so a UserError raised in it has
    already rolled everything back: refused input changes nothing.
    """
    try:
        return await work()
    except UserError as err:  # all of them, when an input was refused for several reasons (UserErrors)
        return on_error([UserErrorType.of(e) for e in err.each()])


def user_errors_only(payload_cls: type[T]) -> Callable[[list[UserErrorType]], T]:
    def build(errors: list[UserErrorType]) -> T:
        fields: dict[str, Any] = {
            name: None for name in payload_cls.__annotations__ if name != "user_errors"
        }
        return payload_cls(user_errors=errors, **fields)

    return build
