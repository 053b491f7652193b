/**
 * containerd's snapshotter test suite (core/snapshots/testsuite), ported to TypeScript and
 * run against any snapshotter of containerd's shape: a factory `(root) => { snapshotter,
 * cleanup }` as the suite's `SnapshotterFunc`, one fresh snapshotter per scenario. The same
 * scenarios, with "mount and apply" replaced by applying the same changes through
 * `snapshotter.fs(key)`, and the flat reference directory replaced by the in-memory model.
 * A snapshotter without `fs` (one reached over gRPC, whose files are only reachable
 * through a mount) runs the scenarios that change no files and skips the others.
 *
 * @module
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { test } from "node:test";
import type { LayerFs, LayerInfo, LayerUpdate } from "../../src/layers/mod.ts";
import { describeLayer, plain, tempDir } from "./helpers.ts";
import { MemFs } from "./memfs.ts";

/** Labels, as the suite's snapshotter.Opt gives them. */
export type SnapshotOptions = { labels?: Record<string, string> };

/** containerd's snapshots.Snapshotter, in the layer store's shapes (errors carry the store's codes). */
export interface Snapshotter {
  prepare(key: string, parent?: string, options?: SnapshotOptions): Promise<unknown>;
  view(key: string, parent?: string, options?: SnapshotOptions): Promise<unknown>;
  commit(name: string, key: string, options?: SnapshotOptions): Promise<unknown>;
  remove(key: string): Promise<void>;
  stat(key: string): Promise<LayerInfo>;
  update(info: LayerUpdate, ...fieldPaths: string[]): Promise<LayerInfo>;
  walk(fn: (info: LayerInfo) => void | Promise<void>, ...filters: string[]): Promise<void>;
  close(): Promise<void>;
  /** A layer's files without a mount (the layer store's own API); absent over gRPC. */
  fs?(key: string): LayerFs;
}

/** A snapshotter whose layers' files the suite can reach. */
type FileSnapshotter = Snapshotter & { fs(key: string): LayerFs };

/** The suite's SnapshotterFunc: a fresh snapshotter in `root` (an empty directory), and how to take it down. */
export type SnapshotterFactory = (root: string) => Promise<{ snapshotter: Snapshotter; cleanup: () => Promise<void> }>;

/** Why a scenario that changes files cannot run on a snapshotter without `fs`. */
const NEEDS_FILES = "changes files, and this snapshotter's layers are reachable only through their mounts: test/daemon/conformance.test.ts runs these through thinstack serve's FUSE mounts (containerd's Go suite)";

/** What appliers need: the calls both a layer and the model offer. */
interface Target {
  writeFile(p: string, data: string | Uint8Array): Promise<void>;
  mkdir(p: string, o?: { mode?: number; recursive?: boolean }): Promise<string | undefined>;
  rm(p: string, o?: { recursive?: boolean; force?: boolean }): Promise<void>;
  chmod(p: string, mode: number): Promise<void>;
  chown(p: string, uid: number, gid: number): Promise<void>;
  link(a: string, b: string): Promise<void>;
  rename(a: string, b: string): Promise<void>;
}
type Applier = (t: Target) => Promise<void>;

// continuity's fstest helpers.
const createFile = (name: string, content: string, perm: number): Applier => async (t) => {
  await t.writeFile(name, content);
  await t.chmod(name, perm);
};
const createDir = (name: string, perm: number): Applier => async (t) => {
  await t.mkdir(name, { mode: perm });
  await t.chmod(name, perm);
};
const removeAll = (name: string): Applier => (t) => t.rm(name, { recursive: true, force: true });
const chown = (name: string, uid: number, gid: number): Applier => (t) => t.chown(name, uid, gid);
const link = (oldname: string, newname: string): Applier => (t) => t.link(oldname, newname);
const rename = (oldname: string, newname: string): Applier => (t) => t.rename(oldname, newname);
const apply = (...as: Applier[]): Applier => async (t) => {
  for (const a of as) await a(t);
};

const gcRoot = () => ({ labels: { "containerd.io/gc.root": new Date().toISOString() } });
let counter = 0;

