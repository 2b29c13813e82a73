// Hive Gateway (`hive-gateway supergraph`): serves the committed supergraph.graphql.
// Subgraph URLs come from the environment (MERCI_API_URL, MERCI_DIRECTORY_URL; the
// composed ones are for Kubernetes), MERCI_ENV=production turns introspection and
// GraphiQL off. What it does to requests and answers is policy.mjs, shared with serve.mjs.
import { defineConfig } from "@graphql-hive/gateway";
import { parse } from "graphql";
import {
  MAX_TOKENS, PRODUCTION, RETURNED, answer, corsFor, forwardedHeaders, hasNul, nulError, preflight, refusal,
  subgraphUrls, validationRules,
} from "./policy.mjs";

const urls = subgraphUrls();
const refusals = new WeakMap(); // client request -> a subgraph's refusal of it
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
    const { status, body } = answer(result, refusals.get(request));
    setResult({ ...body, extensions: { ...body.extensions, http: { status } } });
  },
  async onResponse({ request, response }) {
    if (!touched.has(request) && request.headers.get("origin") && !response.headers.has("access-control-allow-origin")) {
      const headers = await corsFor(urls.api, (name) => request.headers.get(name));
      for (const [name, value] of Object.entries(headers)) response.headers.set(name, value);
    }
  },
};

export const gatewayConfig = defineConfig({
  supergraph: "./supergraph.graphql",
  transportEntries: Object.fromEntries(Object.entries(urls).map(([name, location]) => [name, { location }])),
  cors: false, // the subgraphs' answer is relayed instead (policy.mjs)
  graphiql: !PRODUCTION,
  landingPage: false,
  maskedErrors: true, // and policy.mjs words them as the subgraphs do
  propagateHeaders: {
    fromClientToSubgraphs: ({ request }) => forwardedHeaders((name) => request.headers.get(name)),
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
