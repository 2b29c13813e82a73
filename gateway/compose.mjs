// Composes the subgraph SDLs (written by `merci schema export` into subgraphs/) into
// supergraph.graphql with Apollo's composition library, the one the router and the
// gateway trust. `node compose.mjs --check` fails when the committed file has drifted.
import { readFileSync, writeFileSync } from "node:fs";
import { composeServices } from "@apollo/composition";
import { parse } from "graphql";

// Where each subgraph runs in production (Kubernetes service names); serve.mjs takes
// the actual URLs from the environment.
const SUBGRAPHS = [
  { name: "api", url: "http://merci-api:8000/graphql" },
  { name: "directory", url: "http://merci-directory:8000/graphql" },
];

const here = (file) => new URL(file, import.meta.url);

export function compose() {
  const services = SUBGRAPHS.map(({ name, url }) => ({
    name,
    url,
    typeDefs: parse(readFileSync(here(`subgraphs/${name}.graphql`), "utf8")),
  }));
  const result = composeServices(services);
  if (result.errors && result.errors.length) {
    for (const error of result.errors) console.error(`composition error: ${error.message}`);
    process.exit(2);
  }
  return result.supergraphSdl.trimEnd() + "\n";
}

const supergraph = compose();
const target = here("supergraph.graphql");
if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(target, "utf8");
  } catch {
    // missing: drifted
  }
  if (committed !== supergraph) {
    console.error("gateway/supergraph.graphql has drifted from the subgraphs: run `npm run compose` in gateway/");
    process.exit(1);
  }
  console.log("supergraph.graphql is up to date");
} else if (process.argv.includes("--stdout")) {
  process.stdout.write(supergraph);
} else {
  writeFileSync(target, supergraph);
  console.log("wrote supergraph.graphql");
}
