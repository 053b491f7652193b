/**
 * The `thinstack` command at its edges, driven as a user drives it (see cli.ts; the
 * runs about the process, its stdout and its bin, in child processes): a reader of stdout that goes away (`| head`), the bin entry under Deno,
 * data sizes past what a pool can count, size defaults in `--help`, and docker cp's rule
 * for a destination ending in `/`.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { isDeno } from "../helpers/runtime.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { BIN, cliCommand, fails, ok, pattern, thinstack, ts, untar } from "./cli.ts";

declare const Deno: { execPath(): string } | undefined;

const REPO = fileURLToPath(new URL("../../", import.meta.url));

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tmpDir("thinstack-cli-edges-");
  try {
    await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

/**
 * Runs `thinstack ARGS` with stdout on a pipe whose reader goes away after the first bytes,
 * as `thinstack ARGS | head -c 10` does; resolves to how the command ended.
 */
function withClosedReader(args: string[]): Promise<{ code: number | null; signal: string | null; stderr: string; got: number }> {
  const [cmd, argv] = cliCommand(args);
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  let got = 0;
  child.stderr!.on("data", (c) => (stderr += c));
  child.stdout!.once("data", (c: Uint8Array) => {
    got = c.byteLength;
    child.stdout!.destroy(); // closes the pipe's read end: the next write gets EPIPE
  });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stderr, got }));
  });
}

/** The deno binary to run bin.mjs with: this one under Deno, else the repository's, else one on PATH. */
function denoBinary(): string | undefined {
  if (isDeno) return Deno!.execPath();
  const local = path.join(REPO, "node_modules", ".bin", "deno");
  if (existsSync(local)) return local;
  const probe = spawnSync("deno", ["--version"], { stdio: "ignore" });
  return probe.status === 0 ? "deno" : undefined;
}

