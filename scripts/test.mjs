#!/usr/bin/env node
// The Node half of `npm test`: every test file under tsx + node:test. Node 20's test
// runner runs nothing when given no files, and a quoted glob fails, so the files are
// listed here. (The Deno half is package.json's `test:deno`: `deno test` on the same files.)
//   node scripts/test.mjs [files...]
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out;
}

const files = process.argv.length > 2 ? process.argv.slice(2) : find(join(root, "test"));
const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...files], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
