#!/usr/bin/env node
// Runs every bench/*.bench.ts under Node and under Deno, one after the other on the same
// disk, and prints their tables plus one combined table of the RESULT lines with a Node
// and a Deno column.   node scripts/bench.mjs [--only NAME] [--node-only|--deno-only]
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const files = readdirSync(join(root, "bench")).filter((f) => f.endsWith(".bench.ts") && (!only || f.startsWith(only))).sort();
const runtimes = [];
if (!args.includes("--deno-only")) runtimes.push(["node", process.execPath, ["--import", "tsx"]]);
if (!args.includes("--node-only")) runtimes.push(["deno", join(root, "node_modules", ".bin", "deno"), ["run", "-A", "--no-lock"]]);

const results = new Map(); // "bench\tname" -> { goal, node, deno }
let failed = false;
for (const file of files) {
  for (const [name, cmd, pre] of runtimes) {
    console.log(`\n=== ${file} under ${name}`);
    const r = spawnSync(cmd, [...pre, join(root, "bench", file)], { cwd: root, encoding: "utf8", env: { ...process.env, BENCH_RUNTIME: "" }, maxBuffer: 64 * 1024 * 1024 });
    if (r.status !== 0) { failed = true; console.log(r.stderr); }
    for (const line of r.stdout.split("\n")) {
      if (!line.startsWith("RESULT\t")) { console.log(line); continue; }
      const [, bench, metric, value, ratio, goal, met] = line.split("\t");
      const key = `${bench}\t${metric}`;
      const entry = results.get(key) ?? { goal };
      entry[name] = `${value}; ratio ${ratio}${met ? ` (${met})` : ""}`;
      results.set(key, entry);
    }
  }
}
if (results.size) {
  console.log("\n## All results, Node and Deno side by side\n");
  console.log("| benchmark | goal | Node | Deno |\n|---|---|---|---|");
  for (const [key, e] of results) console.log(`| ${key.split("\t")[1]} | ${e.goal || ""} | ${e.node ?? ""} | ${e.deno ?? ""} |`);
}
process.exit(failed ? 1 : 0);
