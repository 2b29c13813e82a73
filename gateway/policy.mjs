// What both gateways (Hive Gateway: gateway.config.mjs; Apollo Gateway: serve.mjs) do
// so that an operation is answered through them as one `merci serve all` answers it:
// the same limits, the same codes and masking, the same statuses, the caller's cookie
// and the api's Set-Cookie passed through, CORS decided by the subgraphs.
// tests/gateway/test_operations.py replays a frontend's operations and compares.
import { readFileSync } from "node:fs";
import { GraphQLError, Kind, NoSchemaIntrospectionCustomRule } from "graphql";

// The schema is closed (no introspection, no GraphiQL) everywhere but development and
// test, as in the subgraphs (merci/config.py: DEV_ENVIRONMENTS): staging too.
export const PRODUCTION = !["development", "test"].includes(process.env.MERCI_ENV || "development");

// ------------------------------------------------------------------ where the subgraphs are

// MERCI_API_URL / MERCI_DIRECTORY_URL, else the URLs composed into the supergraph.
export function subgraphUrls() {
  const sdl = readFileSync(new URL("supergraph.graphql", import.meta.url), "utf8");
  const urls = {};
  for (const [, name, url] of sdl.matchAll(/@join__graph\(name: "([^"]+)", url: "([^"]+)"\)/g)) {
    urls[name] = process.env[`MERCI_${name.toUpperCase()}_URL`] || url;
  }
  return urls;
}

// ------------------------------------------------------------------ headers

// Who the caller is travels to every subgraph: each one authenticates it and applies the
// same row-level security, so the gateway is never trusted with more. Origin too: the
// subgraphs decide CORS, and whether a page of that origin may use the session cookie.
const FORWARDED = ["authorization", "x-merci-tenant", "accept-language", "origin", "x-request-id", "traceparent"];
export const SESSION_COOKIE = "merci_session";

// The headers to send a subgraph, from the client's (`get(name)` reads one). Of the
// cookies only Merci's session goes on: the others (the site's analytics, another app's
// session on the same domain) are no subgraph's business.
//
// The client's address goes on too, for the subgraphs' limits per address: the
// X-Forwarded-For the gateway was sent (by the Ingress) with the address that sent it
// (`peer`) appended, as every proxy does. The subgraphs believe the chain only as far as
// MERCI_TRUSTED_PROXIES reaches (the gateway's and the Ingress's addresses): a client
// cannot pass for another address by sending the header itself.
export function forwardedHeaders(get, peer) {
  const headers = {};
  for (const name of FORWARDED) {
    const value = get(name);
    if (value) headers[name] = value;
  }
  const address = peer?.startsWith("::ffff:") ? peer.slice(7) : peer;  // an IPv4 client on a dual-stack socket
  if (address) {
    const chain = get("x-forwarded-for");
    headers["x-forwarded-for"] = chain ? `${chain}, ${address}` : address;
  }
  const session = sessionCookie(get("cookie"));
  if (session) headers.cookie = `${SESSION_COOKIE}=${session}`;
  return headers;
}

function sessionCookie(header) {
  for (const part of (header || "").split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === SESSION_COOKIE && value.length) return value.join("=");
  }
  return null;
}

// What the client gets back of a subgraph's headers: the session cookie (logIn, signUp,
// logOut set it), the CORS answer, when to retry a refusal, and why a token was not taken.
export const CORS_HEADERS = ["access-control-allow-origin", "access-control-allow-credentials",
  "access-control-expose-headers", "vary"];
export const RETURNED = ["set-cookie", "retry-after", "www-authenticate", ...CORS_HEADERS];
const PREFLIGHT = [...CORS_HEADERS, "access-control-allow-methods", "access-control-allow-headers",
  "access-control-max-age"];

// CORS is the subgraphs' (merci/cors.py: MERCI_CORS_ORIGINS and each tenant's own list,
// which lives in the database): a preflight is asked of the api subgraph and its answer
// relayed as it is.
export async function preflight(apiUrl, get) {
  const headers = {};
  for (const name of ["origin", "access-control-request-method", "access-control-request-headers"]) {
    const value = get(name);
    if (value) headers[name] = value;
  }
  const answer = await fetch(apiUrl, { method: "OPTIONS", headers });
  await answer.arrayBuffer();
  return { status: answer.status, headers: pick(answer.headers, PREFLIGHT) };
}

