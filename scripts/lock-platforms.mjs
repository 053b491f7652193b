#!/usr/bin/env node
// The npm registry mirror on our build machines answers 404 for the prebuilt
// platform packages of deno and cbor-extract other than linux-x64, so `npm
// install` here leaves them out of package-lock.json, and `npm ci` then
// refuses the lock as "out of sync". This adds the missing optional entries
// (with their os/cpu so npm skips them on other platforms). Run it after any
// dependency change: `node scripts/lock-platforms.mjs && npm ci`.
import { readFileSync, writeFileSync } from "node:fs";

const file = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
const packages = lock.packages;

function versionOf(name) {
  const entry = packages[`node_modules/${name}`];
  if (!entry) throw new Error(`package-lock.json has no '${name}': run npm install first`);
  return entry.version;
}

const wanted = [];
const cborExtract = versionOf("cbor-extract");
for (const [suffix, os, cpu] of [
  ["darwin-arm64", "darwin", "arm64"], ["darwin-x64", "darwin", "x64"],
  ["linux-arm", "linux", "arm"], ["linux-arm64", "linux", "arm64"],
  ["linux-x64", "linux", "x64"], ["win32-x64", "win32", "x64"],
]) wanted.push({ name: `@cbor-extract/cbor-extract-${suffix}`, version: cborExtract, os, cpu });
const deno = versionOf("deno");
for (const [suffix, os, cpu, libc] of [
  ["darwin-arm64", "darwin", "arm64"], ["darwin-x64", "darwin", "x64"],
  ["linux-arm64-glibc", "linux", "arm64", "glibc"], ["linux-x64-glibc", "linux", "x64", "glibc"],
  ["win32-arm64", "win32", "arm64"], ["win32-x64", "win32", "x64"],
]) wanted.push({ name: `@deno/${suffix}`, version: deno, os, cpu, libc, dev: true });

let added = 0;
for (const p of wanted) {
  const key = `node_modules/${p.name}`;
  if (packages[key]) continue;
  packages[key] = {
    version: p.version,
    cpu: [p.cpu],
    ...(p.dev ? { dev: true } : {}),
    ...(p.libc ? { libc: [p.libc] } : {}),
    license: "MIT",
    optional: true,
    os: [p.os],
  };
  added++;
}
const sorted = { "": packages[""] };
for (const key of Object.keys(packages).filter((k) => k !== "").sort()) sorted[key] = packages[key];
lock.packages = sorted;
writeFileSync(file, JSON.stringify(lock, null, 2) + "\n");
console.log(`lock-platforms: added ${added} platform entr${added === 1 ? "y" : "ies"}`);
