"""Precompiled plans for the hottest mutations (and a few queries).

A click is one small mutation sent thousands of times a second, and Strawberry's
general execution (resolver wrapping, extensions' hooks, result completion) costs
several times what the click's own work does. For root fields registered here, the
API answers a document it has already planned:

- the document is parsed and validated once, with graphql-core and the same rules
  Strawberry applies (graph.limits), then kept in a bounded cache by its text;
- a plan exists only for a single mutation (or query) operation whose one root field
  is registered and whose selection is plain fields (aliases and `__typename` allowed;
  no fragments, no directives) of types the handler fills in full;
- variables and arguments are coerced as in a normal execution: by graphql-core, or for
  the usual kinds (scalars, enums, input objects of strings) by a quick path that a
  property test holds to graphql-core's answers;
- the handler returns the whole payload (GraphQL field names, output values already
  serialized), and the response is shaped from the selection.

Anything else (another document, bad variables, a field the handler does not fill)
goes the normal way, so a client cannot tell the two paths apart; a test sends the
same requests through both and compares the answers byte for byte. A query handler
may also decline (raise Decline) before answering, e.g. on a client error: queries
change nothing, so the normal path simply runs it again and words the error.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLID,
    GraphQLInputObjectType,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    VariableNode,
    get_named_type,
    is_leaf_type,
    is_non_null_type,
    parse,
    specified_rules,
    type_from_ast,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.cost import MUTATION, Pricer, caller, object_cost, report
from graph.limits import MAX_TOKENS, RULES, has_nul
from graph.observability import Shape, fields_shape, record
from graph.ratelimit import Hit, admit, send_graphql_refusal
from graph.unavailable import counted
from graph.unavailable import graphql_error as unavailable_error
from merci import metrics, observability
from merci.errors import RETRY_AFTER_SECONDS, unavailable
from merci.ratelimit import RateLimited

log = logging.getLogger("strawberry.execution")  # where Strawberry logs what it masks

# (context, coerced arguments) -> payload as a dict of GraphQL field names
Handler = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]
# (context, coerced arguments, names of the fields selected at any depth) -> payload
QueryHandler = Callable[[Any, dict[str, Any], frozenset[str]], Awaitable[dict[str, Any]]]


class Decline(Exception):
    """Raised by a query handler: answer this request the normal way."""


@dataclass(frozen=True)
class Field:
    key: str  # the response key (alias or name)
    name: str
    children: tuple[Field, ...] | None  # None for a leaf
    typename: str  # of the object this field is selected on
    is_list: bool
    cost: int = -1  # what each object it holds costs (graph.cost.object_cost): -1, nothing at all


@dataclass(frozen=True)
class InputSpec:
    """A variable of a scalar or enum type (coerced by the type's own parse_value, as
    graphql-core does), or of an input object type whose fields are all String or ID."""

    name: str
    required: bool
    leaf: GraphQLLeafType | None  # a scalar or enum type
    fields: dict[str, tuple[bool, Any]]  # an input object's: field name -> (required, default or Undefined)


@dataclass(frozen=True)
class RootArgument:
    """An argument of the root field, given as a variable or not given."""

    out_name: str  # the resolver's name for it
    variable: str | None
    default: Any  # the argument's default value, or Undefined
    required: bool  # of a non-null type


@dataclass(frozen=True)
class Plan:
    root: FieldNode
    root_key: str
    root_name: str
    root_type: GraphQLObjectType  # Mutation or Query
    operation: OperationDefinitionNode
    selection: tuple[Field, ...]
    inputs: tuple[InputSpec, ...] | None  # None: coerce with graphql-core every time
    root_arguments: tuple[RootArgument, ...] | None  # None: some argument is not a variable
    counted: Shape  # what graph.observability counts in the answer
    names: frozenset[str]  # of the fields selected, at any depth: a query handler fills only those
    root_cost: tuple[int, int, bool]  # the operation's own cost, the root object's, whether a list

    def actual_cost(self, payload: Any) -> int:
        """graph.cost.Pricer.actual of the answer holding `payload` (the handler's), read off
        the plan's selection: the same sum, without walking the document and the schema
        for every click (tests/graph/test_fastpath.py compares both paths' extensions.cost)."""
        base, own, is_list = self.root_cost
        if payload is None or own < 0:
            return base
        if is_list:
            return base + sum(own + _actual(self.selection, item) for item in payload if item is not None)
        return base + own + _actual(self.selection, payload)

    def arguments(self, schema: GraphQLSchema, variables: dict[str, Any]) -> dict[str, Any] | None:
        """The root field's arguments as graphql-core would coerce them, or None when
        the variables are invalid or hold a NUL (then the normal path words the errors)."""
        quick = self.quick_arguments(variables)
        if quick is not None:
            return quick
        if has_nul(variables):
            return None  # the normal path refuses it (the quick one never takes a NUL)
        values = get_variable_values(schema, self.operation.variable_definitions or (), variables)
        if isinstance(values, list):
            return None
        try:
            return get_argument_values(self.root_type.fields[self.root_name], self.root, values)
        except GraphQLError:
            return None

    def quick_arguments(self, variables: dict[str, Any]) -> dict[str, Any] | None:
        """The usual case (values of the variables' types, every argument a variable),
        coerced as graphql-core would without its general machinery; None when unsure."""
        if self.inputs is None or self.root_arguments is None:
            return None
        coerced = _quick_coerce(self.inputs, variables)
        if coerced is None:
            return None
        out: dict[str, Any] = {}
        for arg in self.root_arguments:  # as graphql-core's get_argument_values
            if arg.variable is None or arg.variable not in coerced:
                if arg.default is not Undefined:
                    out[arg.out_name] = arg.default
                elif arg.required:
                    return None
                continue
            value = coerced[arg.variable]
            if value is None and arg.required:
                return None
            out[arg.out_name] = value
        return out


def _quick_coerce(inputs: tuple[InputSpec, ...], variables: dict[str, Any]) -> dict[str, Any] | None:
    """The variables' values as graphql-core's coerce_variable_values gives them, or None
    when unsure (an invalid value among them: graphql-core words the error)."""
    if len(variables) > len(inputs):
        return None
    out: dict[str, Any] = {}
    for spec in inputs:
        value = variables.get(spec.name, Undefined)
        if value is Undefined or value is None:
            if spec.required:
                return None
            if value is None:
                out[spec.name] = None
            continue
        if spec.leaf is not None:
            try:
                parsed = spec.leaf.parse_value(value)
            except Exception:
                return None
            if parsed is Undefined or (isinstance(parsed, str) and "\x00" in parsed):
                return None
            out[spec.name] = parsed
            continue
        if not isinstance(value, dict) or not value.keys() <= spec.fields.keys():
            return None
        fields: dict[str, Any] = {}
        for name, (required, default) in spec.fields.items():
            given = value.get(name, Undefined)
            if given is Undefined:
                if required:
                    return None
                if default is not Undefined:
                    fields[name] = default
            elif (isinstance(given, str) and "\x00" not in given) or (given is None and not required):
                fields[name] = given
            else:
                return None
        out[spec.name] = fields
    return out


@dataclass(frozen=True)
class FastMutation:
    handler: Handler
    fills: dict[str, frozenset[str]]  # per object type, the fields the handler's payload always has
    # The stricter limits the handler counts (a click's), if any, for this caller: counted
    # with the request's own in one round trip (graph.ratelimit.admit).
    limits: Callable[[Scope, Any], list[Hit]] | None = None


@dataclass(frozen=True)
class FastQuery:
    handler: QueryHandler  # fills the selected fields of `fills`; may raise Decline
    fills: dict[str, frozenset[str]]


class Planner:
    def __init__(self, schema: GraphQLSchema, mutations: dict[str, FastMutation],
                 queries: dict[str, FastQuery] | None = None, cache_size: int = 256) -> None:
        self.schema = schema
        self.mutations = mutations
        self.queries = queries or {}
        self.rules = [*specified_rules, *RULES]
        self.cache: OrderedDict[str, Plan | None] = OrderedDict()
        self.cache_size = cache_size

    def plan(self, query: str, operation_name: str | None) -> Plan | None:
        key = f"{operation_name}\0{query}"
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        plan = self._compile(query, operation_name)
        self.cache[key] = plan
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return plan

    def _compile(self, query: str, operation_name: str | None) -> Plan | None:
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except Exception:  # a syntax error: the normal path words it
            return None
        if validate(self.schema, document, self.rules):
            return None
        if len(document.definitions) != 1 or not isinstance(document.definitions[0], OperationDefinitionNode):
            return None
        operation = document.definitions[0]
        if operation.operation is OperationType.MUTATION:
            fields, root_type = self.mutations, self.schema.mutation_type
        elif operation.operation is OperationType.QUERY:
            fields, root_type = self.queries, self.schema.query_type  # type: ignore[assignment]
        else:
            return None
        if operation.directives:
            return None
        if operation_name is not None and (operation.name is None or operation.name.value != operation_name):
            return None
        selections = operation.selection_set.selections
        if len(selections) != 1 or not isinstance(selections[0], FieldNode):
            return None
        root = selections[0]
        fast = fields.get(root.name.value)
        if fast is None or root.directives or root_type is None:
            return None
        field_def = root_type.fields[root.name.value]
        selection = self._selection(root, field_def.type, fast)
        if selection is None:
            return None
        root_inner = field_def.type.of_type if isinstance(field_def.type, GraphQLNonNull) else field_def.type
        root_cost = (MUTATION if operation.operation is OperationType.MUTATION else 0,
                     object_cost(get_named_type(field_def.type).name), isinstance(root_inner, GraphQLList))
        return Plan(root, (root.alias or root.name).value, root.name.value, root_type, operation, selection,
                    self._inputs(operation), _root_arguments(root, field_def), fields_shape(operation),
                    frozenset(_names(selection)), root_cost)

    def _inputs(self, operation: OperationDefinitionNode) -> tuple[InputSpec, ...] | None:
        specs: list[InputSpec] = []
        for definition in operation.variable_definitions or ():
            type_ = type_from_ast(self.schema, definition.type)
            inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
            required = isinstance(type_, GraphQLNonNull)
            if definition.default_value is not None:
                return None
            if is_leaf_type(inner):
                specs.append(InputSpec(definition.variable.name.value, required, inner, {}))
                continue
            if not isinstance(inner, GraphQLInputObjectType):
                return None
            fields: dict[str, tuple[bool, Any]] = {}
            for name, field in inner.fields.items():
                field_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
                if field.out_name not in (None, name) or field_type not in (GraphQLString, GraphQLID):
                    return None
                fields[name] = (isinstance(field.type, GraphQLNonNull), field.default_value)
            specs.append(InputSpec(definition.variable.name.value, required, None, fields))
        return tuple(specs)

    def _selection(self, node: FieldNode, type_: Any, fast: FastMutation | FastQuery) -> tuple[Field, ...] | None:
        named = get_named_type(type_)
        if not isinstance(named, GraphQLObjectType) or node.selection_set is None:
            return None
        fills = fast.fills.get(named.name, frozenset())
        out: list[Field] = []
        for sel in node.selection_set.selections:
            if not isinstance(sel, FieldNode) or sel.directives or sel.arguments:
                return None
            name = sel.name.value
            key = (sel.alias or sel.name).value
            if name == "__typename":
                out.append(Field(key, name, None, named.name, False))
                continue
            if name not in fills:
                return None
            sub_type = named.fields[name].type
            children = None
            if sel.selection_set is not None:
                children = self._selection(sel, sub_type, fast)
                if children is None:
                    return None
            inner = sub_type.of_type if isinstance(sub_type, GraphQLNonNull) else sub_type
            out.append(Field(key, name, children, named.name, isinstance(inner, GraphQLList),
                             -1 if children is None else object_cost(get_named_type(sub_type).name)))
        return tuple(out)


def _root_arguments(root: FieldNode, field_def: GraphQLField) -> tuple[RootArgument, ...] | None:
    given: dict[str, str] = {}
    for node in root.arguments:
        if not isinstance(node.value, VariableNode):
            return None
        given[node.name.value] = node.value.name.value
    return tuple(RootArgument(arg.out_name or name, given.get(name), arg.default_value, is_non_null_type(arg.type))
                 for name, arg in field_def.args.items())


def _actual(fields: tuple[Field, ...], value: dict[str, Any]) -> int:
    total = 0
    for f in fields:
        if f.cost < 0:
            continue
        v = value[f.name]
        if v is None:
            continue
        if f.is_list:
            total += sum(f.cost + _actual(f.children or (), item) for item in v if item is not None)
        else:
            total += f.cost + _actual(f.children or (), v)
    return total


def _names(fields: tuple[Field, ...]) -> Iterator[str]:
    for f in fields:
        yield f.name
        yield from _names(f.children or ())


def shape(fields: tuple[Field, ...], value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        if f.name == "__typename":
            out[f.key] = f.typename
            continue
        v = value[f.name]
        if f.children is None or v is None:
            out[f.key] = v
        elif f.is_list:
            out[f.key] = [None if item is None else shape(f.children, item) for item in v]
        else:
            out[f.key] = shape(f.children, v)
    return out


class FastPath:
    """ASGI middleware: answers planned POSTs to `path` directly, hands everything
    else (and anything it is unsure of) to `app`, the rest of the stack.

    It sits inside the request-id/metrics/access-log middleware and outside
    Starlette's routing, so a planned request skips only the layers that have
    nothing to do for it. `admit` authenticates the request as the normal path
    would (it returns False when the normal path would refuse it, so that path
    words the refusal); `context` builds the resolvers' context.
    """

    def __init__(self, app: ASGIApp, *, path: str, route: Any, schema: GraphQLSchema,
                 mutations: dict[str, FastMutation], admit: Callable[[Scope], Awaitable[bool]],
                 context: Callable[[Request], Awaitable[Any]], queries: dict[str, FastQuery] | None = None) -> None:
        self.app = app
        self.path = path
        self.route = route
        self.planner = Planner(schema, mutations, queries)
        self.costs: dict[int, tuple[Plan, Pricer, int]] = {}  # see price
        self.admit = admit
        self.context = context

    def price(self, plan: Plan, variables: dict[str, Any] | None) -> tuple[Pricer, int]:
        """The plan's pricer and requested cost: kept with the plan when no variable can change
        it (no `first` or `last` from a variable: a click's), so a click does not coerce its
        variables twice nor walk its selection each time."""
        kept = self.costs.get(id(plan))
        if kept is not None and kept[0] is plan:
            return kept[1], kept[2]
        pricer = Pricer(self.planner.schema, DocumentNode(definitions=(plan.operation,)), None, variables)
        requested = pricer.requested()
        if not any(isinstance(node.value, VariableNode) and node.name.value in ("first", "last")
                   for node in _arguments(plan.operation)):
            if len(self.costs) > 1024:
                self.costs.clear()
            self.costs[id(plan)] = (plan, pricer, requested)
        return pricer, requested

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
        if not content_type.startswith(b"application/json"):
            await self.app(scope, receive, send)
            return
        body, more, gone = await read_body(receive)
        if gone:
            return  # the client left before sending its request: nobody to answer
        if not more and await self._try(scope, body, send):
            return
        await self.app(scope, replay_body(body, more, receive), send)

    async def _try(self, scope: Scope, body: bytes, send: Send) -> bool:
        try:
            request = orjson.loads(body)
        except ValueError:
            return False
        if not isinstance(request, dict) or not isinstance(request.get("query"), str) or request.get("extensions"):
            return False
        operation_name = request.get("operationName")
        variables = request.get("variables")
        if operation_name is not None and not isinstance(operation_name, str):
            return False
        if variables is not None and not isinstance(variables, dict):
            return False
        plan = self.planner.plan(request["query"], operation_name)
        if plan is None:
            return False
        schema = self.planner.schema
        args = plan.arguments(schema, variables or {})
        if args is None:  # bad variables: the normal path words the errors
            return False
        if not await self.admit(scope):  # (authenticated; the limits are counted below)
            return False
        scope["route"] = self.route  # as the router would have set it, for the access log and metrics
        context = await self.context(Request(scope))
        # Priced and charged as graph.cost.QueryCost does; a refusal is left to the normal path to word.
        pricer, requested = self.price(plan, variables)
        buckets, settings = context.buckets, context.settings
        if buckets is not None and requested > settings.query_cost_limit:
            return False
        principal = context.principal
        who = caller(principal, context.client_ip)
        mutation = self.planner.mutations.get(plan.root_name) if plan.operation.operation is OperationType.MUTATION \
            else None
        limits = mutation.limits(scope, principal) if mutation is not None and mutation.limits is not None else []
        try:
            status = await admit(context.limiter, buckets, scope, principal, limits, who, requested)
        except RateLimited as limited:
            await send_graphql_refusal(send, limited, scope.get("state", {}).get("response_headers", []))
            return True
        if status is not None and not status.taken:
            return False
        started = time.perf_counter()
        with observability.span("graphql") as span:
            try:
                if plan.operation.operation is OperationType.QUERY:
                    payload = await self.planner.queries[plan.root_name].handler(context, args, plan.names)
                else:
                    payload = await self.planner.mutations[plan.root_name].handler(context, args)
            except Decline:
                return False  # nothing sent yet: the normal path answers (and counts) it
            except RateLimited as limited:  # as graph.http words it: the whole request refused
                await send_graphql_refusal(send, limited, scope.get("state", {}).get("response_headers", []))
                return True
            except Exception as exc:
                loc = plan.root.loc
                location = [{"line": loc.source.get_location(loc.start).line,
                             "column": loc.source.get_location(loc.start).column}] if loc else []
                outage = unavailable(exc)
                if outage is not None:  # the database or the broker out of reach: 503 (graph.unavailable)
                    log.warning("unavailable in %s (fast path): the %s: %s", plan.root_name, outage.service, exc)
                    error = {**unavailable_error(counted(outage)), "locations": location, "path": [plan.root_key]}
                    status_code = 503
                else:
                    log.exception("unexpected error in %s (fast path)", plan.root_name)
                    error = {"message": "Unexpected error.", "locations": location, "path": [plan.root_key],
                             "extensions": {"code": "INTERNAL_SERVER_ERROR"}}  # as graph.errors.MaskUnexpected
                    status_code = 200  # a GraphQL error, masked, as the normal path answers it
                result: dict[str, Any] = {"data": None, "errors": [error]}
                failed = True
            else:
                result = {"data": {plan.root_key: shape(plan.selection, payload)}}
                failed = False
                status_code = 200
            if buckets is not None:
                actual = min(0 if failed else plan.actual_cost(payload), requested)
                if actual < requested:
                    status = await buckets.take(who, actual - requested)
                result["extensions"] = {"cost": report(requested, actual, status, settings)}
            metrics.child(metrics.GRAPHQL_FAST_PATH, plan.root_name).inc()
            record(plan.operation, started, span, [result["errors"][0]["extensions"]["code"]] if failed else [],
                   result["data"], plan.counted)
        data = encode_json(result)
        # (plus any the authentication left for the answer, e.g. WWW-Authenticate: as the normal path)
        await send({"type": "http.response.start", "status": status_code, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            *([(b"retry-after", str(RETRY_AFTER_SECONDS).encode())] if status_code == 503 else []),
            *scope.get("state", {}).get("response_headers", ())]})
        await send({"type": "http.response.body", "body": data})
        return True


def _arguments(node: Any) -> Iterator[ArgumentNode]:
    """Every argument given anywhere in an operation's selection."""
    for sel in getattr(getattr(node, "selection_set", None), "selections", ()) or ():
        yield from getattr(sel, "arguments", ()) or ()
        yield from _arguments(sel)


def encode_json(data: Any) -> bytes:
    """A GraphQL response as JSON, in UTF-8 (orjson): the one encoder of both paths (the
    API's Strawberry view uses it too), so that their answers are the same bytes.
    Values orjson refuses (an integer beyond 64 bits) go through the standard library."""
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_isoformat).encode()


def _isoformat(value: Any) -> str:
    if isinstance(value, datetime):  # a fast-path payload's DateTime, as orjson writes it
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


async def read_body(receive: Receive, limit: int = 1 << 16) -> tuple[bytes, bool, bool]:
    """(the body up to about `limit` bytes, whether more follows, whether the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", False, True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False, False
        if size > limit:  # bigger than the caller looks at: the rest is handed over unread
            return b"".join(chunks), True, False


def replay_body(body: bytes, more: bool, receive: Receive) -> Receive:
    """`receive` with what was read already given back first."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
