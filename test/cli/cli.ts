/**
 * Running the `thinstack` CLI as a user would: through its entry function `main` in this
 * process (its output collected, its exit code the one `bin.mjs` would exit with), or,
 * where a run needs a process of its own (stdin, a working directory, a lock held by the
 * test's own store, a kill, the process's exit itself), in a child process under the
 * runtime running the tests, through package.json's bin: `node src/cli/bin.mjs ...`
 * under Node, `deno run -A --no-lock src/cli/bin.mjs ...` under Deno. A child costs a
 * runtime's start-up (about a second under tsx); a run in this process costs none.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Buffer } from "node:buffer";
import os from "node:os";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import tar from "tar-stream";
import { isDeno } from "../helpers/runtime.ts";

declare const Deno: { execPath(): string } | undefined;

/** The bin entry, src/cli/bin.mjs: the same file under both runtimes. */
export const BIN = fileURLToPath(new URL("../../src/cli/bin.mjs", import.meta.url));

/** The command line that runs the CLI with `args` under this runtime. */
export function cliCommand(args: string[]): [string, string[]] {
  if (isDeno) return [Deno!.execPath(), ["run", "-A", "--no-lock", BIN, ...args]];
  return [process.execPath, [BIN, ...args]];
}

/** What a run of the CLI did. */
export interface Run {
  args: string[];
  code: number | null;
  signal: string | null;
  /** stdout as bytes (for binary output: cat, cp to -) and as text. */
  bytes: Buffer;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Passed as `--root`; omitted when undefined. */
  root?: string;
  /** Written to stdin, which is then closed. */
  input?: Uint8Array | string;
  /** Extra environment; THINSTACK_ROOT is never inherited from the test's own environment. */
  env?: Record<string, string>;
  /** The working directory; the system's temporary directory unless given. */
  cwd?: string;
  /**
   * Run in a child process even when this one could do (as it does for `input` and
   * `cwd`): for a command that must be another process than the test's (a lock, a kill).
   */
  spawn?: boolean;
}

/** The environment a run sees: the test's, without THINSTACK_ROOT and THINSTACK_DEBUG, with NO_COLOR and `extra`. */
function runEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "THINSTACK_ROOT" && k !== "THINSTACK_DEBUG") env[k] = v;
  return Object.assign(env, { NO_COLOR: "1" }, extra);
}

/**
 * Runs `thinstack ARGS` (with `--root` first when given) and collects what it did: in this
 * process unless it needs its own (`input`, `cwd` or `spawn`; see {@linkcode spawned}).
 */
export function thinstack(args: string[], options: RunOptions = {}): Promise<Run> {
  if (options.spawn || options.input !== undefined || options.cwd !== undefined) return spawned(args, options);
  const all = options.root === undefined ? args : ["--root", options.root, ...args];
  const run = queue.then(() => here(all, options.env));
  queue = run.catch(() => {});
  return run;
}

/** Runs in this process go one at a time (the CLI's output and the environment are the process's). */
let queue: Promise<unknown> = Promise.resolve();

/** A stream that keeps what is written to it. */
function collector(chunks: Buffer[]): Writable {
  return new Writable({
    write(chunk: Buffer | string, encoding: BufferEncoding, done: (e?: Error | null) => void) {
      chunks.push(typeof chunk === "string" ? Buffer.from(chunk, encoding) : Buffer.from(chunk));
      done();
    },
  });
}

/**
 * One run of `main` in this process, its output collected, with the environment a child
 * would have (runEnv) while it runs: only the variables that differ are set, then put back.
 */
