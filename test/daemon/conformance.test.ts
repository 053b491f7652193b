/**
 * containerd's own snapshotter conformance suite (Go, snapshots/testsuite through
 * snapshots/proxy, the client containerd uses for a proxy plugin) against `thinstack
 * serve` under this runtime: every subtest, each on a server and a store of its own,
 * layers mounted over FUSE, the suite mounting what Mounts returns and checking the
 * files. Rename, which containerd 1.6 skips for an overlayfs kernel bug, runs too (see
 * gosuite.ts). Gated on root, /dev/fuse, Go and Debian's containerd sources.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { runtimeCommand } from "../helpers/runtime.ts";
import { buildGoSuite, goSuiteMissing, runGoSuite } from "./gosuite.ts";
import { REPO } from "./helpers.ts";

const missing = goSuiteMissing();
let work = "";
let binary = "";

/** The suite's subtests in containerd 1.6 (names as it spells them). */
const SUBTESTS = [
  "Basic", "StatActive", "StatComitted", "TransitivityTest", "PreareViewFailingtest", "Update", "Remove", "Walk",
  "LayerFileupdate", "RemoveDirectoryInLowerLayer", "Chown", "DirectoryPermissionOnCommit", "RemoveIntermediateSnapshot",
  "DeletedFilesInChildSnapshot", "MoveFileFromLowerLayer", "Rename", "ViewReadonly", "StatInWalk", "CloseTwice",
  "RootPermission", "128LayersMount",
];

// In a describe: Deno runs a describe's after() hook, not a module-level one.
describe("conformance", () => {
  before(async () => {
    if (missing) return;
    work = await fs.mkdtemp(path.join(os.tmpdir(), "thinstack-conformance-"));
    binary = path.join(work, "snapshotter.test");
    await buildGoSuite(binary);
  });

  after(async () => {
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  test("conformance: every subtest of containerd's suite passes against thinstack serve", { skip: missing }, async () => {
    const [cmd, args] = runtimeCommand(path.join(REPO, "src/cli/main.ts"), ["serve"]);
    const { results, output } = await runGoSuite(binary, [cmd, ...args]);
    assert.deepEqual(Object.fromEntries([...results].sort()), Object.fromEntries(SUBTESTS.map((n) => [n, "PASS"]).sort()), output.slice(-20_000));
  });
});
