// Serves the committed supergraph with Apollo Gateway. Subgraph URLs and the port come
// from the environment, so one image runs anywhere:
//   MERCI_API_URL, MERCI_DIRECTORY_URL  (default: the URLs composed into the supergraph)
//   PORT                                (default 4000), HOST (default 0.0.0.0)
//   MERCI_ENV=production                introspection off
// GraphQL at / and /graphql. What it does to requests and answers is policy.mjs, shared
// with Hive Gateway (gateway.config.mjs). A plain node:http server rather than Apollo's
// standalone one, whose CORS answers every origin and which sets one Set-Cookie at most.
import { createServer } from "node:http";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer, HeaderMap } from "@apollo/server";
import { ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import { readFileSync } from "node:fs";
import {
  MAX_TOKENS, RETURNED, answer, corsFor, forwardedHeaders, hasNul, nulError, preflight, refusal,
  subgraphUrls, validationRules,
} from "./policy.mjs";

const urls = subgraphUrls();

// Per request (the context): the headers for the subgraphs, and in `seen` what they sent
// back (Apollo Server may copy the context object, never what it refers to).
class Forwarding extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    for (const [name, value] of Object.entries(context.forward)) request.http.headers.set(name, value);
  }

  didReceiveResponse({ response, context }) {
    keep(context.seen, response.http.headers);
    return response;
  }

  async errorFromResponse(response) {
    const error = await super.errorFromResponse(response);
    Object.defineProperty(error, "headers", { value: response.headers }); // for sendRequest, below
    return error;
  }

  async sendRequest(request, context) {
    try {
      return await super.sendRequest(request, context);
    } catch (error) {
      const sent = error?.extensions?.response; // errorFromResponse: a non-2xx answer
      if (sent) {
        keep(context.seen, error.headers);
        const refused = refusal(sent.status, sent.body);
        if (refused && !context.seen.refused) context.seen.refused = refused;
      }
      throw error;
    }
  }
}

// What a subgraph's answer gives the client: its cookies, CORS headers, Retry-After.
function keep(seen, headers) {
  seen.touched = true;
  for (const name of RETURNED) {
    if (name === "set-cookie") {
      seen.cookies.push(...(headers.raw?.()["set-cookie"] ?? headers.getSetCookie?.() ?? []));
    } else if (headers.get(name) !== null) {
      seen.returned[name] = headers.get(name);
    }
  }
}

const gateway = new ApolloGateway({
  supergraphSdl: readFileSync(new URL("supergraph.graphql", import.meta.url), "utf8"),
  buildService: ({ name, url }) => new Forwarding({ url: urls[name] || url }),
});

const refuseNulVariables = {
  async requestDidStart() {
    return {
      async didResolveOperation({ request }) {
        if (hasNul(request.variables)) throw nulError();
      },
    };
  },
};

const server = new ApolloServer({
  gateway,
  introspection: true, // in production: NoSchemaIntrospectionCustomRule among validationRules()
  validationRules: validationRules(),
  parseOptions: { maxTokens: MAX_TOKENS },
  includeStacktraceInErrorResponses: false,
  // The subgraphs refuse mutations over GET and the session cookie is SameSite=Lax: as
  // `merci serve` does, take GET queries without Apollo's extra header.
  csrfPrevention: false,
  plugins: [ApolloServerPluginLandingPageDisabled(), refuseNulVariables],
  // Apollo Server names every validation error GRAPHQL_VALIDATION_FAILED: keep a rule's own code.
  formatError(formatted, error) {
    const own = error?.originalError?.extensions?.code;
    return own ? { ...formatted, extensions: { ...formatted.extensions, code: own } } : formatted;
  },
});
await server.start();

async function handle(req, res) {
  const get = (name) => req.headers[name] ?? null;
  const url = new URL(req.url, "http://gateway");
  if (url.pathname !== "/" && url.pathname !== "/graphql") {
    return send(res, 404, { "content-type": "text/plain" }, "Not Found\n");
  }
  if (req.method === "OPTIONS") {
    const { status, headers } = await preflight(urls.api, get);
    return send(res, status, headers, "");
  }
  const raw = await read(req);
  let body;
  try {
    body = raw.length ? JSON.parse(raw) : undefined;
  } catch {
    return send(res, 400, { "content-type": "application/json" },
      JSON.stringify({ errors: [{ message: "the body is not JSON", extensions: { code: "BAD_REQUEST" } }] }));
  }
  const headers = new HeaderMap();
  for (const [name, value] of Object.entries(req.headers)) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  const seen = { cookies: [], returned: {}, refused: null, touched: false };
  const context = { forward: forwardedHeaders(get, req.socket.remoteAddress), seen };
  const response = await server.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: req.method, headers, search: url.search, body },
    context: async () => context,
  });
  let text = "";
  if (response.body.kind === "complete") {
    text = response.body.string;
  } else {
    for await (const chunk of response.body.asyncIterator) text += chunk;
  }
  let status = response.status ?? 200;
  const out = Object.fromEntries(response.headers);
  const result = parseResult(text, out["content-type"]);
  if (result) {
    const answered = answer(result, seen.refused);
    status = answered.status;
    text = JSON.stringify(answered.body);
  }
  Object.assign(out, seen.returned);
  if (!seen.touched) Object.assign(out, await corsFor(urls.api, get));
  if (seen.cookies.length) out["set-cookie"] = seen.cookies;
  delete out["content-length"];
  send(res, status, out, text);
}

function parseResult(text, contentType) {
  if (!/^application\/(graphql-response\+)?json/.test(contentType ?? "")) return null;
  try {
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === "object" && ("data" in parsed || "errors" in parsed) ? parsed : null;
  } catch {
    return null;
  }
}

function read(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res, status, headers, text) {
  res.writeHead(status, headers);
  res.end(text);
}

const http = createServer((req, res) => {
  handle(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) {
      send(res, 500, { "content-type": "application/json" },
        JSON.stringify({ errors: [{ message: "Unexpected error.", extensions: { code: "INTERNAL_SERVER_ERROR" } }] }));
    }
  });
});
const port = Number(process.env.PORT || 4000);
const host = process.env.HOST || "0.0.0.0";
http.listen(port, host, () => console.log(`merci gateway ready at http://${host}:${port}/`));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    http.close();
    await server.stop();
    process.exit(0);
  });
}