describe("thinstack CLI edges", { concurrency: true }, () => {
  test("a reader that goes away: cat, diff and cp to - stop quietly (exit 141, as cat under SIGPIPE), closing the store and releasing its lock", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await ts(["init", "--data-size", "64M", "--base-size", "32M"], r);
      await ts(["prepare", "a"], r);
      // Much more than a pipe holds (64 KiB), so the command is still writing when the reader goes.
      const big = pattern(8 * 1024 * 1024, 7);
      await fs.writeFile(path.join(dir, "big"), big);
      await ts(["cp", path.join(dir, "big"), "a:/big"], r);
      for (const args of [["cat", "a:/big"], ["diff", "a"], ["cp", "a:/big", "-"]]) {
        const run = await withClosedReader(["--root", root, ...args]);
        const what = `thinstack ${args.join(" ")} | head -c 10`;
        assert.ok(run.got > 0, `${what}: some output came first`);
        assert.equal(run.stderr, "", `${what}: nothing on stderr`);
        assert.deepEqual([run.code, run.signal], [141, null], `${what}: exit 141\n${run.stderr}`);
        assert.equal(await exists(path.join(root, "lock")), false, `${what}: the lock is released`);
        // The store was closed as after any command: it opens, and holds the file whole.
        const again = await ts(["cat", "a:/big"], r);
        assert.equal(again.bytes.byteLength, big.byteLength);
        assert.ok(Buffer.compare(again.bytes, Buffer.from(big)) === 0, `${what}: the file reads back whole`);
      }
      assert.match((await ts(["check"], r)).stdout, /: no faults\n$/);
    });
  });

  test("deno run -A src/cli/bin.mjs: the package's bin entry runs under Deno (no tsx loader there)", async (t) => {
    const deno = denoBinary();
    if (!deno) return t.skip("no deno binary here");
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      await ts(["init", "--data-size", "8M", "--base-size", "16M"], { root });
      const run = (args: string[]) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
          // As the README has it: from the repository, the bin's own path.
          const child = spawn(deno, ["run", "-A", path.relative(REPO, BIN), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
          let stdout = "";
          let stderr = "";
          child.stdout!.on("data", (c) => (stdout += c));
          child.stderr!.on("data", (c) => (stderr += c));
          child.on("error", reject);
          child.on("close", (code) => resolve({ code, stdout, stderr }));
        });
      const help = await run(["--help"]);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /^Usage: thinstack /);
      // info opens the store: the pool's workers (piscina) load under Deno's own loader.
      const info = await run(["--root", root, "info"]);
      assert.equal(info.code, 0, info.stderr);
      assert.equal(info.stderr, "");
      assert.match(info.stdout, /^Storage Driver: thinstack\n Pool Name: /);
      const missing = await run(["--root", root, "cat", "nope:/x"]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /^thinstack: [^\n]*ENOENT[^\n]*\n$/);
      assert.equal(await exists(path.join(root, "lock")), false);
    });
  });

  test("a data size past 2^31 blocks: init and resize say so in one EINVAL line naming the largest size, and change nothing", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await ts(["init", "--data-size", "8M", "--base-size", "16M"], r);
      const data = path.join(root, "data");
      const before = (await fs.stat(data)).size;
      fails(await thinstack(["resize", "--data-size", "1P"], r), 1,
        /^thinstack: EINVAL: invalid argument, resize '/, /--data-size '1P' is 17179869184 blocks of 64K/, /2147483648 blocks/,
        /the largest data size with 64K blocks is 128T\n$/);
      assert.equal((await fs.stat(data)).size, before, "the data file is as it was");
      assert.match((await ts(["status"], r)).stdout, / \d+\/128 /, "the pool still has its 128 blocks");
      // At init the block size is still to pick, and the store is not made.
      const fresh = path.join(dir, "fresh");
      fails(await thinstack(["init", "--data-size", "1P"], { root: fresh }), 1,
        /^thinstack: EINVAL: invalid argument, init '/, /'1P'/, /the largest data size with 64K blocks is 128T; a larger --block-size allows more\n$/);
      assert.equal(await exists(fresh), false);
      fails(await thinstack(["init", "--data-size", "1P", "--block-size", "128K"], { root: fresh }), 1, /EINVAL/, /with 128K blocks is 256T/);
    });
  });

  test("--help shows size defaults as they are typed (100G, 2G, 64K, 10G), not as byte counts", async () => {
    const help = ok(await thinstack(["init", "--help"])).stdout.replace(/\s+/g, " ");
    for (const [option, shown] of [["--data-size", "100G"], ["--metadata-size", "2G"], ["--block-size", "64K"], ["--base-size", "10G"]]) {
      assert.match(help, new RegExp(`${option} <size> [^-]*\\(default: ${shown}\\)`), `${option} defaults to ${shown}:\n${help}`);
    }
    assert.doesNotMatch(help, /default: \d{4,}/, help);
  });

  test("cp to a destination ending in '/': it must be an existing directory (ENOENT, ENOTDIR), as with docker cp; a directory source makes it", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await ts(["init", "--data-size", "8M", "--base-size", "16M"], r);
      await ts(["prepare", "a"], r);
      const file = path.join(dir, "file.txt");
      await fs.writeFile(file, "hello\n");
      const names = async () => (await untar((await ts(["cp", "a:/", "-"], r)).bytes)).map((e) => e.name).sort();

      // Into the layer.
      fails(await thinstack(["cp", file, "a:/dir/"], r), 1, /^thinstack: ENOENT: /, /'a:\/dir\/'/, /must exist/);
      assert.deepEqual(await names(), ["."], "no file named /dir was made");
      await ts(["cp", file, "a:/f"], r);
      fails(await thinstack(["cp", file, "a:/f/"], r), 1, /^thinstack: ENOTDIR: /, /'a:\/f\/'/);
      await ts(["cp", file, "a:/f"], r); // without the '/', a file is the destination
      const tree = path.join(dir, "tree");
      await fs.mkdir(path.join(tree, "sub"), { recursive: true });
      await fs.writeFile(path.join(tree, "sub", "x"), "x\n");
      await ts(["cp", tree, "a:/made/"], r); // a directory source makes it, as docker cp does
      await ts(["cp", file, "a:/made/"], r); // an existing directory takes the source's name
      assert.deepEqual(await names(), [".", "./f", "./made", "./made/file.txt", "./made/sub", "./made/sub/x"]);

      // Out to the host: the same rule.
      const missing = path.join(dir, "out") + "/";
      fails(await thinstack(["cp", "a:/f", missing], r), 1, /^thinstack: ENOENT: /, /must exist/);
      assert.equal(await exists(path.join(dir, "out")), false);
      fails(await thinstack(["cp", "a:/f", file + "/"], r), 1, /^thinstack: ENOTDIR: /);
      assert.equal(await fs.readFile(file, "utf8"), "hello\n");
      await ts(["cp", "a:/made", missing], r);
      assert.equal(await fs.readFile(path.join(dir, "out", "sub", "x"), "utf8"), "x\n");
    });
  });
});