/** createSnapshot: prepare on `parent`, apply, commit under a fresh name. */
async function createSnapshot(store: FileSnapshotter, parent: string, a: Applier): Promise<string> {
  const n = `snap-${++counter}`;
  await store.prepare(`${n}-prepare`, parent || undefined, gcRoot());
  await a(store.fs(`${n}-prepare`));
  await store.commit(n, `${n}-prepare`, gcRoot());
  return n;
}

/** checkSnapshot: a view of `name` must equal the flat model. */
async function checkSnapshot(store: FileSnapshotter, name: string, flat: MemFs): Promise<void> {
  const view = `${name}-view`;
  await store.view(view, name, gcRoot());
  try {
    assert.deepEqual(plain(await describeLayer(store.fs(view))), plain(flat.describe()), `snapshot ${name}`);
  } finally {
    await store.remove(view);
  }
}

/** checkSnapshots: a chain of snapshots, each checked against the changes applied flat. */
async function checkSnapshots(store: FileSnapshotter, ...as: Applier[]): Promise<void> {
  const flat = new MemFs();
  let parent = "";
  for (const a of as) {
    const s = await createSnapshot(store, parent, a);
    await a(flat);
    await checkSnapshot(store, s, flat);
    parent = s;
  }
}

/** baseTestSnapshots: c1 <- c2 <- a1, a2, c2 <- v1, v2. */
async function baseTestSnapshots(sn: Snapshotter): Promise<void> {
  const opt = gcRoot();
  await sn.prepare("c1-a", undefined, opt);
  await sn.commit("c1", "c1-a", opt);
  await sn.prepare("c2-a", "c1", opt);
  await sn.commit("c2", "c2-a", opt);
  await sn.prepare("a1", "c2", opt);
  await sn.prepare("a2", undefined, opt);
  await sn.view("v1", "c2", opt);
  await sn.view("v2", undefined, opt);
}

/**
 * Registers every scenario of the suite as a test named `${label}: SCENARIO`. With
 * `files: false` (the snapshotter has no `fs`), the scenarios that change files are
 * registered as skipped.
 */
