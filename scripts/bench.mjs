#!/usr/bin/env node
// npm run bench: runs every bench/*.bench.ts under Node (node --import tsx FILE) and under
// Deno (node_modules/.bin/deno run -A FILE), one after the other on the same disk, collects
// the JSON result lines each prints (the convention is documented at the top of
// bench/lib.ts), and prints one markdown table per benchmark with a Node and a Deno column.
//
//   node scripts/bench.mjs [--only NAME[,NAME]] [--node-only | --deno-only] [--quick]
//     --only NAME   run bench/NAME.bench.ts only (repeatable, or comma-separated)
//     --node-only   Node only;  --deno-only  Deno only
//     --quick       BENCH_QUICK=1: small sizes, to check that the benchmarks run
// Exits non-zero when a benchmark process fails (not when a goal is missed).
import { spawn, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const benchDir = join(root, "bench");
const denoBin = join(root, "node_modules", ".bin", "deno");

function usage(msg) {
  if (msg) console.error(`bench: ${msg}`);
  console.error("usage: node scripts/bench.mjs [--only NAME[,NAME]] [--node-only | --deno-only] [--quick]");
  process.exit(2);
}

const only = [];
let nodeOnly = false;
let denoOnly = false;
let quick = false;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--only") {
    if (!argv[i + 1]) usage("--only needs a benchmark name");
    only.push(...argv[++i].split(","));
  } else if (a.startsWith("--only=")) only.push(...a.slice(7).split(","));
  else if (a === "--node-only") nodeOnly = true;
  else if (a === "--deno-only") denoOnly = true;
  else if (a === "--quick") quick = true;
  else if (a === "--help" || a === "-h") usage();
  else usage(`unknown argument '${a}'`);
}
if (nodeOnly && denoOnly) usage("--node-only and --deno-only exclude each other");

