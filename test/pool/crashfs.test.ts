/**
 * The replay model of test/helpers/crashfs.ts on hand-made sequences: what it keeps and
 * loses at a cut is what strict POSIX promises, no more and no less.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import * as fileops from "../../src/pool/fileops.ts";
import { chooseCuts, type Keep, Recording, seeded, snapshot } from "../helpers/crashfs.ts";
import { tmpDir } from "../helpers/tmp.ts";

async function recorded(fn: (root: string) => Promise<void>): Promise<{ rec: Recording; replay: (cut: number, keep?: boolean | Keep, rand?: () => number) => Promise<string>; cleanup: () => Promise<void> }> {
  const root = await tmpDir("thinstack-cfs-");
  const logDir = await tmpDir("thinstack-cfslog-");
  const work = await tmpDir("thinstack-cfsout-");
  await fs.writeFile(path.join(root, "old"), "before");
  const initial = await snapshot(root);
  const r = fileops.startRecording(root, logDir);
  try {
    await fn(root);
  } finally {
    r.stop();
  }
  const rec = Recording.read(initial, logDir);
  let n = 0;
  return {
    rec,
    // `keep`: true keeps every operation that was not durable, false none (strict).
    replay: async (cut, keep = false, rand) => {
      const out = path.join(work, String(n++));
      await fs.mkdir(out);
      await rec.materialize(cut, out, typeof keep === "function" ? keep : keep ? () => "all" : undefined, rand);
      return out;
    },
    cleanup: async () => {
      for (const d of [root, logDir, work]) await fs.rm(d, { recursive: true, force: true });
    },
  };
}

const read = (p: string) => fs.readFile(p, "utf8").catch(() => undefined);
const names = async (p: string) => (await fs.readdir(p)).sort();

describe("crash replay model", () => {
  it("keeps a file's bytes only after its fsync, and its name only after its directory's", async () => {
    const t = await recorded(async (root) => {
      const fh = await fileops.openFile(path.join(root, "a"), "wx");
      await fh.writeFile(new TextEncoder().encode("hello"));
      await fh.datasync();
      await fh.close();
      await fileops.syncDir(root);
      const g = await fileops.openFile(path.join(root, "b"), "wx");
      await g.writeFile(new TextEncoder().encode("lost"));
      await g.close();
    });
    try {
      const steps = t.rec.steps.map((s) => s.rec.op);
      assert.deepEqual(steps, ["open", "pwrite", "fsync", "dirsync", "open", "pwrite"]);
      const [, write, sync, dirsync] = t.rec.steps;
      // Before the file's fsync finished: the name is not durable, nor are the bytes.
      assert.deepEqual(await names(await t.replay(sync.t)), ["old"]);
      // After the fsync, before the directory's: the inode has its bytes but no name yet.
      assert.deepEqual(await names(await t.replay(dirsync.t)), ["old"]);
      const after = await t.replay(t.rec.last + 1);
      assert.deepEqual(await names(after), ["a", "old"], "b's name was never synced");
      assert.equal(await read(path.join(after, "a")), "hello");
      // A torn replay may keep what was not durable.
      const torn = await t.replay(t.rec.last + 1, true);
      assert.deepEqual(await names(torn), ["a", "b", "old"]);
      assert.equal(await read(path.join(torn, "b")), "lost");
      assert.ok(write.t < sync.t);
    } finally {
      await t.cleanup();
    }
  });

  it("a rename kept without its source's creation still names the source's inode", async () => {
    const t = await recorded(async (root) => {
      const fh = await fileops.openFile(path.join(root, "tmp"), "w");
      await fh.writeFile(new TextEncoder().encode("new"));
      await fh.datasync();
      await fh.close();
      await fileops.rename(path.join(root, "tmp"), path.join(root, "old"));
    });
    try {
      const strict = await t.replay(t.rec.last + 1);
      assert.equal(await read(path.join(strict, "old")), "before", "no directory fsync: the rename is not durable");
      const torn = await t.replay(t.rec.last + 1, true);
      assert.deepEqual(await names(torn), ["old"]);
      assert.equal(await read(path.join(torn, "old")), "new");
    } finally {
      await t.cleanup();
    }
  });

  it("a file in a directory whose own name was never synced is lost with it", async () => {
    const t = await recorded(async (root) => {
      await fileops.makeDir(path.join(root, "d", "e"));
      const fh = await fileops.openFile(path.join(root, "d", "e", "f"), "wx");
      await fh.writeFile(new TextEncoder().encode("x"));
      await fh.sync();
      await fh.close();
      await fileops.syncDir(path.join(root, "d", "e"));
    });
    try {
      assert.deepEqual(await names(await t.replay(t.rec.last + 1)), ["old"]);
      assert.equal(await read(path.join(await t.replay(t.rec.last + 1, true), "d", "e", "f")), "x");
    } finally {
      await t.cleanup();
    }
  });

  it("finds the states a commit without a directory sync before its root rename leaves, and none with it", async () => {
    // A commit in small: a new file, then a root naming it, switched in by a rename.
    const commits = (syncBeforeRename: boolean) => async (root: string) => {
      for (let n = 1; n <= 8; n++) {
        const seg = await fileops.openFile(path.join(root, `seg.${n}`), "wx");
        await seg.writeFile(new TextEncoder().encode(`segment ${n}`));
        await seg.datasync();
        await seg.close();
        if (syncBeforeRename) await fileops.syncDir(root);
        const tmp = await fileops.openFile(path.join(root, "root.tmp"), "w");
        await tmp.writeFile(new TextEncoder().encode(`seg.${n}`));
        await tmp.datasync();
        await tmp.close();
        await fileops.rename(path.join(root, "root.tmp"), path.join(root, "root"));
        await fileops.syncDir(root);
      }
    };
    const broken = async (syncBeforeRename: boolean) => {
      const t = await recorded(commits(syncBeforeRename));
      try {
        const rand = seeded(7);
        let bad = 0;
        for (const cut of chooseCuts(t.rec, 40, rand)) {
          const out = await t.replay(cut, () => rand() < 0.5 ? "all" : "none", rand);
          const named = await read(path.join(out, "root"));
          if (named !== undefined && named.startsWith("seg.") && await read(path.join(out, named)) === undefined) bad++;
        }
        return bad;
      } finally {
        await t.cleanup();
      }
    };
    assert.ok(await broken(false) > 0, "without the sync, some replay has a root naming a file that is not there");
    assert.equal(await broken(true), 0, "with it, none");
  });

  it("records nothing outside a recording, and costs no log when none runs", async () => {
    const root = await tmpDir("thinstack-cfs-");
    try {
      assert.equal(fileops.recordingOf(root), undefined);
      const r = fileops.startRecording(root, root);
      assert.equal(fileops.recordingOf(path.join(root, "x")), root);
      assert.equal(fileops.recordingOf(root + "-other/x"), undefined);
      r.stop();
      assert.equal(fileops.recordingOf(path.join(root, "x")), undefined);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