// The CORS headers of an answer no subgraph took part in (the gateway refused the
// document, or it asked only for __typename): those the api gives this origin's answers.
export async function corsFor(apiUrl, get) {
  if (!get("origin")) return {};
  const answer = await fetch(apiUrl, {
    method: "POST", headers: { origin: get("origin"), "content-type": "application/json" },
    body: JSON.stringify({ query: "{ __typename }" }),
  });
  await answer.arrayBuffer();
  return pick(answer.headers, CORS_HEADERS);
}

function pick(headers, names) {
  const out = {};
  for (const name of names) {
    const value = headers.get(name);
    if (value !== null) out[name] = value;
  }
  return out;
}

// ------------------------------------------------------------------ limits (graph/limits.py)

export const MAX_DEPTH = 12;
export const MAX_TOTAL_DEPTH = 20;
export const MAX_TOKENS = 3000;
export const MAX_ALIASES = 30;
export const NUL_MESSAGE = "text may not contain the NUL character (U+0000)";

// The validation rules graph/limits.py adds, worded and counted as there (Strawberry's
// QueryDepthLimiter and MaxAliasesLimiter, TotalDepthRule, NoNulText), and in
// production no introspection. MAX_TOKENS is a parse option (graphql-js counts tokens
// as graphql-core does).
export function validationRules() {
  return [depthLimit, aliasLimit, totalDepthLimit, noNulText, ...(PRODUCTION ? [NoSchemaIntrospectionCustomRule] : [])];
}

function definitions(context) {
  const fragments = {};
  const operations = new Map();
  for (const def of context.getDocument().definitions) {
    if (def.kind === Kind.FRAGMENT_DEFINITION) fragments[def.name.value] = def;
    if (def.kind === Kind.OPERATION_DEFINITION) operations.set(def.name ? def.name.value : "anonymous", def);
  }
  return { fragments, operations };
}

function depthLimit(context) {
  const { fragments, operations } = definitions(context);
  const depth = (node, sofar, name, visited) => {
    if (sofar > MAX_DEPTH) {
      context.reportError(new GraphQLError(`'${name}' exceeds maximum operation depth of ${MAX_DEPTH}`, { nodes: [node] }));
      return sofar;
    }
    if (node.kind === Kind.FIELD) {
      if (node.name.value.startsWith("__") || !node.selectionSet) return 0;
      return 1 + Math.max(...node.selectionSet.selections.map((s) => depth(s, sofar + 1, name, visited)));
    }
    if (node.kind === Kind.FRAGMENT_SPREAD) {
      const fragment = fragments[node.name.value];
      if (visited.has(node.name.value) || !fragment) return 0;
      return depth(fragment, sofar, name, new Set([...visited, node.name.value]));
    }
    return Math.max(...node.selectionSet.selections.map((s) => depth(s, sofar, name, visited)));
  };
  for (const [name, operation] of operations) depth(operation, 0, name, new Set());
  return {};
}

function aliasLimit(context) {
  const { fragments, operations } = definitions(context);
  const count = (owner, visited) => {
    let n = 0;
    for (const s of owner.selectionSet?.selections ?? []) {
      if (s.kind === Kind.FIELD && s.alias) n += 1;
      if ((s.kind === Kind.FIELD || s.kind === Kind.INLINE_FRAGMENT) && s.selectionSet) n += count(s, visited);
      if (s.kind === Kind.FRAGMENT_SPREAD && fragments[s.name.value] && !visited.has(s.name.value)) {
        n += count(fragments[s.name.value], new Set([...visited, s.name.value]));
      }
    }
    return n;
  };
  let total = 0;
  for (const operation of operations.values()) total += count(operation, new Set());
  if (total > MAX_ALIASES) context.reportError(new GraphQLError(`${total} aliases found. Allowed: ${MAX_ALIASES}`));
  return {};
}