async function here(all: string[], extra: Record<string, string> = {}): Promise<Run> {
  const change: Record<string, string | undefined> = { THINSTACK_ROOT: undefined, THINSTACK_DEBUG: undefined, NO_COLOR: "1", ...extra };
  const saved = Object.fromEntries(Object.keys(change).map((k) => [k, process.env[k]]));
  const put = (vars: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(vars)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let code: number;
  // Loaded at the first run: files that take only pattern() or mktar() from here do not load the CLI.
  const { main } = await import("../../src/cli/main.ts");
  put(change);
  try {
    code = await main(all, { stdout: collector(out), stderr: collector(err) });
  } finally {
    put(saved);
  }
  const bytes = Buffer.concat(out);
  return { args: all, code, signal: null, bytes, stdout: bytes.toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}

/** Runs `thinstack ARGS` in a child process (the bin, under this runtime) and collects what it did. */
export function spawned(args: string[], options: RunOptions = {}): Promise<Run> {
  const all = options.root === undefined ? args : ["--root", options.root, ...args];
  const [cmd, argv] = cliCommand(all);
  const child = spawn(cmd, argv, { cwd: options.cwd ?? os.tmpdir(), env: runEnv(options.env), stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on("data", (c: Buffer) => out.push(c));
  child.stderr!.on("data", (c: Buffer) => err.push(c));
  child.stdin!.on("error", () => {}); // a command that never reads stdin may exit first
  child.stdin!.end(options.input === undefined ? undefined : Buffer.from(options.input));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const bytes = Buffer.concat(out);
      resolve({ args: all, code, signal, bytes, stdout: bytes.toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
  });
}

function describeRun(r: Run): string {
  return `thinstack ${r.args.join(" ")}\n  exit ${r.code}${r.signal ? ` (${r.signal})` : ""}\n  stdout: ${r.stdout.slice(0, 2000)}\n  stderr: ${r.stderr}`;
}

/** Asserts the run succeeded (exit 0) and said nothing on stderr unless `stderr` allows it. */
export function ok(r: Run, stderr: RegExp = /^$/): Run {
  assert.equal(r.code, 0, `expected success:\n${describeRun(r)}`);
  assert.match(r.stderr, stderr, `unexpected stderr:\n${describeRun(r)}`);
  return r;
}

/**
 * Asserts the run failed with exit `code` and printed one line on stderr, `thinstack: ...`,
 * matching every pattern. Returns that line.
 */
export function fails(r: Run, code: number, ...patterns: RegExp[]): string {
  assert.equal(r.code, code, `expected exit ${code}:\n${describeRun(r)}`);
  assert.match(r.stderr, /^thinstack: [^\n]+\n$/, `expected one 'thinstack: ...' line on stderr:\n${describeRun(r)}`);
  for (const p of patterns) assert.match(r.stderr, p, `stderr should match ${p}:\n${describeRun(r)}`);
  return r.stderr.trim();
}

/** Runs thinstack and asserts success: a shorthand for the steps of a session. */
export async function ts(args: string[], options: RunOptions = {}, stderr?: RegExp): Promise<Run> {
  return ok(await thinstack(args, options), stderr);
}

/** One entry of a tar stream. */
export interface TarEntry {
  name: string;
  type: string;
  mode: number;
  mtime: number;
  linkname?: string;
  data: Buffer;
}

/** Reads a tar stream (what `cp KEY:/path -` writes). */
export async function untar(bytes: Uint8Array): Promise<TarEntry[]> {
  const extract = tar.extract();
  const entries: TarEntry[] = [];
  const done = (async () => {
    for await (const e of extract) {
      const chunks: Buffer[] = [];
      for await (const c of e) chunks.push(c as Buffer);
      const h = e.header;
      entries.push({ name: h.name, type: h.type ?? "file", mode: (h.mode ?? 0) & 0o7777, mtime: h.mtime?.getTime() ?? 0, linkname: h.linkname ?? undefined, data: Buffer.concat(chunks) });
    }
  })();
  extract.end(Buffer.from(bytes));
  await done;
  return entries;
}

/** Makes a tar stream (what `cp - KEY:/path` reads). */
export async function mktar(entries: { name: string; type?: "file" | "directory" | "symlink" | "link"; mode?: number; mtime?: Date; linkname?: string; data?: string | Uint8Array }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const data = e.data === undefined ? undefined : Buffer.from(e.data);
    await new Promise<void>((resolve, reject) => {
      const header = { name: e.name, type: e.type ?? "file", mode: e.mode, mtime: e.mtime, linkname: e.linkname, size: data?.byteLength ?? 0 };
      if (data) pack.entry(header, data, (err) => (err ? reject(err) : resolve()));
      else pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Parses `Key: value` lines (info) into ordered pairs. */
export function parseFields(text: string): [string, string][] {
  return text.split("\n").filter((l) => /^\s+\S.*: /.test(l)).map((l) => {
    const i = l.indexOf(": ");
    return [l.slice(0, i).trim(), l.slice(i + 2)];
  });
}

/** Parses an aligned table (ls, usage) into rows keyed by the header's column names. */
export function parseTable(text: string): Record<string, string>[] {
  const [head, ...rows] = text.trimEnd().split("\n");
  const cols = head.split(/\s{2,}/);
  return rows.map((r) => Object.fromEntries(r.split(/\s{2,}/).map((v, i) => [cols[i], v])));
}

/** Bytes from a size `docker info` style (`67.11 MB`, `0 B`), to compare with. */
export function parseHuman(s: string): number {
  const m = /^([\d.]+) (B|kB|MB|GB|TB|PB)$/.exec(s);
  assert.ok(m, `'${s}' is not a human-readable size`);
  return Number(m[1]) * 1000 ** ["B", "kB", "MB", "GB", "TB", "PB"].indexOf(m[2]);
}

/** Deterministic bytes that do not compress to nothing. */
export function pattern(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
