// Whether this Node.js runs the gateway: package.json's `engines` (what we state), and
// the `engines` of every package package-lock.json installs (what they need). `npm ci`
// refuses a mismatch too (.npmrc: engine-strict); this names every one. Exit 1 on any.
//   node engines.mjs [version]   (default: this Node's)
import { readFileSync } from "node:fs";
import semver from "semver";

const read = (file) => JSON.parse(readFileSync(new URL(file, import.meta.url), "utf8"));
const version = process.argv[2] || process.versions.node;
const stated = read("package.json").engines.node;
const problems = [];
if (!semver.satisfies(version, stated)) problems.push(`package.json: needs Node ${stated}`);
for (const [path, pkg] of Object.entries(read("package-lock.json").packages)) {
  const needs = pkg.engines?.node;
  if (path && needs && !semver.satisfies(version, needs)) {
    problems.push(`${path.replace(/^.*node_modules\//, "")}@${pkg.version}: needs Node ${needs}`);
  }
  // What package.json states must not promise more than a package can keep.
  if (path && needs && !semver.subset(stated, needs)) {
    problems.push(`${path.replace(/^.*node_modules\//, "")}@${pkg.version}: needs Node ${needs}, narrower than ${stated}`);
  }
}
if (problems.length) {
  console.error(`Node ${version} cannot run the gateway:\n  ${[...new Set(problems)].join("\n  ")}`);
  process.exit(1);
}
console.log(`Node ${version}: every package's engines allow it (${stated})`);