function totalDepthLimit(context) {
  const { fragments } = definitions(context);
  const depth = (sel, seen) => {
    if (sel.kind === Kind.FIELD) {
      if (!sel.selectionSet) return 0;
      return 1 + Math.max(0, ...sel.selectionSet.selections.map((s) => depth(s, seen)));
    }
    if (sel.kind === Kind.FRAGMENT_SPREAD) {
      const name = sel.name.value;
      if (seen.has(name) || !fragments[name]) return 0;
      return Math.max(0, ...fragments[name].selectionSet.selections.map((s) => depth(s, new Set([...seen, name]))));
    }
    if (sel.kind === Kind.INLINE_FRAGMENT) return Math.max(0, ...sel.selectionSet.selections.map((s) => depth(s, seen)));
    return 0;
  };
  return {
    OperationDefinition(node) {
      const total = Math.max(0, ...node.selectionSet.selections.map((s) => depth(s, new Set())));
      if (total > MAX_TOTAL_DEPTH) {
        context.reportError(new GraphQLError(
          `operation exceeds maximum operation depth of ${MAX_TOTAL_DEPTH} (introspection included)`, { nodes: [node] }));
      }
    },
  };
}

function noNulText(context) {
  return {
    StringValue(node) {
      if (node.value.includes("\u0000")) {
        context.reportError(new GraphQLError(NUL_MESSAGE, { nodes: [node], extensions: { code: "BAD_USER_INPUT" } }));
      }
    },
  };
}

// PostgreSQL's text cannot hold a NUL: variables holding one are refused before execution.
export function hasNul(value) {
  if (typeof value === "string") return value.includes("\u0000");
  if (Array.isArray(value)) return value.some(hasNul);
  if (value && typeof value === "object") return Object.entries(value).some(([k, v]) => hasNul(k) || hasNul(v));
  return false;
}

export const nulError = () => new GraphQLError(NUL_MESSAGE, { extensions: { code: "BAD_USER_INPUT" } });

// ------------------------------------------------------------------ answers

// A subgraph's refusal of the request itself (HTTP 4xx with a GraphQL error and no data:
// a bad or expired token, an unknown tenant, a rate limit) is the gateway's answer too,
// with its status, as the process would have answered it.
export function refusal(status, body) {
  if (status >= 400 && status < 500 && body && Array.isArray(body.errors) && body.data === undefined) {
    return { status, errors: body.errors };
  }
  return null;
}

// The status and body a GraphQL result gets: a refusal's, or 200 with every error as
// the process words it (graph/errors.py): with a code, masked when unexpected, and
// without what only a gateway knows (the subgraph's name or URL, a stack trace).
export function answer(result, refused) {
  if (refused) return { status: refused.status, body: { errors: refused.errors } };
  const body = { ...result };
  if (result.errors) body.errors = result.errors.map(publicError);
  delete body.extensions?.http;
  return { status: 200, body };
}

const INTERNAL = new Set(["serviceName", "response", "stacktrace", "exception", "http", "unexpected"]);

export function publicError(error) {
  const plain = typeof error.toJSON === "function" ? error.toJSON() : error;
  const extensions = Object.fromEntries(Object.entries(plain.extensions ?? {}).filter(([k]) => !INTERNAL.has(k)));
  const code = extensions.code || codeOf(plain);
  const where = {};
  if (plain.locations) where.locations = plain.locations;
  if (plain.path) where.path = plain.path;
  if (code === "INTERNAL_SERVER_ERROR") {
    return { message: "Unexpected error.", ...where, extensions: { code } };
  }
  return { message: plain.message, ...where, extensions: { ...extensions, code } };
}

function codeOf(error) {
  if (error.message.startsWith("Syntax Error")) return "GRAPHQL_PARSE_FAILED";
  if (!error.path && error.message.startsWith('Variable "$')) return "BAD_USER_INPUT";
  if (!error.path) return "GRAPHQL_VALIDATION_FAILED";
  return "INTERNAL_SERVER_ERROR";
}
