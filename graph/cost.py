"""What an operation costs, priced before it runs (Shopify's model, issue 16).

An object costs 1 and a scalar nothing; a connection costs 1 plus its page size (`first`
or `last`, else DEFAULT_FIRST) times what one of its nodes costs, its edges and pageInfo
being free; a list of objects, its declared size (LIST_SIZES; `_entities` the number of
representations) times one item; a mutation 10 more. Values made in memory with their
parent (Money, UserError, FacetCount) are free, as scalars are. Multiplied through nesting, so
`things(first: 100) { nodes { owner { things(first: 100) { … } } } }` costs 100 × 100
nodes. Fragments are expanded (an abstract type costs its dearest possible type),
aliases counted each, `@skip`/`@include` and variables resolved; introspection (`__…`)
is free (graph.limits bounds its depth).

The actual cost is the same sum over what the answer holds: a page of 3 costs 3 nodes,
a null object nothing. Both are reported in `extensions.cost` with the caller's budget
(graph.throttle), which is charged the requested cost before execution and refunded the
difference after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
)
from graphql.execution.values import get_argument_values, get_directive_values, get_variable_values
from graphql.type import GraphQLIncludeDirective, GraphQLSkipDirective
from strawberry.extensions import SchemaExtension

from graph.relay import DEFAULT_FIRST, MAX_FIRST
from merci.config import Settings
from merci.throttle import Buckets, Status

OBJECT = 1
MUTATION = 10
# Lists of objects that are not connections: how long each may be (what the code bounds it by).
LIST_SIZES: dict[str, int] = {
    "Account.earningsByMonth": 24,  # months with earnings (a couple of years)
    "Month.shares": 100,  # things clicked in a month
    "Query.categories": 20,  # Flattr's categories
    "SearchFacets.categories": 20,
    "SearchFacets.languages": 20,
    "WebhookDelivery.attemptLog": 11,  # merci.config: webhook_max_retries + 1
    # Mutations' payloads: as many as their inputs hold (graph.limits bounds a document).
    "BulkListSitesPayload.sites": 100,
    "RegisterThingsPayload.things": 100,
    "SubmitClicksPayload.clicks": 100,
}
# Free as scalars are: a connection's bookkeeping (and its edges), and values made in
# memory with their parent (amounts, refusals, facet counts, highlights' ranges): lists of them
# need no size.
FREE = frozenset({"PageInfo", "Money", "UserError", "FacetCount", "TextRange"})


def object_cost(name: str) -> int:
    """What one object of the type `name` costs in an answer, its fields apart: -1 for the
    free types that cost nothing with all they hold (PageInfo's fields are scalars)."""
    if name in FREE:
        return -1
    return 0 if name.endswith("Edge") else OBJECT


def is_connection(type_: GraphQLObjectType) -> bool:
    return type_.name.endswith("Connection") and "pageInfo" in type_.fields


class Pricer:
    """Prices one operation of `document` with `variables` (as sent: coerced as execution would)."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, operation_name: str | None,
                 variables: dict[str, Any] | None) -> None:
        self.schema = schema
        self.operation = get_operation_ast(document, operation_name)
        # Coerced as execution will (bad ones: execution words them; the defaults are priced).
        coerced = get_variable_values(schema, self.operation.variable_definitions or (), variables or {}) \
            if self.operation is not None else []
        self.variables: Any = None if isinstance(coerced, list) else coerced
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def root(self) -> tuple[GraphQLObjectType | None, int]:
        op = self.operation
        if op is None:
            return None, 0
        if op.operation is OperationType.MUTATION:
            return self.schema.mutation_type, MUTATION
        if op.operation is OperationType.SUBSCRIPTION:
            return self.schema.subscription_type, 0
        return self.schema.query_type, 0

    def requested(self) -> int:
        root, base = self.root()
        if root is None or self.operation is None:
            return 0
        return base + self.selections(root, self.operation.selection_set, None, frozenset())

    def actual(self, data: dict[str, Any] | None) -> int:
        root, base = self.root()
        if root is None or self.operation is None or data is None:
            return 0
        return base + self.selections(root, self.operation.selection_set, data, frozenset())

    # ------------------------------------------------------------------ the sum

    def selections(self, parent: Any, selection_set: SelectionSetNode, data: dict[str, Any] | None,
                   spread: frozenset[str]) -> int:
        """The cost of a selection on `parent` (an abstract type: its dearest object type)."""
        if isinstance(parent, GraphQLAbstractType):
            return max((self._on_object(t, selection_set, data, spread)
                        for t in self.schema.get_possible_types(parent)), default=0)
        return self._on_object(parent, selection_set, data, spread)

    def _on_object(self, type_: GraphQLObjectType, selection_set: SelectionSetNode, data: dict[str, Any] | None,
                   spread: frozenset[str]) -> int:
        total = 0
        for sel in selection_set.selections:
            if not self._included(sel):
                continue
            if isinstance(sel, FieldNode):
                name = sel.name.value
                if name.startswith("__") or name not in type_.fields:
                    continue
                if data is not None:
                    key = (sel.alias or sel.name).value
                    if key not in data:
                        continue
                    total += self.field(type_, type_.fields[name], sel, data[key], measured=True)
                else:
                    total += self.field(type_, type_.fields[name], sel, None, measured=False)
            elif isinstance(sel, InlineFragmentNode):
                if self._applies(sel.type_condition and sel.type_condition.name.value, type_):
                    total += self._on_object(type_, sel.selection_set, data, spread)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in spread and self._applies(
                        fragment.type_condition.name.value, type_):
                    total += self._on_object(type_, fragment.selection_set, data, spread | {name})
        return total

    def field(self, parent: GraphQLObjectType, field: GraphQLField, node: FieldNode, value: Any,
              measured: bool) -> int:
        named = get_named_type(field.type)
        if not isinstance(named, GraphQLObjectType | GraphQLAbstractType) or node.selection_set is None:
            return 0
        if named.name in FREE - {"PageInfo"}:
            return 0
        own = 0 if named.name in FREE or named.name.endswith("Edge") else OBJECT
        if measured:  # the answer's own shape: as many as it holds, nothing for a null
            if value is None:
                return 0
            if isinstance(value, list):
                return sum(own + self.selections(named, node.selection_set, item, frozenset())
                           for item in value if item is not None)
            return own + self.selections(named, node.selection_set, value, frozenset())
        if isinstance(named, GraphQLObjectType) and is_connection(named):
            return own + self._page(self._arguments(field, node)) * self._per_node(named, node.selection_set)
        one = own + self.selections(named, node.selection_set, None, frozenset())
        return one * self._size(parent, field, node) if _is_list(field.type) else one

    def _per_node(self, connection: GraphQLObjectType, selection_set: SelectionSetNode) -> int:
        """What a connection's selection costs per node: `nodes` and `edges { node }` each."""
        total = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode) and self._included(sel) and sel.name.value in ("nodes", "edges"):
                total += self.field(connection, connection.fields[sel.name.value], sel, None, measured=False)
            elif isinstance(sel, InlineFragmentNode | FragmentSpreadNode):
                inner = sel.selection_set if isinstance(sel, InlineFragmentNode) else getattr(
                    self.fragments.get(sel.name.value), "selection_set", None)
                if inner is not None:
                    total += self._per_node(connection, inner)
        return total

    def _size(self, parent: GraphQLObjectType, field: GraphQLField, node: FieldNode) -> int:
        name = node.name.value
        if name in ("nodes", "edges"):
            return 1  # (a connection's lists: its page size multiplies them, see _per_node)
        if name == "_entities":
            representations = self._arguments(field, node).get("representations") or ()
            return max(len(representations), 1)
        return LIST_SIZES.get(f"{parent.name}.{name}", DEFAULT_LIST)

    @staticmethod
    def _page(args: dict[str, Any]) -> int:
        size = args.get("first") or args.get("last") or DEFAULT_FIRST
        return min(int(size), MAX_FIRST) if isinstance(size, int) and size > 0 else DEFAULT_FIRST

    def _arguments(self, field: GraphQLField, node: FieldNode) -> dict[str, Any]:
        try:
            return get_argument_values(field, node, self.variables)
        except Exception:  # a bad variable: execution words it; price the defaults
            return {}

    def _included(self, node: Any) -> bool:
        if not node.directives:
            return True
        try:
            skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
            include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        except Exception:
            return True
        return not (skip and skip.get("if")) and not (include and include.get("if") is False)

    def _applies(self, condition: str | None, type_: GraphQLObjectType) -> bool:
        if condition is None or condition == type_.name:
            return True
        target = self.schema.get_type(condition)
        return isinstance(target, GraphQLAbstractType) and self.schema.is_sub_type(target, type_)