export function snapshotterSuite(label: string, factory: SnapshotterFactory, options: { files?: boolean } = {}): void {
  const files = options.files ?? true;
  /** Runs a scenario on a fresh snapshotter. */
  const run = async (fn: (sn: Snapshotter) => Promise<void>) => {
    const root = await tempDir("snapshotter-");
    const { snapshotter, cleanup } = await factory(root);
    try {
      await fn(snapshotter);
    } finally {
      await cleanup();
      await fs.rm(root, { recursive: true, force: true });
    }
  };
  const scenario = (name: string, fn: (sn: Snapshotter) => Promise<void>) => test(`${label}: ${name}`, () => run(fn));
  const fileScenario = (name: string, fn: (sn: FileSnapshotter) => Promise<void>) =>
    test(`${label}: ${name}`, { skip: files ? false : NEEDS_FILES }, () =>
      run(async (sn) => {
        if (!sn.fs) throw new Error(`${label}: the snapshotter has no fs(); pass { files: false }`);
        await fn(sn as FileSnapshotter);
      }));

  fileScenario("Basic", async (sn) => {
    const initial = apply(
      createFile("/foo", "foo\n", 0o777),
      createDir("/a", 0o755),
      createDir("/a/b", 0o755),
      createDir("/a/b/c", 0o755),
    );
    const diff = apply(
      createFile("/bar", "bar\n", 0o777),
      createFile("/foo", "bar\n", 0o777), // also, change content of foo to bar
      removeAll("/a/b"),
    );
    await sn.prepare("preparing", undefined, gcRoot());
    await initial(sn.fs("preparing"));
    await sn.commit("committed", "preparing", gcRoot());
    const si = await sn.stat("committed");
    assert.equal(si.parent, "");
    assert.equal(si.kind, "committed");
    await assert.rejects(sn.stat("preparing"), { code: "ENOENT" }, "preparing should no longer be available after Commit");

    await sn.prepare("nextlayer", "committed", gcRoot());
    const flat = new MemFs();
    await initial(flat);
    assert.deepEqual(plain(await describeLayer(sn.fs("nextlayer"))), plain(flat.describe()));
    await diff(sn.fs("nextlayer"));
    const ni = await sn.stat("nextlayer");
    assert.equal(ni.parent, "committed");
    assert.equal(ni.kind, "active");

    await sn.commit("committed-next", "nextlayer", gcRoot());
    const si2 = await sn.stat("committed-next");
    assert.equal(si2.parent, "committed");
    assert.equal(si2.kind, "committed");
    await assert.rejects(sn.stat("nextlayer"), { code: "ENOENT" });

    const walked = new Map<string, unknown>();
    await sn.walk((info) => {
      walked.set(info.name, info);
    });
    assert.deepEqual(walked.get(si.name), si);
    assert.deepEqual(walked.get(si2.name), si2);

    await sn.view("nextnextlayer", "committed-next", gcRoot());
    await diff(flat);
    assert.deepEqual(plain(await describeLayer(sn.fs("nextnextlayer"))), plain(flat.describe()));
    await sn.remove("nextnextlayer");

    await assert.rejects(sn.remove("committed"), (e: Error & { code?: string }) => e.code === "EBUSY" && e.message.includes("remove"));
    await sn.remove("committed-next");
    await sn.remove("committed");
  });

  fileScenario("StatActive", async (sn) => {
    await sn.prepare("preparing", undefined, gcRoot());
    await sn.fs("preparing").writeFile("/foo", "foo\n", { mode: 0o777 });
    const si = await sn.stat("preparing");
    assert.equal(si.name, "preparing");
    assert.equal(si.kind, "active");
    assert.equal(si.parent, "");
  });

  fileScenario("StatCommitted", async (sn) => {
    await sn.prepare("preparing", undefined, gcRoot());
    await sn.fs("preparing").writeFile("/foo", "foo\n", { mode: 0o777 });
    await sn.commit("committed", "preparing", gcRoot());
    const si = await sn.stat("committed");
    assert.equal(si.name, "committed");
    assert.equal(si.kind, "committed");
    assert.equal(si.parent, "");
  });

  fileScenario("Transitivity", async (sn) => {
    await sn.prepare("preparing", undefined, gcRoot());
    await sn.fs("preparing").writeFile("/foo", "foo\n", { mode: 0o777 });
    await sn.commit("snapA", "preparing", gcRoot());
    await sn.prepare("next", "snapA", gcRoot());
    await sn.fs("next").writeFile("/foo", "foo bar\n", { mode: 0o777 });
    await sn.commit("snapB", "next", gcRoot());
    const siA = await sn.stat("snapA");
    const siB = await sn.stat("snapB");
    const siParentB = await sn.stat(siB.parent);
    assert.equal(siA.parent, "");
    assert.equal(siB.parent, "snapA");
    assert.equal(siParentB.parent, "");
  });

  scenario("PrepareViewFailing (same key twice)", async (sn) => {
    await sn.prepare("preparing", undefined, gcRoot());
    await sn.commit("snapA", "preparing", gcRoot());
    await sn.prepare("newlayer", "snapA", gcRoot());
    await assert.rejects(sn.view("newlayer", "snapA", gcRoot()), { code: "EEXIST" });
    await sn.prepare("prepLayer", "snapA", gcRoot());
    await assert.rejects(sn.prepare("prepLayer", "snapA", gcRoot()), { code: "EEXIST" });
    await sn.view("viewLayer", "snapA", gcRoot());
    await assert.rejects(sn.view("viewLayer", "snapA", gcRoot()), { code: "EEXIST" });
  });

  scenario("Update", async (sn) => {
    const t1 = Date.now();
    await baseTestSnapshots(sn);
    const t2 = Date.now();
    const cases = [
      { name: "c1", kind: "committed", parent: "" },
      { name: "c2", kind: "committed", parent: "c1" },
      { name: "a1", kind: "active", parent: "c2" },
      { name: "a2", kind: "active", parent: "" },
      { name: "v1", kind: "view", parent: "c2" },
      { name: "v2", kind: "view", parent: "" },
    ];
    for (const tc of cases) {
      let st = await sn.stat(tc.name);
      assert.ok(st.created.getTime() >= t1 && st.created.getTime() <= t2, `${tc.name}: created time`);
      assert.equal(st.created.getTime(), st.updated.getTime(), `${tc.name}: updated equals created`);
      assert.equal(st.kind, tc.kind);
      assert.equal(st.parent, tc.parent);
      assert.equal(st.name, tc.name);

      const createdAt = st.created.getTime();
      const rootTime = new Date().toISOString();
      let expected: Record<string, string> = { l1: "v1", l2: "v2", l3: "v3", "containerd.io/gc.root": rootTime };
      const u1 = Date.now();
      st = await sn.update({ name: tc.name, labels: expected });
      const u2 = Date.now();
      assert.equal(st.created.getTime(), createdAt);
      assert.ok(st.updated.getTime() >= u1 && st.updated.getTime() <= u2);
      assert.equal(st.kind, tc.kind);
      assert.equal(st.parent, tc.parent);
      assert.equal(st.name, tc.name);
      assert.deepEqual(st.labels, expected);

      expected = { l1: "updated", l3: "v3", "containerd.io/gc.root": rootTime };
      st = await sn.update({ name: tc.name, labels: { l1: "updated", l4: "v4" } }, "labels.l1", "labels.l2");
      assert.deepEqual(st.labels, expected);

      expected = { l4: "v4", "containerd.io/gc.root": rootTime };
      st = await sn.update({ name: tc.name, labels: expected }, "labels");
      assert.deepEqual(st.labels, expected);

      // An immutable field path is refused.
      await assert.rejects(sn.update({ name: tc.name }, "parent"), { code: "EINVAL" });
    }
  });

  scenario("Remove (keys and names can be used again)", async (sn) => {
    await sn.prepare("committed-a", undefined, gcRoot());
    await sn.commit("committed-1", "committed-a", gcRoot());
    await sn.prepare("reuse-1", "committed-1", gcRoot());
    await sn.remove("reuse-1");
    await sn.view("reuse-1", "committed-1", gcRoot());
    await sn.remove("reuse-1");
    await sn.prepare("reuse-1", undefined, gcRoot());
    await sn.remove("committed-1");
    await sn.commit("committed-1", "reuse-1", gcRoot());
  });

  scenario("Walk with filters", async (sn) => {
    const opt = { labels: { "containerd.io/gc.root": "check-walk" } };
    await sn.prepare("a-np", undefined, opt);
    await sn.prepare("p-tmp", undefined, opt);
    await sn.commit("p", "p-tmp", opt);
    await sn.prepare("a", "p", opt);
    await sn.view("v", "p", opt);
    await sn.prepare("p-wl-tmp", undefined, opt);
    await sn.commit("p-wl", "p-wl-tmp", { labels: { l: "1", "containerd.io/gc.root": "check-walk" } });
    await sn.prepare("a-wl", "p-wl", { labels: { l: "2", "containerd.io/gc.root": "check-walk" } });
    await sn.view("v-wl", "p-wl", { labels: { l: "3", "containerd.io/gc.root": "check-walk" } });
    await sn.prepare("a-np-wl", undefined, { labels: { l: "2", "containerd.io/gc.root": "check-walk" } });
    const cases: { matches: string[]; filters: string[] }[] = [
      { matches: ["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"], filters: ['labels."containerd.io/gc.root"==check-walk'] },
      { matches: ["a-np", "a", "a-wl", "a-np-wl"], filters: ['kind==active,labels."containerd.io/gc.root"==check-walk'] },
      { matches: ["v", "v-wl"], filters: ['kind==view,labels."containerd.io/gc.root"==check-walk'] },
      { matches: ["p", "p-wl"], filters: ['kind==committed,labels."containerd.io/gc.root"==check-walk'] },
      { matches: ["p", "a-np-wl"], filters: ["name==p", "name==a-np-wl"] },
      { matches: ["a-wl"], filters: ["name==a-wl,labels.l"] },
      { matches: ["a", "v"], filters: ["parent==p"] },
      { matches: ["a", "v", "a-wl", "v-wl"], filters: ['parent!="",labels."containerd.io/gc.root"==check-walk'] },
      { matches: ["p-wl", "a-wl", "v-wl", "a-np-wl"], filters: ["labels.l"] },
      { matches: ["a-wl", "a-np-wl"], filters: ["labels.l==2"] },
    ];
    for (const [i, tc] of cases.entries()) {
      const actual: string[] = [];
      await sn.walk((info) => {
        actual.push(info.name);
      }, ...tc.filters);
      assert.deepEqual(actual.sort(), [...tc.matches].sort(), `case ${i}: ${tc.filters.join(" | ")}`);
    }
  });

  fileScenario("LayerFileupdate", async (sn) => {
    const l1 = apply(
      createDir("/etc", 0o700),
      createFile("/etc/hosts", "mydomain 10.0.0.1", 0o644),
      createFile("/etc/profile", "PATH=/usr/bin", 0o644),
    );
    const l2 = apply(
      createFile("/etc/hosts", "mydomain 10.0.0.2", 0o644),
      createFile("/etc/profile", "PATH=/usr/bin", 0o666),
      createDir("/root", 0o700),
      createFile("/root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0o644),
    );
    // containerd runs it five times to catch sporadic failures.
    for (let i = 0; i < 5; i++) await checkSnapshots(sn, l1, l2);
  });

  fileScenario("RemoveDirectoryInLowerLayer", async (sn) => {
    await checkSnapshots(sn,
      apply(createDir("/lib", 0o700), createFile("/lib/hidden", "", 0o644)),
      apply(removeAll("/lib"), createDir("/lib", 0o700), createFile("/lib/not-hidden", "", 0o644)),
      apply(createFile("/lib/newfile", "", 0o644)),
    );
  });

  fileScenario("Chown", async (sn) => {
    await checkSnapshots(sn,
      apply(createDir("/opt", 0o700), createDir("/opt/a", 0o700), createDir("/opt/a/b", 0o700), createFile("/opt/a/b/file.txt", "hello", 0o644)),
      apply(chown("/opt", 1, 1), chown("/opt/a", 1, 1), chown("/opt/a/b", 1, 1), chown("/opt/a/b/file.txt", 1, 1)),
    );
  });

  fileScenario("DirectoryPermissionOnCommit", async (sn) => {
    await checkSnapshots(sn,
      apply(
        createDir("/dir1", 0o700), createDir("/dir2", 0o700), createDir("/dir3", 0o700), createDir("/dir4", 0o700),
        createFile("/dir4/f1", "...", 0o644), createDir("/dir5", 0o700), createFile("/dir5/f1", "...", 0o644),
        chown("/dir1", 1, 1), chown("/dir2", 1, 1), chown("/dir3", 1, 1), chown("/dir5", 1, 1), chown("/dir5/f1", 1, 1),
      ),
      apply(chown("/dir2", 0, 0), removeAll("/dir3"), chown("/dir4", 1, 1), chown("/dir4/f1", 1, 1)),
      apply(createDir("/dir3", 0o700), chown("/dir3", 1, 1), removeAll("/dir5"), createDir("/dir5", 0o700), chown("/dir5", 1, 1)),
    );
  });

  scenario("RemoveIntermediateSnapshot", async (sn) => {
    await sn.prepare("base", undefined, gcRoot());
    await sn.commit("committed-base", "base", gcRoot());
    await sn.prepare("intermediate", "committed-base", gcRoot());
    await sn.commit("committed-inter", "intermediate", gcRoot());
    await sn.prepare("toplayer", "committed-inter", gcRoot());
    await assert.rejects(sn.remove("committed-inter"), { code: "EBUSY" }, "intermediate layer removal should fail");
    await sn.remove("toplayer");
    await sn.remove("committed-inter");
    await sn.remove("committed-base");
  });

  fileScenario("DeletedFilesInChildSnapshot", async (sn) => {
    await checkSnapshots(sn,
      apply(createFile("/foo", "foo\n", 0o777), createFile("/foobar", "foobar\n", 0o777)),
      apply(removeAll("/foobar")),
      apply(),
    );
  });

  fileScenario("MoveFileFromLowerLayer (with a hardlink)", async (sn) => {
    await checkSnapshots(sn,
      apply(createDir("/dir1", 0o700), createFile("/dir1/f1", "Hello", 0o644), createDir("dir2", 0o700), createFile("dir2/f2", "...", 0o644)),
      apply(
        createDir("/dir3", 0o700), createFile("/dir3/f1", "Hello", 0o644), removeAll("/dir1"),
        link("dir2/f2", "dir3/f2"), removeAll("dir2/f2"),
      ),
    );
  });

  fileScenario("ViewReadonly", async (sn) => {
    await sn.prepare("preparing", undefined, gcRoot());
    await sn.commit("committed", "preparing", gcRoot());
    await sn.view("view", "committed", gcRoot());
    await assert.rejects(sn.fs("view").writeFile("/testfile", "testcontent"), { code: "EROFS" });
    await sn.remove("view");
    await sn.remove("committed");
  });

  scenario("StatInWalk", async (sn) => {
    const prefix = "stats-in-walk-";
    const opt = gcRoot();
    await sn.prepare(`${prefix}c1-a`, undefined, opt);
    await sn.commit(`${prefix}c1`, `${prefix}c1-a`, opt);
    await sn.prepare(`${prefix}c2-a`, `${prefix}c1`, opt);
    await sn.commit(`${prefix}c2`, `${prefix}c2-a`, opt);
    await sn.prepare(`${prefix}a1`, `${prefix}c2`, opt);
    await sn.view(`${prefix}v1`, `${prefix}c2`, opt);
    let seen = 0;
    await sn.walk(async (si) => {
      if (!si.name.startsWith(prefix)) return;
      assert.deepEqual(await sn.stat(si.name), si);
      seen++;
    });
    assert.equal(seen, 4);
  });

  test(`${label}: CloseTwice`, async () => {
      const root = await tempDir("snapshotter-");
      const { snapshotter: sn, cleanup } = await factory(root);
      try {
        await sn.prepare("closeTwice-prepare", undefined, gcRoot());
        await sn.commit("closeTwice", "closeTwice-prepare", gcRoot());
        await sn.remove("closeTwice");
        await sn.close();
        await sn.close();
      } finally {
        await cleanup();
        await fs.rm(root, { recursive: true, force: true });
      }
    });

  fileScenario("RootPermission", async (sn) => {
    await sn.prepare("preparing", undefined, gcRoot());
    const st = await sn.fs("preparing").stat("/");
    assert.equal(st.mode & 0o777, 0o755);
  });

  fileScenario("Rename (directories too)", async (sn) => {
    await checkSnapshots(sn,
      apply(
        createDir("/dir1", 0o700), createDir("/somefiles", 0o700),
        createFile("/somefiles/f1", "was here first!", 0o644), createFile("/somefiles/f2", "nothing interesting", 0o644),
      ),
      apply(
        rename("/dir1", "/dir2"),
        createFile("/somefiles/f1-overwrite", "new content 1", 0o644),
        rename("/somefiles/f1-overwrite", "/somefiles/f1"),
        rename("/somefiles/f2", "/somefiles/f3"),
      ),
    );
  });

  fileScenario("128LayersMount", async (sn) => {
    const lowest = apply(
      createFile("/bottom", "way at the bottom\n", 0o777),
      createFile("/overwriteme", "FIRST!\n", 0o777),
      createDir("/addhere", 0o755),
      createDir("/onlyme", 0o755),
      createFile("/onlyme/bottom", "bye!\n", 0o777),
    );
    const appliers = [lowest];
    for (let i = 1; i <= 127; i++) {
      appliers.push(apply(
        createFile("/overwriteme", `${i} WAS HERE!\n`, 0o777),
        createFile(`/addhere/file-${i}`, "same\n", 0o755),
        removeAll("/onlyme"),
        createDir("/onlyme", 0o755),
        createFile(`/onlyme/file-${i}`, "only me!\n", 0o777),
      ));
    }
    const flat = new MemFs();
    let parent = "";
    for (const [i, a] of appliers.entries()) {
      const preparing = `prepare-layer-${i}`;
      await sn.prepare(preparing, parent || undefined, gcRoot());
      assert.deepEqual(plain(await describeLayer(sn.fs(preparing))), plain(flat.describe()), `[layer ${i}] before apply`);
      await a(flat);
      await a(sn.fs(preparing));
      assert.deepEqual(plain(await describeLayer(sn.fs(preparing))), plain(flat.describe()), `[layer ${i}] after apply`);
      parent = `committed-${i}`;
      await sn.commit(parent, preparing, gcRoot());
    }
    await sn.view("fullview", parent, gcRoot());
    assert.deepEqual(plain(await describeLayer(sn.fs("fullview"))), plain(flat.describe()), "fullview should equal flat");
  });
}
