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


# ------------------------------------------------------------------ outages

RETRY_AFTER_SECONDS = 5  # what an UNAVAILABLE answer tells clients to wait (Retry-After)


class Unavailable(Exception):
    """A service Merci needs (the database, the broker) cannot be reached now. Nothing
    about the request is wrong: the faces answer UNAVAILABLE (HTTP 503, Retry-After),
    the workers' actors retry, `merci close-month` exits with its own code."""

    def __init__(self, service: str, detail: str = "") -> None:
        super().__init__(f"the {service} is unavailable" + (f": {detail}" if detail else ""))
        self.service = service  # "database", "broker" or "deadline"
        self.message = f"Merci cannot reach its {service} right now; retry in a few seconds."
        if service == "deadline":
            self.message = "Merci could not answer in time; retry in a few seconds."

    @property
    def extensions(self) -> dict[str, str]:
        return {"code": "UNAVAILABLE"}


# Connection failures by the name of a class in the exception's MRO and its module's top
# package, so that merci/ needs none of the broker clients installed to recognize theirs.
_DATABASE_ERRORS = {
    ("asyncpg", "PostgresConnectionError"),  # class 08: the connection failed or was cut
    ("asyncpg", "CannotConnectNowError"),  # 57P03: starting up, shutting down, recovering
    ("asyncpg", "AdminShutdownError"),  # 57P01: the server was stopped under us
    ("asyncpg", "CrashShutdownError"),
    ("asyncpg", "TooManyConnectionsError"),  # 53300
    ("asyncpg", "ConnectionDoesNotExistError"),
}
_BROKER_ERRORS = {
    ("redis", "ConnectionError"), ("redis", "TimeoutError"), ("redis", "BusyLoadingError"),
    ("pika", "AMQPConnectionError"), ("pika", "ChannelWrongStateError"), ("pika", "StreamLostError"),
    ("dramatiq", "BrokerConnectionError"),
    ("psycopg", "OperationalError"), ("psycopg_pool", "PoolTimeout"),  # the PostgreSQL broker's client
}


_CLIENTS = {"asyncpg": "database", "redis": "broker", "pika": "broker", "dramatiq": "broker",
            "dramatiq_postgres": "broker", "psycopg": "broker", "psycopg_pool": "broker"}


def _raised_by_client(exc: BaseException) -> str | None:
    """The service whose client raised `exc` (an OSError or a timeout from a socket), read
    off its traceback: a refused connect is an outage when asyncpg or a broker client made
    it, and anything else (a missing file, a fetch) when something else did."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        package = str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0]
        found = _CLIENTS.get(package, found)
        tb = tb.tb_next
    return found


def _cut_while_idle(exc: BaseException) -> bool:
    """PostgreSQL's goodbye (a FATAL error: shutting down) read on an idle connection whose
    socket asyncpg has not yet seen close: for that instant the connection is still open,
    "consuming an error" (its protocol state 2), and the statement of whoever took it from
    the pool fails "another operation (2) is in progress" (asyncpg's InternalClientError).
    That request met a restart, not a bug (it answered a bare 500); a connection used by two
    operations at once, the bug, names the other one's state."""
    return (type(exc).__name__ == "InternalClientError" and type(exc).__module__.startswith("asyncpg")
            and "another operation (2) is in progress" in str(exc))


def unavailable(exc: BaseException | None) -> Unavailable | None:
    """The outage `exc` (or what caused it) stands for, or None when it is anything else.

    asyncpg's InterfaceError "pool is closing" and its other misuse errors are bugs, not
    outages: only the connection errors above count, and an OSError or a timeout only
    when a database or broker client raised it."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, Unavailable):
            return exc
        for cls in type(exc).__mro__:
            key = (cls.__module__.partition(".")[0], cls.__name__)
            if key in _DATABASE_ERRORS:
                return Unavailable("database", str(exc))
            if key in _BROKER_ERRORS:
                return Unavailable("broker", str(exc))
        if _cut_while_idle(exc):
            return Unavailable("database", "the server closed the connection (a restart?)")
        if isinstance(exc, OSError | TimeoutError) and (service := _raised_by_client(exc)) is not None:
            return Unavailable(service, str(exc) or type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
