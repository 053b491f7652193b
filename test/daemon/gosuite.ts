/**
 * containerd's own snapshotter conformance suite (snapshots/testsuite), compiled offline
 * from Debian's golang-github-containerd-containerd-dev with the test main in
 * conformance/snapshotter_test.go, and run against a `thinstack serve` command line.
 *
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { collect, REPO, unmountUnder } from "./helpers.ts";

/** Where Debian's package puts containerd's Go sources. */
const GOCODE = "/usr/share/gocode";
const TESTSUITE = path.join(GOCODE, "src/github.com/containerd/containerd/snapshots/testsuite");
const TEST_MAIN = path.join(REPO, "test/daemon/conformance/snapshotter_test.go");

/** Why the Go suite cannot run here, or undefined when it can. */
export function goSuiteMissing(): string | undefined {
  if (process.getuid?.() !== 0) return "containerd's snapshotter suite mounts what Mounts returns: it needs root";
  if (!fs.existsSync("/dev/fuse")) return "no /dev/fuse";
  if (spawnSync("go", ["version"]).status !== 0) return "no Go toolchain (Debian: golang-go)";
  if (!fs.existsSync(TESTSUITE)) return `no ${TESTSUITE} (Debian: golang-github-containerd-containerd-dev)`;
  return undefined;
}

/**
 * Compiles the suite into `out` (a binary): GOPATH mode, no network, as
 * `GO111MODULE=off GOPATH=<dir>:/usr/share/gocode GOPROXY=off go test -c`.
 */
export async function buildGoSuite(out: string): Promise<void> {
  const gopath = await fsp.mkdtemp(path.join(os.tmpdir(), "thinstack-gopath-"));
  try {
    const pkg = path.join(gopath, "src/thinstack/conformance");
    await fsp.mkdir(pkg, { recursive: true });
    // The test main imports the suite from the copy (GOPATH mode finds a package by its
    // directory, so the copy cannot shadow the original under its own path).
    const main = await fsp.readFile(TEST_MAIN, "utf8");
    if (!main.includes(`"${SUITE_IMPORT}"`)) throw new Error(`${TEST_MAIN} does not import ${SUITE_IMPORT}`);
    await fsp.writeFile(path.join(pkg, "snapshotter_test.go"), main.replace(`"${SUITE_IMPORT}"`, `"${SUITE_COPY}"`));
    await copySuiteWithRename(path.join(gopath, "src", SUITE_COPY));
    const r = await collect(spawn("go", ["test", "-c", "-o", out], {
      cwd: pkg, stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, GO111MODULE: "off", GOPATH: `${gopath}:${GOCODE}`, GOPROXY: "off", GOFLAGS: "" },
    }));
    if (r.code !== 0) throw new Error(`go test -c failed (${r.code}):\n${r.stderr}${r.stdout}`);
  } finally {
    await fsp.rm(gopath, { recursive: true, force: true });
  }
}

/** The suite's import path, and that of the copy the test main is compiled with. */
const SUITE_IMPORT = "github.com/containerd/containerd/snapshots/testsuite";
const SUITE_COPY = "thinstack/testsuite";

/** The line of containerd 1.6's suite that skips its Rename subtest, whatever the snapshotter. */
const RENAME_SKIP = `t.Skip("rename test still fails on some kernels with overlay")`;

/**
 * Copies the suite's package to `dir` (as package thinstack/testsuite) with
 * its Rename subtest enabled: containerd 1.6 skips it unconditionally for an overlayfs
 * kernel bug (docker#25409) that has nothing to do with a FUSE snapshotter, and every
 * subtest is to run. Fails if the line is not there (a newer suite: look again).
 */
async function copySuiteWithRename(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  let found = false;
  for (const name of await fsp.readdir(TESTSUITE)) {
    let text = await fsp.readFile(path.join(TESTSUITE, name), "utf8");
    if (text.includes(RENAME_SKIP)) {
      text = text.replace(RENAME_SKIP, "// (thinstack: the overlayfs-only skip removed)");
      found = true;
    }
    await fsp.writeFile(path.join(dir, name), text);
  }
  if (!found) throw new Error(`${TESTSUITE} no longer has ${RENAME_SKIP}: see whether Rename still needs enabling`);
  // GOPATH mode resolves `gotest.tools/v3/...` to Debian's gotest.tools only for code in a
  // tree with a go.mod ("minimal module compatibility"), as containerd's own tree is.
  await fsp.writeFile(path.join(dir, "go.mod"), `module ${SUITE_COPY}\n\ngo 1.16\n`);
}

/** Each subtest's result, by name (`Basic`, `Update`, ...), and the whole output. */
export interface GoSuiteResult {
  results: Map<string, "PASS" | "FAIL" | "SKIP">;
  output: string;
}

/**
 * Runs the compiled suite against `serve` (the command line of a server; `--root DIR
 * --address SOCKET` is appended per subtest), only the subtests matching `run` if given.
 * The suite makes its directories under a private TMPDIR, and whatever a failed subtest
 * left mounted there is unmounted afterwards.
 */
export async function runGoSuite(binary: string, serve: string[], run?: string): Promise<GoSuiteResult> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "thinstack-gosuite-"));
  try {
    const args = ["-test.v", "-test.root", "-test.timeout", "15m", ...(run ? ["-test.run", run] : [])];
    const r = await collect(spawn(binary, args, {
      cwd: REPO, stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TMPDIR: tmp, THINSTACK_SERVE: JSON.stringify(serve) },
    }));
    const output = r.stdout + r.stderr;
    const results = new Map<string, "PASS" | "FAIL" | "SKIP">();
    for (const m of output.matchAll(/^\s*--- (PASS|FAIL|SKIP): TestThinstack\/(\S+)/gm)) results.set(m[2], m[1] as "PASS" | "FAIL" | "SKIP");
    return { results, output };
  } finally {
    await unmountUnder(tmp);
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}
