"""Schema extensions that bound what one request may cost, and refuse text that
PostgreSQL cannot store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    StringValueNode,
    ValidationRule,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from graph.cost import QueryCost
from graph.errors import MaskUnexpected, should_mask
from graph.observability import Observability

MAX_DEPTH = 12
# Introspection is exempt from MAX_DEPTH (GraphiQL's own query nests ~13 levels of
# ofType) but not unbounded: nested __type/ofType/fields is a known amplification.
MAX_TOTAL_DEPTH = 20
MAX_TOKENS = 3000
MAX_ALIASES = 30


class TotalDepthRule(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {f.name.value: f for f in self.context.document.definitions
                     if f.__class__.__name__ == "FragmentDefinitionNode"}

        def depth(sel: Any, seen: frozenset[str]) -> int:
            if isinstance(sel, FieldNode):
                if not sel.selection_set:
                    return 0
                return 1 + max((depth(s, seen) for s in sel.selection_set.selections), default=0)
            if isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                if name in seen or name not in fragments:
                    return 0
                return max((depth(s, seen | {name}) for s in fragments[name].selection_set.selections),
                           default=0)
            if isinstance(sel, InlineFragmentNode):
                return max((depth(s, seen) for s in sel.selection_set.selections), default=0)
            return 0

        total = max((depth(s, frozenset()) for s in node.selection_set.selections), default=0)
        if total > MAX_TOTAL_DEPTH:
            self.report_error(GraphQLError(
                f"operation exceeds maximum operation depth of {MAX_TOTAL_DEPTH} (introspection included)",
                node))


NUL_MESSAGE = "text may not contain the NUL character (U+0000)"


def has_nul(value: Any) -> bool:
    """Whether a variable's value holds a NUL anywhere (PostgreSQL's text cannot)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


class NoNulText(ValidationRule):
    """A string literal with a NUL is refused up front, as a request error; otherwise it
    would reach PostgreSQL, which refuses it, as an unexpected error."""

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if "\x00" in node.value:
            self.report_error(GraphQLError(NUL_MESSAGE, node, extensions={"code": "BAD_USER_INPUT"}))


class NoNulVariables(SchemaExtension):
    """The same for variables: refused before execution, with nothing run."""

    def on_execute(self) -> Iterator[None]:
        if has_nul(self.execution_context.variables):
            self.execution_context.result = ExecutionResult(
                data=None, errors=[GraphQLError(NUL_MESSAGE, extensions={"code": "BAD_USER_INPUT"})])
        yield


# Strawberry's limiters make a new rule class per instance (so per request), and
# ValidationCache keys on the rule classes: build the rules once, or it never hits.
RULES = [rule for proto in (QueryDepthLimiter(max_depth=MAX_DEPTH), MaxAliasesLimiter(max_alias_count=MAX_ALIASES))
          for rule in proto.validation_rules] + [TotalDepthRule, NoNulText]


class NoServiceSdl(ValidationRule):
    """Federation's `_service { sdl }` is the subgraph's schema for a composer to read.
    Nothing reads it in production (the gateway serves the committed
    gateway/supergraph.graphql, composed from `merci schema export`), so outside
    development and test it is refused like introspection. `_entities` stays: the
    gateway's query plans use it."""

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        if node.name.value == "_service" and self.context.get_parent_type() is self.context.schema.query_type:
            self.report_error(GraphQLError(
                "`_service` is not served here: the public schema is schema.graphql", node))


# Outside development and test the schema is not for reading: the public one is schema.graphql.
PRODUCTION_RULES = [*RULES, NoSchemaIntrospectionCustomRule, NoServiceSdl]


class RequestLimits(AddValidationRules):
    def __init__(self, production: bool = False) -> None:
        super().__init__(list(PRODUCTION_RULES if production else RULES))


def extensions(extra: list[type[SchemaExtension]] | None = None, *, production: bool = False) -> list[object]:
    """The gateway applies the same limits (gateway/policy.mjs), so that an operation is
    answered alike through it and by one process. `production`: the schema is closed
    (no introspection, no `_service`), as everywhere but development and test
    (config.Settings.dev_env)."""
    return [
        Observability,  # first: it wraps the others, so it times everything and sees errors as masked
        lambda: RequestLimits(production),
        NoNulVariables,
        QueryCost,  # after the refusals above: a refused request spends nothing
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: MaskUnexpected(should_mask_error=should_mask, error_message="Unexpected error."),
        # Clients send the same few documents again and again: parse and validate each once.
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        *(extra or []),
    ]
