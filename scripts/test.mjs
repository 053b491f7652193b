#!/usr/bin/env node
// Type-checks, then runs every test file under Node (tsx + node:test) and under Deno
// (deno test on the same files). Fails if either runtime fails. Node 20's test runner
// runs nothing when given no files and a quoted glob fails, so the files are listed here.
//   node scripts/test.mjs [--fuzz] [--node-only|--deno-only] [files...]
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const args = process.argv.slice(2);
const flags = new Set(args.filter((a) => a.startsWith("--")));
let files = args.filter((a) => !a.startsWith("--"));

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out;
}
if (files.length === 0) files = find(join(root, "test"));

const env = { ...process.env };
if (flags.has("--fuzz")) env.FUZZ_RUNS ??= "2000";

function run(label, cmd, cmdArgs) {
  console.log(`\n=== ${label}: ${cmd} ${cmdArgs.join(" ")}`);
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: "inherit", env });
  return r.status === 0;
}

const bin = (name) => join(root, "node_modules", ".bin", name);
const results = [];
if (!flags.has("--no-typecheck")) results.push(["typecheck", run("typecheck", bin("tsc"), ["--noEmit", "-p", "."])]);
if (!flags.has("--deno-only")) {
  results.push(["node", run("node", process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...files])]);
}
if (!flags.has("--node-only")) {
  results.push(["deno", run("deno", bin("deno"), ["test", "-A", "--no-lock", ...files])]);
}
const failed = results.filter(([, ok]) => !ok).map(([name]) => name);
console.log(`\n${results.length - failed.length} passed, ${failed.length} failed: ${results.map(([n, ok]) => `${n} ${ok ? "ok" : "FAILED"}`).join(", ")}`);
process.exit(failed.length ? 1 : 0);
