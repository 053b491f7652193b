#!/usr/bin/env node
// The `thinstack` command, package.json's bin, for both runtimes:
//   Node: `npx thinstack` (or `node src/cli/bin.mjs`) loads tsx's loader, then the TypeScript entry.
//   Deno: `deno run -A src/cli/bin.mjs` runs TypeScript itself and must not load tsx: its loader
//   hooks break Deno's own module loading (piscina's CommonJS among it).
import process from "node:process";

const deno = globalThis.Deno;
if (typeof deno === "undefined") {
  const { register } = await import("tsx/esm/api");
  register();
}
const { main } = await import("./main.ts");
process.exitCode = await main(typeof deno === "undefined" ? process.argv.slice(2) : deno.args);
