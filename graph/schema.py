"""The Strawberry schema class every face builds on."""

from __future__ import annotations

from typing import Any

import strawberry
import structlog
from graphql import GraphQLError
from strawberry.utils.logging import StrawberryLogger

from graph.errors import name_error, should_mask
from merci import metrics
from merci.errors import unavailable

log = structlog.get_logger("merci.graphql")


class Schema(strawberry.federation.Schema):
    """Federation 2 schema whose error log tells a client's mistake from ours: an
    exception nobody meant (what MaskErrors hides) is logged at `error` with its
    traceback, as Strawberry does; a request error (syntax, validation, a bad variable,
    a refused argument) is the client's and is logged at `info`, so that an alert on
    error lines fires on bugs, not on clients."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Every error passes here once, before MaskErrors (which names the masked ones).
        for error in errors:
            if should_mask(error) and (outage := unavailable(error.original_error)) is not None:
                # Not a bug: the database or the broker is out of reach (answered UNAVAILABLE).
                metrics.child(metrics.UNAVAILABLE, outage.service).inc()
                log.warning("unavailable", service=outage.service, error=str(error.original_error),
                            path=error.path)
            elif should_mask(error):
                StrawberryLogger.error(error, execution_context)
            else:
                name_error(error)
                code = (error.extensions or {}).get("code")
                log.info("graphql_request_error", error=error.message, code=code)
