// Serves the committed supergraph with Apollo Gateway. Subgraph URLs and the port come
// from the environment, so one image runs anywhere:
//   MERCI_API_URL, MERCI_DIRECTORY_URL  (default: the URLs composed into the supergraph)
//   PORT                                (default 4000), HOST (default 0.0.0.0)
import { readFileSync } from "node:fs";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";

const supergraphSdl = readFileSync(new URL("supergraph.graphql", import.meta.url), "utf8");
const urls = {
  api: process.env.MERCI_API_URL,
  directory: process.env.MERCI_DIRECTORY_URL,
};
// Who the caller is travels to every subgraph: each one authenticates it and applies
// the same row-level security, so the gateway never needs to be trusted with more.
const FORWARDED = ["authorization", "x-merci-tenant", "cookie", "accept-language"];

class Forwarding extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    for (const name of FORWARDED) {
      const value = context.headers?.[name];
      if (value) request.http.headers.set(name, value);
    }
  }
}

const gateway = new ApolloGateway({
  supergraphSdl,
  buildService: ({ name, url }) => new Forwarding({ url: urls[name] || url }),
});
const server = new ApolloServer({
  gateway,
  introspection: process.env.MERCI_ENV !== "production",
});
const { url } = await startStandaloneServer(server, {
  listen: { port: Number(process.env.PORT || 4000), host: process.env.HOST || "0.0.0.0" },
  context: async ({ req }) => ({ headers: req.headers }),
});
console.log(`merci gateway ready at ${url}`);
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    await server.stop();
    process.exit(0);
  });
}