DEFAULT_LIST = 10  # a list of objects not in LIST_SIZES (tests/graph/test_cost.py wants each declared)


def _is_list(type_: Any) -> bool:
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    return isinstance(inner, GraphQLList)


# ------------------------------------------------------------------ the budget


def caller(principal: Any, ip: str) -> str:
    """Whose bucket a request spends: its API key's, its account's, else its address's."""
    if principal.api_key_id is not None:
        return f"key:{principal.api_key_id}"
    if principal.account_id is not None:
        return f"account:{principal.account_id}"
    return f"ip:{ip}"


def report(requested: int, actual: int, status: Status | None, settings: Settings) -> dict[str, Any]:
    """`extensions.cost`, in Shopify's shape."""
    size = settings.query_cost_bucket
    return {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": {
        "maximumAvailable": size, "currentlyAvailable": size if status is None else int(status.available),
        "restoreRate": settings.query_cost_restore_rate}}


def over_limit(requested: int, limit: int) -> GraphQLError:
    return GraphQLError(
        f"this query costs {requested}, more than the {limit} a request may cost: ask for smaller pages"
        " or fewer fields (docs/api.md, Query cost)",
        extensions={"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": limit})


def throttled(requested: int, status: Status) -> GraphQLError:
    wait = status.retry_after(requested)
    return GraphQLError(
        f"this query costs {requested} and {int(status.available)} of your budget is left: try again in {wait} s"
        f" (it refills at {status.rate:g} a second)",
        extensions={"code": "THROTTLED", "retryAfter": wait})


