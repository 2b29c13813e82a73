// Hive Gateway (`hive-gateway supergraph`): serves the committed supergraph.graphql.
// Subgraph URLs come from the environment (MERCI_API_URL, MERCI_DIRECTORY_URL; the
// composed ones are for Kubernetes); outside development and test (MERCI_ENV) there is no
// introspection and no GraphiQL. What it does to requests and answers is policy.mjs, shared with serve.mjs.
import { defineConfig } from "@graphql-hive/gateway";
import { unifiedGraphHandler } from "@graphql-hive/router-runtime";
import { Kind, getOperationAST, parse } from "graphql";
import {
  MAX_TOKENS, PRODUCTION, RETURNED, answer, corsFor, forwardedHeaders, hasNul, nulError, preflight, refusal,
  subgraphUrls, validationRules,
} from "./policy.mjs";

const urls = subgraphUrls();
const refusals = new WeakMap(); // client request -> a subgraph's refusal of it
const operationNames = new WeakMap(); // execution context -> the client's operation name
const touched = new WeakSet(); // client requests some subgraph answered

const merci = {
  // Preflights are the api subgraph's to answer (CORS allowlists live in its database).
  async onRequest({ request, endResponse, fetchAPI }) {
    if (request.method !== "OPTIONS") return;
    const { status, headers } = await preflight(urls.api, (name) => request.headers.get(name));
    endResponse(new fetchAPI.Response(null, { status, headers }));
  },
  onParse({ setParseFn }) {
    setParseFn((source, options) => parse(source, { ...options, maxTokens: MAX_TOKENS }));
  },
  onValidate({ addValidationRule }) {
    for (const rule of validationRules()) addValidationRule(rule);
  },
  onExecute({ args, setResultAndStopExecution }) {
    if (hasNul(args.variableValues)) setResultAndStopExecution({ data: null, errors: [nulError()] });
    const name = getOperationAST(args.document, args.operationName)?.name?.value;
    if (name && args.contextValue) operationNames.set(args.contextValue, name);
  },
  // The query planner sends the subgraphs anonymous operations: they get the client's
  // operation name back, which their logs and metrics label requests with.
  onSubgraphExecute({ executionRequest, setExecutionRequest }) {
    const name = executionRequest.context && operationNames.get(executionRequest.context);
    if (name && !executionRequest.operationName) {
      setExecutionRequest({ ...executionRequest, document: named(executionRequest.document, name), operationName: name });
    }
  },
  onFetch({ context }) {
    return async ({ response }) => {
      touched.add(context.request);
      if (response.status >= 400) {
        const body = await response.clone().json().catch(() => null);
        const refused = refusal(response.status, body);
        if (refused && !refusals.has(context.request)) refusals.set(context.request, refused);
      }
    };
  },
  onResultProcess({ request, result, setResult }) {
    if (Array.isArray(result) || typeof result?.[Symbol.asyncIterator] === "function") return;
    const refused = refusals.get(request);
    const { status, body } = answer(result, refused);
    // The query planner's executor leaves `data` out when a root field fails (a subgraph
    // down); execution had begun, so graphql-js, and the processes, answer data: null.
    if (!refused && body.data === undefined && body.errors?.some((e) => e.path)) body.data = null;
    setResult({ ...body, extensions: { ...body.extensions, http: { status } } });
  },
  async onResponse({ request, response }) {
    if (!touched.has(request) && request.headers.get("origin") && !response.headers.has("access-control-allow-origin")) {
      const headers = await corsFor(urls.api, (name) => request.headers.get(name));
      for (const [name, value] of Object.entries(headers)) response.headers.set(name, value);
    }
  },
};

// The planner's document for a subgraph, its operation named (one copy per document and
// name, so that it is printed once).
const namedDocuments = new WeakMap();
function named(document, name) {
  let byName = namedDocuments.get(document);
  if (!byName) namedDocuments.set(document, (byName = new Map()));
  let copy = byName.get(name);
  if (!copy) {
    copy = {
      ...document,
      definitions: document.definitions.map((d) => d.kind === Kind.OPERATION_DEFINITION && !d.name
        ? { ...d, name: { kind: Kind.NAME, value: name } } : d),
    };
    byName.set(name, copy);
  }
  return copy;
}

export const gatewayConfig = defineConfig({
  supergraph: "./supergraph.graphql",
  // Hive Router's query planner (Rust, @graphql-hive/router-runtime) instead of the
  // JavaScript one: less of what the gateway adds to an operation (docs/operations.md, Capacity).
  unifiedGraphHandler,
  transportEntries: Object.fromEntries(Object.entries(urls).map(([name, location]) => [name, { location }])),
  cors: false, // the subgraphs' answer is relayed instead (policy.mjs)
  graphiql: !PRODUCTION,
  landingPage: false,
  maskedErrors: true, // and policy.mjs words them as the subgraphs do
  propagateHeaders: {
    fromClientToSubgraphs: ({ request, context }) => forwardedHeaders((name) => request.headers.get(name),
      context?.req?.socket?.remoteAddress),  // node:http's request, in the server's context
    fromSubgraphsToClient({ response }) {
      const headers = {};
      for (const name of RETURNED) {
        const value = name === "set-cookie" ? response.headers.getSetCookie() : response.headers.get(name);
        if (value !== null && value.length !== 0) headers[name] = value;
      }
      return headers;
    },
    deduplicateHeaders: true, // one Access-Control-Allow-Origin however many subgraphs answered
  },
  plugins: () => [merci],
});
