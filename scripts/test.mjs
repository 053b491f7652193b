#!/usr/bin/env node
// Type-checks, lints the public API's docs (deno doc --lint mod.ts), then runs every test
// file under Node (tsx + node:test) and under Deno (deno test on the same files). Fails if
// any step fails. Node 20's test runner runs nothing when given no files and a quoted glob
// fails, so the files are listed here.
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

// Deno's report is a source excerpt per finding plus a backtrace; on failure only each
// finding and its location are shown, so the run's log stays readable.
function doclint() {
  const args = ["doc", "--lint", "mod.ts"];
  console.log(`\n=== doclint: deno ${args.join(" ")}`);
  const r = spawnSync(bin("deno"), args, { cwd: root, encoding: "utf8", maxBuffer: 64 << 20, env: { ...env, NO_COLOR: "1" } });
  if (r.status === 0) return true;
  const lines = `${r.stdout ?? ""}${r.stderr ?? ""}`.split("\n");
  const shown = [];
  for (const [i, line] of lines.entries()) {
    if (!line.startsWith("error")) continue;
    const at = lines[i + 1]?.match(/^\s*--> (.*)$/)?.[1];
    shown.push(at ? `${line} (${relative(root, at)})` : line);
  }
  // A crash before linting (say, a module that does not resolve) prints no findings.
  console.log(shown.length ? shown.join("\n") : (r.error?.message ?? lines.filter(Boolean).slice(-5).join("\n")));
  return false;
}

const results = [];
if (!flags.has("--no-typecheck")) results.push(["typecheck", run("typecheck", bin("tsc"), ["--noEmit", "-p", "."])]);
results.push(["doclint", doclint()]);
if (!flags.has("--deno-only")) {
  results.push(["node", run("node", process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...files])]);
}
if (!flags.has("--node-only")) {
  results.push(["deno", run("deno", bin("deno"), ["test", "-A", "--no-lock", ...files])]);
}
const failed = results.filter(([, ok]) => !ok).map(([name]) => name);
console.log(`\n${results.length - failed.length} passed, ${failed.length} failed: ${results.map(([n, ok]) => `${n} ${ok ? "ok" : "FAILED"}`).join(", ")}`);
process.exit(failed.length ? 1 : 0);