class QueryCost(SchemaExtension):
    """Prices the operation before it runs: refused above the limit (MAX_COST_EXCEEDED), or
    when the caller's bucket lacks it (THROTTLED, with Retry-After); reports the cost."""

    def __init__(self, *, execution_context: Any = None) -> None:
        super().__init__()
        self.cost: dict[str, Any] | None = None

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        ec = self.execution_context
        ctx = ec.context
        buckets: Buckets | None = getattr(ctx, "buckets", None)
        if ec.result is not None or buckets is None or ec.graphql_document is None:
            yield
            return
        settings = ctx.settings
        pricer = Pricer(ec.schema._schema, ec.graphql_document, ec.operation_name, ec.variables)
        requested = pricer.requested()
        if requested > settings.query_cost_limit:
            self.cost = report(requested, 0, None, settings)
            ec.result = ExecutionResult(data=None, errors=[over_limit(requested, settings.query_cost_limit)])
            yield
            return
        who = caller(ctx.principal, ctx.client_ip)
        status = await buckets.take(who, requested)
        if not status.taken:
            self.cost = report(requested, 0, status, settings)
            error = throttled(requested, status)
            if ctx.response is not None:
                ctx.response.headers["Retry-After"] = str(error.extensions["retryAfter"])  # type: ignore[index]
            ec.result = ExecutionResult(data=None, errors=[error])
            yield
            return
        yield
        data = ec.result.data if ec.result is not None else None
        actual = min(pricer.actual(data), requested)
        if actual < requested:  # what was not spent goes back
            status = await buckets.take(who, actual - requested)
        self.cost = report(requested, actual, status, settings)

    def get_results(self) -> dict[str, Any]:
        return {} if self.cost is None else {"cost": self.cost}