const available = readdirSync(benchDir).filter((f) => f.endsWith(".bench.ts")).map((f) => f.slice(0, -".bench.ts".length)).sort();
const wanted = only.map((n) => n.replace(/(\.bench)?(\.ts)?$/, "").replace(/^.*\//, "")).filter(Boolean);
for (const n of wanted) if (!available.includes(n)) usage(`no bench/${n}.bench.ts (there are: ${available.join(", ")})`);
const benches = wanted.length ? available.filter((n) => wanted.includes(n)) : available;

const runtimes = [];
if (!denoOnly) runtimes.push({ id: "node", label: "Node", cmd: process.execPath, args: (f) => ["--expose-gc", "--import", "tsx", f], version: process.version });
if (!nodeOnly) {
  const v = spawnSync(denoBin, ["--version"], { encoding: "utf8" });
  runtimes.push({ id: "deno", label: "Deno", cmd: denoBin, args: (f) => ["run", "-A", "--v8-flags=--expose-gc", f], version: v.stdout?.split("\n")[0]?.replace(/^deno /, "v").replace(/ \(.*/, "") ?? "?" });
}

/** bench -> { rows: Map(name -> { goal, byRuntime }), notes: Set, runs: Map(runtime -> status) } */
const tables = new Map();
const table = (bench) => {
  if (!tables.has(bench)) tables.set(bench, { rows: new Map(), notes: new Set(), runs: new Map(), extra: [] });
  return tables.get(bench);
};

function record(bench, rt, line) {
  let rec;
  try {
    rec = JSON.parse(line);
  } catch {
    return false;
  }
  if (!rec || typeof rec !== "object" || typeof rec.bench !== "string") return false;
  const t = table(rec.bench);
  if (typeof rec.note === "string") t.notes.add(rec.note);
  else if (typeof rec.name === "string") {
    const row = t.rows.get(rec.name) ?? { goal: rec.goal, byRuntime: {} };
    row.goal ??= rec.goal;
    row.byRuntime[rt.id] = rec;
    t.rows.set(rec.name, row);
  } else return false;
  return true;
}

function run(bench, rt) {
  const file = join(benchDir, `${bench}.bench.ts`);
  const env = { ...process.env, BENCH_HARNESS: "1", BENCH_RUNTIME: "" };
  if (quick) env.BENCH_QUICK = "1";
  const tag = `[${bench}/${rt.id}]`;
  console.error(`\n=== ${bench} under ${rt.label} ${rt.version}: ${[rt.cmd, ...rt.args(file)].join(" ")}`);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(rt.cmd, rt.args(file), { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let results = 0;
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (record(bench, rt, line)) {
        results++;
        const rec = JSON.parse(line);
        if (rec.name) console.error(`${tag} ${rec.name}: ${fmt(rec.value, rec.unit)}${rec.ratio !== undefined ? `, ratio ${rec.ratio}` : ""}`);
      } else if (line.trim()) {
        console.error(`${tag} ${line}`);
        table(bench).extra.push(`${rt.label}: ${line}`);
      }
    });
    createInterface({ input: child.stderr }).on("line", (line) => console.error(`${tag} ${line}`));
    child.on("error", (e) => {
      table(bench).runs.set(rt.id, { ok: false, why: e.message, results });
      resolve(false);
    });
    child.on("close", (code, signal) => {
      const secs = ((Date.now() - started) / 1000).toFixed(0);
      const ok = code === 0;
      table(bench).runs.set(rt.id, { ok, why: ok ? `${secs} s` : `failed (${signal ?? `exit ${code}`}) after ${secs} s`, results });
      resolve(ok);
    });
  });
}

function fmt(value, unit) {
  if (typeof value !== "number") return String(value ?? "");
  const a = Math.abs(value);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return `${value.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

function cell(rec) {
  if (!rec) return "–";
  let s = fmt(rec.value, rec.unit);
  if (rec.baseline !== undefined) s += ` vs ${rec.baselineLabel ?? "baseline"} ${fmt(rec.baseline, rec.unit)}`;
  if (rec.ratio !== undefined) s += ` → **${rec.ratio.toFixed(2)}**`;
  if (rec.met !== undefined) s += rec.met ? " ✓" : " ✗ missed";
  return s;
}

let failed = 0;
for (const bench of benches) {
  for (const rt of runtimes) if (!(await run(bench, rt))) failed++;
}

const out = [];
for (const bench of benches) {
  const t = tables.get(bench) ?? table(bench);
  out.push(`\n## ${bench} (bench/${bench}.bench.ts)\n`);
  out.push(runtimes.map((rt) => `${rt.label} ${rt.version}: ${t.runs.get(rt.id)?.why ?? "not run"}`).join("; ") + "\n");
  if (t.rows.size === 0) {
    out.push("_No result lines (see bench/lib.ts for the JSON-line convention)._");
    if (t.extra.length) out.push("\n```\n" + t.extra.join("\n") + "\n```");
    continue;
  }
  out.push(`| measurement | goal | ${runtimes.map((rt) => rt.label).join(" | ")} |`);
  out.push(`|---|---|${runtimes.map(() => "---").join("|")}|`);
  for (const [name, row] of t.rows) out.push(`| ${name} | ${row.goal ?? ""} | ${runtimes.map((rt) => cell(row.byRuntime[rt.id])).join(" | ")} |`);
  const details = [];
  for (const [name, row] of t.rows) {
    const ds = runtimes.map((rt) => [rt, row.byRuntime[rt.id]?.detail]).filter(([, d]) => d);
    if (ds.length && ds.every(([, d]) => d === ds[0][1])) details.push(`- ${name}: ${ds[0][1]}`);
    else for (const [rt, d] of ds) details.push(`- ${name} (${rt.label}): ${d}`);
  }
  if (t.notes.size || details.length) out.push("");
  for (const n of t.notes) out.push(`- ${n}`);
  out.push(...details);
  const missed = [...t.rows].flatMap(([name, row]) => runtimes.filter((rt) => row.byRuntime[rt.id]?.met === false).map((rt) => `${name} (${rt.label})`));
  if (missed.length) out.push(`\nGoals missed: ${missed.length}: ${missed.join("; ")}`);
}
console.log(out.join("\n"));
process.exit(failed ? 1 : 0);
