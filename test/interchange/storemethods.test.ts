/**
 * The layer store's own interchange methods: apply as a transaction (all or nothing),
 * diff from the layer's own tables (checked against the two-tree walk), durable image
 * records, and the cleanup of what an interrupted transaction leaves.
 */
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { changeset } from "../../src/interchange/changeset.ts";
import { fsTarget } from "../../src/interchange/fstarget.ts";
import { walkChanges } from "../../src/interchange/walkdiff.ts";
import { hasCode } from "../../src/common/errors.ts";
import { ImageStore } from "../../src/images/mod.ts";
import { SCRATCH_LABEL } from "../../src/layers/mod.ts";
import { spawnScript } from "../helpers/runtime.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { collect, describeView, tarOf } from "./helpers.ts";

const MiB = 2 ** 20;

async function withStore(fn: (store: ImageStore, dir: string) => Promise<void>): Promise<void> {
  const dir = await tmpDir("thinstack-storemethods-");
  const store = await ImageStore.open(dir, { create: true, dataSize: 256 * MiB, baseSize: 64 * MiB });
  try {
    await fn(store, dir);
  } finally {
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** A base layer `base` with a few entries of each kind. */
async function base(store: ImageStore): Promise<void> {
  await store.prepare("base-x");
  await store.apply("base-x", await tarOf([
    { name: "etc/", mode: 0o755 },
    { name: "etc/passwd", data: "root:x:0:0\n" },
    { name: "etc/hosts", data: "127.0.0.1 localhost\n" },
    { name: "bin/", mode: 0o755 },
    { name: "bin/sh", data: new Uint8Array(300_000).fill(7), mode: 0o755 },
    { name: "bin/ash", type: "link", linkname: "bin/sh" },
    { name: "var/", mode: 0o755 },
    { name: "var/cache/", mode: 0o755 },
    { name: "var/cache/a", data: "a" },
    { name: "var/cache/b", data: "b" },
    { name: "usr/", mode: 0o755 },
    { name: "usr/lib", type: "symlink", linkname: "/lib" },
  ]));
  await store.commit("base", "base-x");
}

const names = async (store: ImageStore) => (await store.list()).map((l) => l.name).sort();

describe("store.apply", () => {
  it("applies a tarball to an active layer, and the result commits and reopens", async () => {
    await withStore(async (store, dir) => {
      await base(store);
      await store.prepare("ctr", "base");
      const r = await store.apply("ctr", await tarOf([{ name: "etc/.wh.hosts" }, { name: "etc/motd", data: "hi\n" }]));
      assert.ok(r.entries >= 2, `entries ${r.entries}`);
      const fs = store.fs("ctr");
      assert.equal(await fs.readFile("/etc/motd", "utf8"), "hi\n");
      await assert.rejects(fs.stat("/etc/hosts"), (e) => hasCode(e, "ENOENT"));
      assert.deepEqual(await names(store), ["base", "ctr"]);
      await store.close();
      const again = await ImageStore.open(dir);
      try {
        assert.equal(await again.fs("ctr").readFile("/etc/motd", "utf8"), "hi\n");
        assert.equal(await again.fs("base").readFile("/etc/hosts", "utf8"), "127.0.0.1 localhost\n");
      } finally {
        await again.close();
      }
    });
  });

  it("leaves the layer exactly as it was when the archive is bad, blocks included", async () => {
    await withStore(async (store) => {
      await base(store);
      await store.prepare("ctr", "base");
      await store.fs("ctr").writeFile("/mine", new Uint8Array(200_000).fill(1));
      const before = await describeView(fsTarget(store.fs("ctr")), { mtime: true });
      const used = store.pool.status().dataBlocks.used;
      const good = await tarOf([{ name: "etc/.wh.passwd" }, { name: "big", data: new Uint8Array(2 * MiB).fill(9) }, { name: "small", data: "s" }]);
      // Cut in the middle of the second file's data: the first entries are applied by then.
      await assert.rejects(store.apply("ctr", good.subarray(0, MiB)), /end|truncat|short/i);
      assert.deepEqual(await describeView(fsTarget(store.fs("ctr")), { mtime: true }), before);
      assert.equal(store.pool.status().dataBlocks.used, used, "the failed apply's blocks went back");
      assert.deepEqual(await names(store), ["base", "ctr"], "no scratch layer is left or listed");
      // Invalid whiteouts fail the same way.
      await assert.rejects(store.apply("ctr", await tarOf([{ name: "new", data: "x" }, { name: "etc/.wh." }])));
      await assert.rejects(store.fs("ctr").stat("/new"), (e) => hasCode(e, "ENOENT"));
    });
  });

  it("refuses views and committed layers, and changes to the layer while it runs", async () => {
    await withStore(async (store) => {
      await base(store);
      await assert.rejects(store.apply("base", await tarOf([{ name: "x", data: "1" }])), (e) => hasCode(e, "EINVAL"));
      await assert.rejects(store.apply("nope", await tarOf([])), (e) => hasCode(e, "ENOENT"));
      await store.prepare("ctr", "base");
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const running = store.transaction("ctr", async (fs) => {
        await fs.writeFile("/in-tx", "1");
        await gate;
      });
      await new Promise((r) => setTimeout(r, 20));
      await assert.rejects(store.fs("ctr").writeFile("/outside", "2"), (e) => hasCode(e, "EBUSY"));
      await assert.rejects(store.commit("c", "ctr"), (e) => hasCode(e, "EBUSY"));
      await assert.rejects(store.remove("ctr"), (e) => hasCode(e, "EBUSY"));
      release();
      await running;
      assert.equal(await store.fs("ctr").readFile("/in-tx", "utf8"), "1");
      await store.fs("ctr").writeFile("/outside", "2");
    });
  });
});

describe("store edges", () => {
  it("an fs object taken before an apply keeps working on the layer after it", async () => {
    await withStore(async (store) => {
      await base(store);
      await store.prepare("ctr", "base");
      const fs = store.fs("ctr");
      await fs.writeFile("/before", "1");
      await store.apply("ctr", await tarOf([{ name: "applied", data: "2" }]));
      assert.equal(await fs.readFile("/applied", "utf8"), "2");
      await fs.writeFile("/after", "3");
      const listed = await store.fs("ctr").readdir("/");
      for (const n of ["after", "applied", "before"]) assert.ok(listed.includes(n), `${n} in ${listed}`);
    });
  });

  it("rm with force ignores a missing parent (as Node's does) but not a file as parent", async () => {
    await withStore(async (store) => {
      await store.prepare("l");
      const fs = store.fs("l");
      await fs.rm("/nodir/x", { force: true });
      await fs.rm("/nodir/x", { recursive: true, force: true });
      await fs.writeFile("/f", "x");
      await assert.rejects(fs.rm("/f/x", { force: true }), (e) => hasCode(e, "ENOTDIR"));
    });
  });

  it("refuses keys that take the form of the store's scratch layers", async () => {
    await withStore(async (store) => {
      await assert.rejects(store.prepare("\u0000tx:1:x"), (e) => hasCode(e, "EINVAL"));
      assert.deepEqual(await names(store), []);
    });
  });

  it("an active layer labelled as scratch (an import cut short by a crash) is gone at the next open; the label never reaches a committed layer", async () => {
    const dir = await tmpDir("thinstack-storemethods-");
    try {
      const store = await ImageStore.open(dir, { create: true, dataSize: 64 * MiB, baseSize: 16 * MiB });
      await store.prepare("import-1", undefined, { labels: { [SCRATCH_LABEL]: "true" } });
      await store.fs("import-1").writeFile("/x", "x");
      await store.prepare("import-2", undefined, { labels: { [SCRATCH_LABEL]: "true", keep: "yes" } });
      await store.commit("done", "import-2");
      assert.deepEqual((await store.stat("done")).labels, { keep: "yes" });
      await store.close();
      const again = await ImageStore.open(dir);
      try {
        assert.deepEqual((await again.list()).map((l) => l.name), ["done"]);
        assert.equal(again.pool.status().dataBlocks.used, 0);
      } finally {
        await again.close();
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe("store.diff", () => {
  it("lists the layer's own changes exactly as walking it beside its parent does", async () => {
    await withStore(async (store) => {
      await base(store);
      await store.prepare("ctr", "base");
      const fs = store.fs("ctr");
      await fs.writeFile("/etc/new", "n");                         // added
      await fs.chmod("/etc/passwd", 0o600);                       // metadata of a lower file
      const h = await fs.open("/bin/sh", "r+");                   // data of a lower file, in place
      await h.write(new Uint8Array(10).fill(1), 0, 10, 70_000);
      await h.close();
      await fs.link("/var/cache/a", "/var/a-link");               // a new link to a lower inode
      await fs.rm("/var/cache/b");                                // deleted
      await fs.rm("/usr", { recursive: true });                   // a deleted directory
      await fs.rm("/etc/hosts");
      await fs.mkdir("/usr");                                     // a directory replaced
      await fs.writeFile("/usr/x", "x");
      await fs.symlink("/etc/new", "/etc/hosts");                 // a file replaced by a symlink
      await store.commit("top", "ctr");

      const native = await collect(store.diff("top"));
      const walked = await collect(changeset({
        ...fsTarget(store.fs("top")),
        changes: () => walkChanges(fsTarget(store.fs("base")), fsTarget(store.fs("top"))),
      }));
      assert.deepEqual(Buffer.from(native).equals(Buffer.from(walked)), true, "native and walked changesets are the same bytes");
      assert.ok(native.byteLength > 0);
      // Deterministic: the same layer gives the same bytes.
      assert.ok(Buffer.from(await collect(store.diff("top"))).equals(Buffer.from(native)));
      // Applied to the parent, the diff rebuilds the layer.
      await store.prepare("rebuilt-x", "base");
      await store.apply("rebuilt-x", native);
      assert.deepEqual(
        await describeView(fsTarget(store.fs("rebuilt-x"))),
        await describeView(fsTarget(store.fs("top"))),
      );
    });
  });
});

describe("images in the store", () => {
  it("import, list, survive a reopen, export and re-import to the same layers", async () => {
    await withStore(async (store, dir) => {
      await base(store);
      await store.prepare("ctr", "base");
      await store.fs("ctr").writeFile("/etc/motd", "welcome\n");
      await store.commit("app", "ctr");
      // Make an image of the two layers through a first export: write the OCI layout by hand.
      const out = path.join(dir, "..", path.basename(dir) + "-oci");
      const { writeOciLayout } = await import("../../src/interchange/ociwrite.ts");
      await writeOciLayout(out, {
        name: "demo:1",
        config: { architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: [] } },
        layers: [() => store.diff("base"), () => store.diff("app")],
      });
      try {
        let progressed = 0;
        const imported = await store.importImage(out, { name: "demo", onProgress: (done) => (progressed = done) });
        assert.equal(imported.name, "demo");
        assert.equal(imported.layers.length, 2);
        assert.ok(progressed > 0, "progress was reported");
        assert.deepEqual((await store.images()).map((i) => i.name), ["demo"]);
        assert.equal((await store.image("demo")).top, imported.layers[1]);
        await assert.rejects(store.image("nope"), (e) => hasCode(e, "ENOENT"));
        assert.equal(await store.fs(imported.layers[1]).readFile("/etc/motd", "utf8"), "welcome\n");
        // A second import of the same image adds no layers.
        const before = (await store.list()).length;
        await store.importImage(out, { name: "demo2" });
        assert.equal((await store.list()).length, before);

        await store.close();
        const again = await ImageStore.open(dir);
        try {
          assert.deepEqual((await again.images()).map((i) => i.name), ["demo", "demo2"]);
          const docker = `${out}.tar`;
          await again.exportImage("demo", docker, { format: "docker" });
          const other = await tmpDir("thinstack-storemethods-b-");
          const second = await ImageStore.open(other, { create: true, dataSize: 256 * MiB, baseSize: 64 * MiB });
          try {
            const back = await second.importImage(docker);
            assert.deepEqual(back.layers, imported.layers, "ChainIDs survive export and re-import");
            const rootfs = path.join(other, "rootfs");
            await second.checkout(back.layers[1], rootfs);
            assert.equal(await fsp.readFile(path.join(rootfs, "etc/motd"), "utf8"), "welcome\n");
          } finally {
            await second.close();
            await fsp.rm(other, { recursive: true, force: true });
            await fsp.rm(docker, { force: true });
          }
          await again.removeImage("demo2");
          await assert.rejects(again.removeImage("demo2"), (e) => hasCode(e, "ENOENT"));
          assert.deepEqual((await again.images()).map((i) => i.name), ["demo"]);
        } finally {
          await again.close();
        }
      } finally {
        await fsp.rm(out, { recursive: true, force: true });
      }
    });
  });
});

describe("interrupted transactions", () => {
  it("reopen with the layer as it was before, the scratch layer and its device gone", async () => {
    const dir = await tmpDir("thinstack-txcrash-");
    try {
      const child = spawnScript(new URL("./tx-crash-child.ts", import.meta.url).pathname, [dir]);
      let stdout = "";
      child.stdout!.on("data", (d) => (stdout += d));
      const code = await new Promise<number | null>((r) => child.on("exit", (c, sig) => r(sig ? -1 : c)));
      assert.equal(code, -1, `the child was to be killed mid-transaction; it printed: ${stdout}`);
      assert.match(stdout, /in transaction/);
      const store = await ImageStore.open(dir);
      try {
        assert.deepEqual(await names(store), ["ctr"]);
        assert.equal(await store.fs("ctr").readFile("/before", "utf8"), "kept");
        await assert.rejects(store.fs("ctr").stat("/during"), (e) => hasCode(e, "ENOENT"));
        assert.equal(store.pool.devices().length, 2, "the base device and ctr's; the scratch device is gone");
        assert.deepEqual(await store.check(), []);
      } finally {
        await store.close();
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
