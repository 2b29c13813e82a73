"""Metrics (and, when tracing is on, a span) for every GraphQL operation.

Listed first among the schema extensions, so that its on_operation wraps the others:
it times the whole operation and sees the errors as the client gets them, after
MaskErrors (a masked error counts as INTERNAL_SERVER_ERROR).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from merci import metrics, observability


def _code(error: GraphQLError, parsed: bool) -> str:
    code = (error.extensions or {}).get("code")
    if isinstance(code, str) and code:
        return code
    if error.path is None and error.original_error is None:
        return "GRAPHQL_VALIDATION_FAILED" if parsed else "GRAPHQL_PARSE_FAILED"
    return "INTERNAL_SERVER_ERROR"


def _failure_code(exc: Exception) -> str:
    # Strawberry's own request errors (no query, an unknown operationName, a mutation over GET)
    return "BAD_REQUEST" if type(exc).__module__.startswith("strawberry.") else "INTERNAL_SERVER_ERROR"


def _fields(selection_set: Any) -> Iterator[tuple[str, str, FieldNode]]:
    """(response key, field name, node) of a selection set's plain fields."""
    for node in selection_set.selections if selection_set else ():
        if isinstance(node, FieldNode):
            yield (node.alias or node.name).value, node.name.value, node


class Observability(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        with observability.span("graphql") as span:
            failure: Exception | None = None
            try:
                yield
            except Exception as exc:  # a syntax error, a limit: Strawberry turns it into an error
                failure = exc
                raise
            finally:
                self._record(started, span, failure)

    def _record(self, started: float, span: Any, failure: Exception | None) -> None:
        ctx = self.execution_context
        operation = self._operation()
        result = ctx.result if failure is None else None
        errors: list[GraphQLError] = list(getattr(result, "errors", None) or ctx.pre_execution_errors or [])
        parsed = ctx.graphql_document is not None
        codes = [_code(error, parsed) for error in errors]
        if failure is not None and not any(e is failure for e in errors):
            codes.append(_code(failure, parsed) if isinstance(failure, GraphQLError) else _failure_code(failure))
        record(operation, started, span, codes, getattr(result, "data", None))

    def _operation(self) -> OperationDefinitionNode | None:
        document = self.execution_context.graphql_document
        if document is None:
            return None
        wanted = self.execution_context.operation_name
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if wanted is None:  # Strawberry runs the first one
            return operations[0] if operations else None
        return next((o for o in operations if o.name and o.name.value == wanted), None)


# (root response key, root field, ((userErrors key, its `code` key or None), ...)) per root field
Shape = tuple[tuple[str, str, tuple[tuple[str, str | None], ...]], ...]


def fields_shape(operation: OperationDefinitionNode) -> Shape:
    """What record() counts in an operation's data, read off the document once."""
    out = []
    for key, field, node in _fields(operation.selection_set):
        errors = tuple((errors_key, next((k for k, f, _ in _fields(sub.selection_set) if f == "code"), None))
                       for errors_key, sub_field, sub in _fields(node.selection_set) if sub_field == "userErrors")
        out.append((key, field, errors))
    return tuple(out)


def record(operation: OperationDefinitionNode | None, started: float, span: Any, codes: list[str],
           data: Any, shape: Shape | None = None) -> None:
    """An operation's metrics (and span attributes), as the client got its answer."""
    op_type = operation.operation.value if operation is not None else "unknown"
    name = metrics.operation_label(operation.name.value if operation is not None and operation.name else None)
    if operation is None:
        name = "invalid"  # unparsable, or an operationName that names nothing in the document
    metrics.child(metrics.GRAPHQL_OPERATIONS, name, op_type).inc()
    metrics.child(metrics.GRAPHQL_DURATION, name, op_type).observe(time.perf_counter() - started)
    for code in codes:
        metrics.child(metrics.GRAPHQL_ERRORS, code).inc()
    if operation is not None and isinstance(data, dict):
        _count_fields(shape if shape is not None else fields_shape(operation), op_type, data)
    if span is not None:
        span.update_name(f"graphql {op_type} {name}")
        span.set_attribute("graphql.operation.name", name)
        span.set_attribute("graphql.operation.type", op_type)
        if codes:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, codes[0]))


def _count_fields(shape: Shape, op_type: str, data: dict[str, Any]) -> None:
    # Root fields come from the schema (validation refused any other), so the label is bounded.
    for key, field, errors in shape:
        if key not in data:
            continue
        metrics.child(metrics.GRAPHQL_ROOT_FIELDS, op_type, field).inc()
        payload = data[key]
        if op_type != "mutation" or not isinstance(payload, dict):
            continue
        # userErrors as the client selected them (aliases included); `code` unselected: UNKNOWN.
        for errors_key, code_key in errors:
            if not isinstance(payload.get(errors_key), list):
                continue
            for item in payload[errors_key]:
                code = item.get(code_key) if code_key and isinstance(item, dict) else None
                metrics.child(metrics.USER_ERRORS, field, code if isinstance(code, str) else "UNKNOWN").inc()
