/**
 * `thinstack status` and `info` show a deferred deletion that failed in an earlier process
 * (the pool keeps it in deferred-delete-errors.json, see src/pool/deleteerrors.ts), until
 * a command that opens the store finishes the deletion. The failure itself is injected in
 * test/pool/deferred.test.ts; here the record of it is written as that process left it.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { DELETE_ERRORS_FILE } from "../../src/pool/deleteerrors.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { parseFields, ts } from "./cli.ts";

test("status and info show a failed deferred deletion until it is finished", async () => {
  const dir = await tmpDir("thinstack-cli-deferred-");
  try {
    const root = path.join(dir, "store");
    const r = { root };
    await ts(["init", "--data-size", "64M", "--base-size", "32M"], r);
    await ts(["prepare", "gone"], r);
    await ts(["rm", "gone"], r); // recorded, its freeing left to the next command
    const device = Number(/<device dev_id="(\d+)" [^>]*deleting="1">/.exec((await ts(["dump"], r)).stdout)?.[1]);
    assert.ok(device > 0);
    const failure = { device, code: "EIO", message: "EIO: i/o error, commit 'x'", time: "2026-01-02T03:04:05.000Z" };
    await fs.writeFile(path.join(root, DELETE_ERRORS_FILE), JSON.stringify([failure]));
    const line = `the deferred deletion of device ${device} failed (2026-01-02T03:04:05.000Z): EIO: i/o error, commit 'x'; it stays pending and is retried when the store is next opened\n`;
    assert.ok((await ts(["status"], r)).stdout.endsWith(line));
    assert.deepEqual(JSON.parse((await ts(["status", "--json"], r)).stdout).deferredDeleteErrors, [failure]);
    const info = parseFields((await ts(["info"], r)).stdout);
    assert.deepEqual(info.filter(([k]) => k === "Deferred Delete Error"), [["Deferred Delete Error", `device ${device} (2026-01-02T03:04:05.000Z): EIO: i/o error, commit 'x'`]]);
    // A command that changes the store finishes the deletion: the record goes.
    await ts(["ls"], r);
    assert.deepEqual(JSON.parse((await ts(["status", "--json"], r)).stdout).deferredDeleteErrors, []);
    assert.ok(!parseFields((await ts(["info"], r)).stdout).some(([k]) => k === "Deferred Delete Error"));
    await assert.rejects(fs.stat(path.join(root, DELETE_ERRORS_FILE)), { code: "ENOENT" });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
