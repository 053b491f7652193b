/**
 * containerd's Snapshots service as containerd sees it: status codes of each failure (as
 * errdefs maps them and snapshots/storage classifies them), labels, times, List batches,
 * Usage, mounts through a mounter (the test-only scratch mounter stands in for the FUSE
 * mount), and a graceful stop.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { CODE_METADATA } from "../../src/daemon/errors.ts";
import type { LayerStore } from "../../src/layers/mod.ts";
import { scratchMounter } from "./scratch-mounter.ts";
import { type Answer, startService, type TestService } from "./helpers.ts";

const NONE = { "thinstack-mounts": "none" };

function code(a: Answer): grpc.status | "OK" {
  return a.ok ? "OK" : a.code;
}

async function withService(fn: (s: TestService) => Promise<void>, options: Parameters<typeof startService>[0] = {}): Promise<void> {
  const s = await startService(options);
  try {
    await fn(s);
  } finally {
    await s.cleanup();
  }
}

test("daemon: failures carry containerd's status codes and the store's message", () =>
  withService(async ({ raw }) => {
    const missing = await raw.call("Stat", { key: "default/1/nope" });
    assert.equal(code(missing), grpc.status.NOT_FOUND);
    assert.ok(!missing.ok && missing.details.includes("'default/1/nope'"), "the message names the key");
    assert.ok(!missing.ok && missing.metadata.get(CODE_METADATA)[0] === "ENOENT");

    assert.equal(code(await raw.call("Prepare", { key: "default/1/a" }, NONE)), "OK");
    assert.equal(code(await raw.call("Prepare", { key: "default/1/a" }, NONE)), grpc.status.ALREADY_EXISTS);
    assert.equal(code(await raw.call("View", { key: "default/1/a" }, NONE)), grpc.status.ALREADY_EXISTS);
    // A parent that is not committed: containerd's ErrInvalidArgument; a missing one: ErrNotFound.
    assert.equal(code(await raw.call("Prepare", { key: "default/2/b", parent: "default/1/a" }, NONE)), grpc.status.INVALID_ARGUMENT);
    assert.equal(code(await raw.call("Prepare", { key: "default/2/b", parent: "default/9/none" }, NONE)), grpc.status.NOT_FOUND);

    assert.equal(code(await raw.call("Commit", { name: "default/3/base", key: "default/1/a" })), "OK");
    assert.equal(code(await raw.call("Stat", { key: "default/1/a" })), grpc.status.NOT_FOUND, "the key is gone after Commit");
    assert.equal(code(await raw.call("View", { key: "default/4/v", parent: "default/3/base" }, NONE)), "OK");
    // Commit of a view: "snapshot is not active", ErrFailedPrecondition (the store says EINVAL).
    const cv = await raw.call("Commit", { name: "default/5/x", key: "default/4/v" });
    assert.equal(code(cv), grpc.status.FAILED_PRECONDITION);
    assert.ok(!cv.ok && cv.metadata.get(CODE_METADATA)[0] === "EINVAL");
    // Remove with children: "cannot remove snapshot with child", ErrFailedPrecondition.
    assert.equal(code(await raw.call("Remove", { key: "default/3/base" })), grpc.status.FAILED_PRECONDITION);
    assert.equal(code(await raw.call("Remove", { key: "default/9/none" })), grpc.status.NOT_FOUND);
    // Mounts of a committed snapshot: "not active or view", ErrFailedPrecondition.
    assert.equal(code(await raw.call("Mounts", { key: "default/3/base" })), grpc.status.FAILED_PRECONDITION);
    // An immutable field in Update: ErrInvalidArgument (the suite checks errdefs.IsInvalidArgument).
    const up = await raw.call("Update", { info: { name: "default/3/base", kind: "COMMITTED", labels: {} }, update_mask: { paths: ["parent"] } });
    assert.equal(code(up), grpc.status.INVALID_ARGUMENT);
    assert.equal(code(await raw.call("Usage", { key: "default/9/none" })), grpc.status.NOT_FOUND);
  }));

test("daemon: with no mounter, containerd's Prepare and View are refused before anything is made; the CLI's are not", () =>
  withService(async ({ raw, store }) => {
    const p = await raw.call("Prepare", { key: "default/1/extract" });
    assert.equal(code(p), grpc.status.UNIMPLEMENTED);
    assert.ok(!p.ok && /mounter/.test(p.details));
    assert.deepEqual(await store.list(), [], "nothing half-made");
    assert.equal(code(await raw.call("View", { key: "default/1/v" })), grpc.status.UNIMPLEMENTED);
    const cli = await raw.call("Prepare", { key: "default/1/extract" }, NONE);
    assert.ok(cli.ok);
    assert.deepEqual(cli.value.mounts, []);
    assert.equal(code(await raw.call("Mounts", { key: "default/1/extract" })), grpc.status.UNIMPLEMENTED);
  }));

test("daemon: Prepare, View and Mounts return a bind mount of the mounter's directory; Commit and Remove release it", async () => {
  const scratch = await fs.mkdtemp(path.join((await import("node:os")).tmpdir(), "scratch-"));
  const mounter = scratchMounter(scratch);
  try {
    await withService(async ({ raw, store }) => {
      const p = await raw.call("Prepare", { key: "default/1/extract-1 sha256:abc", labels: { "containerd.io/snapshot.ref": "sha256:abc" } });
      assert.ok(p.ok);
      const [m] = p.value.mounts as { type: string; source: string; options: string[] }[];
      assert.equal(m.type, "bind");
      assert.deepEqual(m.options, ["rbind", "rw"]);
      assert.ok(m.source.startsWith(scratch));
      const again = await raw.call("Mounts", { key: "default/1/extract-1 sha256:abc" });
      assert.ok(again.ok);
      assert.deepEqual(again.value.mounts, p.value.mounts, "the same directory every time");
      assert.deepEqual(mounter.served(), ["default/1/extract-1 sha256:abc"]);

      assert.equal(code(await raw.call("Commit", { name: "default/2/sha256:abc", key: "default/1/extract-1 sha256:abc", labels: { "containerd.io/snapshot.ref": "sha256:abc" } })), "OK");
      assert.deepEqual(mounter.served(), [], "released before the commit");
      assert.deepEqual(mounter.log.released, ["default/1/extract-1 sha256:abc"]);

      const v = await raw.call("View", { key: "default/3/view", parent: "default/2/sha256:abc" });
      assert.ok(v.ok);
      assert.deepEqual((v.value.mounts as { options: string[] }[])[0].options, ["rbind", "ro"]);
      assert.equal(code(await raw.call("Remove", { key: "default/3/view" })), "OK");
      assert.deepEqual(mounter.served(), []);

      // Cleanup: a served layer that is gone (removed behind the service's back) stops being served.
      await raw.call("Prepare", { key: "default/4/ctr", parent: "default/2/sha256:abc" });
      assert.deepEqual(mounter.served(), ["default/4/ctr"]);
      await store.remove("default/4/ctr");
      assert.equal(code(await raw.call("Cleanup", {})), "OK");
      assert.deepEqual(mounter.served(), []);
    }, { mounter });
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
});

test("daemon: a mount that cannot be served undoes the Prepare", async () => {
  const mounter = scratchMounter("/nonexistent");
  mounter.ensure = () => Promise.reject(Object.assign(new Error("EIO: cannot serve"), { code: "EIO" }));
  await withService(async ({ raw, store }) => {
    const p = await raw.call("Prepare", { key: "default/1/a" });
    assert.equal(code(p), grpc.status.UNKNOWN);
    assert.deepEqual(await store.list(), [], "containerd can retry the whole Prepare");
  }, { mounter });
});

test("daemon: labels pass through; Commit replaces them with the request's; Update by field paths", () =>
  withService(async ({ raw }) => {
    const labels = { "containerd.io/snapshot.ref": "sha256:1", "containerd.io/gc.root": "2026-01-01T00:00:00Z", "containerd.io/gc.ref.snapshot.thinstack/0": "x" };
    await raw.call("Prepare", { key: "default/1/a", labels }, NONE);
    const st = await raw.call("Stat", { key: "default/1/a" });
    assert.ok(st.ok);
    assert.deepEqual((st.value.info as { labels: unknown }).labels, labels);
    assert.equal((st.value.info as { kind: string }).kind, "ACTIVE");

    await raw.call("Commit", { name: "default/2/c", key: "default/1/a", labels: { "containerd.io/snapshot.ref": "sha256:1" } });
    const c = await raw.call("Stat", { key: "default/2/c" });
    assert.ok(c.ok);
    assert.deepEqual((c.value.info as { labels: unknown }).labels, { "containerd.io/snapshot.ref": "sha256:1" }, "replaced, not inherited");
    assert.equal((c.value.info as { kind: string }).kind, "COMMITTED");

    const u = await raw.call("Update", {
      info: { name: "default/2/c", kind: "COMMITTED", labels: { "containerd.io/gc.root": "now", other: "dropped" } },
      update_mask: { paths: ["labels.containerd.io/gc.root"] },
    });
    assert.ok(u.ok);
    assert.deepEqual((u.value.info as { labels: unknown }).labels, { "containerd.io/snapshot.ref": "sha256:1", "containerd.io/gc.root": "now" });
    const all = await raw.call("Update", { info: { name: "default/2/c", kind: "COMMITTED", labels: { only: "this" } }, update_mask: null });
    assert.ok(all.ok);
    assert.deepEqual((all.value.info as { labels: unknown }).labels, { only: "this" }, "no mask: the labels are replaced");
  }));

test("daemon: times are reported inside the call that set them (nanoseconds) and read back as the store's", () =>
  withService(async ({ raw, client, store }) => {
    const ns = () => BigInt(Date.now()) * 1_000_000n;
    const before = ns();
    const p = await raw.call("Prepare", { key: "k" }, NONE);
    assert.ok(p.ok);
    const after = ns() + 999_999n; // Date.now() is the start of its millisecond
    const st = await raw.call("Stat", { key: "k" });
    assert.ok(st.ok);
    const info = st.value.info as { created_at: { seconds: number; nanos: number }; updated_at: unknown };
    const created = BigInt(info.created_at.seconds) * 1_000_000_000n + BigInt(info.created_at.nanos);
    assert.ok(created >= before && created <= after, `${created} within [${before}, ${after}]`);
    assert.deepEqual(info.updated_at, info.created_at);
    assert.deepEqual(await client.stat("k"), await store.stat("k"), "thinstack's client gives the store's LayerInfo back");
  }));

test("daemon: List streams every layer in batches of 100 and applies containerd's filters", () =>
  withService(async ({ raw, client, store }) => {
    for (let i = 0; i < 230; i++) await store.prepare(`default/${i}/k`, undefined, { labels: i % 2 ? { odd: "1" } : {} });
    const all = await raw.list();
    assert.equal(all.error, undefined);
    assert.deepEqual(all.messages.map((m) => m.info.length), [100, 100, 30]);
    const odd = await raw.list(["labels.odd==1"]);
    assert.equal(odd.messages.flatMap((m) => m.info).length, 115);
    const names: string[] = [];
    await client.walk((i) => void names.push(i.name), "kind==active,labels.odd");
    assert.equal(names.length, 115);
    const bad = await raw.list(['labels."unterminated']);
    assert.equal(bad.error?.code, grpc.status.INVALID_ARGUMENT);
  }));

test("daemon: Usage is the layer's own size and inodes; Control gives info and block usage", () =>
  withService(async ({ raw, client, store }) => {
    await store.prepare("a");
    await store.fs("a").writeFile("/big", new Uint8Array(200_000).fill(7));
    await store.fs("a").writeFile("/small", "x");
    await store.commit("base", "a");
    await store.prepare("ctr", "base");
    await store.fs("ctr").writeFile("/new", new Uint8Array(70_000).fill(1));
    for (const key of ["base", "ctr"]) {
      const u = await raw.call("Usage", { key });
      assert.ok(u.ok);
      assert.deepEqual({ size: u.value.size, inodes: u.value.inodes }, await store.usage(key));
      assert.deepEqual(await client.usage(key), await store.usage(key));
      assert.deepEqual(await client.blockUsage(key), store.blockUsage(key));
    }
    assert.ok((await store.usage("ctr")).size >= 70_000);
    assert.deepEqual(await client.info(), [["Pool Name", "test"]]);
  }));

test("daemon: a stop lets the call in flight finish and refuses new ones", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  const wrap = (s: LayerStore) => Object.assign(Object.create(s), {
    pool: s.pool,
    prepare: async (key: string, parent?: string, o?: object) => {
      entered();
      await gate;
      return await s.prepare(key, parent, o);
    },
    stat: (key: string) => s.stat(key),
  }) as LayerStore;
  const svc = await startService({ wrap });
  try {
    const call = svc.client.prepare("slow");
    await inside;
    const stopping = svc.server.close(10_000);
    await new Promise((r) => setTimeout(r, 100));
    release();
    await call; // finished, not cut
    await stopping;
    assert.equal((await svc.store.stat("slow")).kind, "active");
    await assert.rejects(svc.client.stat("slow"), { code: "ECONNREFUSED" });
    await assert.rejects(fs.stat(svc.socket), { code: "ENOENT" }, "the socket file is gone");
  } finally {
    await svc.cleanup();
  }
});
