// Composes the subgraph SDLs (written by `merci schema export` into subgraphs/) into
// supergraph.graphql with Apollo's composition library, the one the router and the
// gateway trust. `node compose.mjs --check` fails when the committed file has drifted.
import { readFileSync, writeFileSync } from "node:fs";
import { composeServices } from "@apollo/composition";
import { Kind, parse } from "graphql";

// Where each subgraph runs in production (Kubernetes service names); serve.mjs takes
// the actual URLs from the environment.
const SUBGRAPHS = [
  { name: "api", url: "http://merci-api:8000/graphql" },
  { name: "directory", url: "http://merci-directory:8000/graphql" },
];

const here = (file) => new URL(file, import.meta.url);

// The root operation types the subgraphs serve. Merci has no GraphQL subscriptions
// (no transport for them on any subgraph), so nothing may become a subscription root.
const SERVED = { query: "Query", mutation: "Mutation" };
const DEFAULT_ROOTS = { query: "Query", mutation: "Mutation", subscription: "Subscription" };

// Composition (and every gateway after it) takes an object type named Query, Mutation
// or Subscription as that operation's root whatever the subgraph's `schema { }` says:
// a data type called `Subscription` became the subscription root, and Hive Gateway
// then failed every field returning it. Refuse such a name before composing.
export function rootNameProblems(name, document) {
  const declared = {};
  for (const def of document.definitions) {
    if (def.kind === Kind.SCHEMA_DEFINITION || def.kind === Kind.SCHEMA_EXTENSION) {
      for (const op of def.operationTypes ?? []) declared[op.operation] = op.type.name.value;
    }
  }
  const problems = [];
  for (const def of document.definitions) {
    if (def.kind !== Kind.OBJECT_TYPE_DEFINITION && def.kind !== Kind.OBJECT_TYPE_EXTENSION) continue;
    const type = def.name.value;
    const operation = Object.keys(DEFAULT_ROOTS).find((op) => DEFAULT_ROOTS[op] === type);
    if (operation === undefined) continue;
    if (SERVED[operation] !== type || (declared[operation] ?? type) !== type) {
      problems.push(`subgraph ${name}: object type \`${type}\` is named after the ${operation} root ` +
        `operation type, so composition would take it as that root: rename it`);
    }
  }
  for (const [operation, type] of Object.entries(declared)) {
    if (SERVED[operation] !== type) {
      problems.push(SERVED[operation] ? `subgraph ${name}: the ${operation} root is \`${type}\`: name it ` +
        `\`${SERVED[operation]}\`` : `subgraph ${name}: declares a ${operation} root, which no subgraph serves`);
    }
  }
  return problems;
}

export function compose() {
  const services = SUBGRAPHS.map(({ name, url }) => ({
    name,
    url,
    typeDefs: parse(readFileSync(here(`subgraphs/${name}.graphql`), "utf8")),
  }));
  const problems = services.flatMap(({ name, typeDefs }) => rootNameProblems(name, typeDefs));
  const result = problems.length ? { errors: problems.map((message) => ({ message })) } : composeServices(services);
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
