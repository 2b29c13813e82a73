// Hive Gateway (`hive-gateway supergraph`): serves the committed supergraph.graphql.
// Subgraph URLs come from the environment (the composed ones are for local runs),
// and the caller's credentials and tenant are forwarded to every subgraph.
import { defineConfig } from "@graphql-hive/gateway";

const locations = {
  api: process.env.MERCI_API_URL,
  directory: process.env.MERCI_DIRECTORY_URL,
};

export const gatewayConfig = defineConfig({
  supergraph: "./supergraph.graphql",
  transportEntries: Object.fromEntries(
    Object.entries(locations).filter(([, url]) => url).map(([name, location]) => [name, { location }]),
  ),
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      const headers = {};
      for (const name of ["authorization", "x-merci-tenant", "x-request-id", "traceparent", "cookie"]) {
        const value = request.headers.get(name);
        if (value) headers[name] = value;
      }
      return headers;
    },
  },
});
