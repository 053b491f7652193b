/**
 * `thinstack serve` as a process: the CLI reaching it over its socket (and opening the
 * store when no daemon runs), SIGTERM, SIGKILL and a restart, the config fragment, one
 * daemon per store.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { SnapshotsClient } from "../../src/daemon/client.ts";
import { Daemon } from "../../src/daemon/daemon.ts";
import { RECORD_FILE } from "../../src/daemon/record.ts";
import { LayerStore } from "../../src/layers/mod.ts";
import { tempDir } from "../layers/helpers.ts";
import { scratchMounter } from "./scratch-mounter.ts";
import { thinstack } from "../cli/cli.ts";
import { runCli, startServe } from "./helpers.ts";

const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir("serve-");
  try {
    await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** A command of the CLI, in this process (see ../cli/cli.ts): a client of the daemon, which is a process of its own. */
async function cli(root: string, ...args: string[]): Promise<string> {
  const r = await thinstack(args, { root });
  assert.equal(r.code, 0, `thinstack ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

test("serve: the layer commands go through a running daemon, and open the store when none runs", () =>
  withDir(async (dir) => {
    const root = path.join(dir, "store");
    await cli(root, "init", "--data-size", "2G", "--base-size", "256M");
    const serve = await startServe(root, path.join(dir, "ts.sock"), { cli: true });
    let remote: Record<string, string>;
    try {
      assert.ok(await exists(path.join(root, RECORD_FILE)), "serve records where it listens");
      await cli(root, "prepare", "default/1/a");
      await cli(root, "commit", "base", "default/1/a");
      await cli(root, "prepare", "ctr", "base");
      await cli(root, "view", "v", "base");
      await cli(root, "prepare", "gone");
      assert.equal(await cli(root, "rm", "gone"), "gone\n");
      // The daemon holds the store: a command that needs it alone is refused, naming the daemon.
      const cat = await thinstack(["cat", "base:/x"], { root });
      assert.equal(cat.code, 1);
      assert.match(cat.stderr, /EBUSY.*'thinstack serve' \(process \d+, socket '.*ts\.sock'\) owns the store/);
      const failed = await thinstack(["prepare", "x", "nope"], { root });
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /^thinstack: ENOENT: no such file or directory, prepare 'nope': no such parent layer\n$/, "the store's own message");
      remote = {
        ls: await cli(root, "ls", "--json"),
        inspect: await cli(root, "inspect", "ctr"),
        usage: await cli(root, "usage", "--json"),
        info: await cli(root, "info", "--json"),
      };
    } finally {
      assert.equal(await serve.stop(), 0, serve.stderr());
    }
    assert.equal(await exists(path.join(root, RECORD_FILE)), false, "the record goes with the daemon");
    assert.equal(await exists(serve.socket), false, "and the socket");
    // Now the CLI opens the store itself, and sees what the daemon made.
    const local = {
      ls: await cli(root, "ls", "--json"),
      inspect: await cli(root, "inspect", "ctr"),
      usage: await cli(root, "usage", "--json"),
    };
    assert.deepEqual(local, { ls: remote.ls, inspect: remote.inspect, usage: remote.usage });
    assert.deepEqual(JSON.parse(remote.ls).map((l: { name: string; kind: string }) => `${l.name}:${l.kind}`).sort(), ["base:committed", "ctr:active", "v:view"]);
    const info = JSON.parse(remote.info);
    assert.equal(info["Data file"], path.join(root, "data"));
    assert.equal(info["Base Device Size"], "268.4 MB");
  }));

test("serve: after SIGKILL the CLI opens the store, and a restart serves every snapshot and the same mounts again", () =>
  withDir(async (dir) => {
    const root = path.join(dir, "store");
    const socket = path.join(dir, "ts.sock");
    const scratch = path.join(dir, "mounts");
    let serve = await startServe(root, socket, { scratchMounts: scratch });
    let client = new SnapshotsClient(socket, { mounts: true });
    let source: string;
    try {
      await client.prepare("default/1/extract-1", undefined, { labels: { "containerd.io/snapshot.ref": "sha256:l1" } });
      await client.commit("default/2/sha256:l1", "default/1/extract-1", { labels: { "containerd.io/snapshot.ref": "sha256:l1" } });
      await client.prepare("default/3/extract-2", "default/2/sha256:l1");
      await client.commit("default/4/sha256:l2", "default/3/extract-2");
      const [m] = await client.prepare("default/5/ctr", "default/4/sha256:l2");
      source = m.source;
      await client.view("default/6/view", "default/4/sha256:l2");
    } finally {
      client.close();
    }
    assert.notEqual(await serve.kill(), 0);
    assert.ok(await exists(path.join(root, RECORD_FILE)), "a killed daemon leaves its record");
    // Its process is gone: the record is ignored and the stale lock taken over.
    const ls = JSON.parse(await cli(root, "ls", "--json")) as { name: string; kind: string; labels: Record<string, string> }[];
    assert.deepEqual(ls.map((l) => `${l.name}:${l.kind}`).sort(), ["default/2/sha256:l1:committed", "default/4/sha256:l2:committed", "default/5/ctr:active", "default/6/view:view"]);
    assert.equal(ls.find((l) => l.name === "default/2/sha256:l1")!.labels["containerd.io/snapshot.ref"], "sha256:l1");

    serve = await startServe(root, socket, { scratchMounts: scratch });
    client = new SnapshotsClient(socket, { mounts: true });
    try {
      assert.equal((await client.stat("default/4/sha256:l2")).parent, "default/2/sha256:l1");
      const [again] = await client.mounts("default/5/ctr");
      assert.equal(again.source, source, "containerd's mount of the container layer is served at the same directory");
      await client.remove("default/5/ctr");
      await client.remove("default/6/view");
      await client.cleanup();
      assert.deepEqual((await client.list()).map((l) => l.name).sort(), ["default/2/sha256:l1", "default/4/sha256:l2"]);
    } finally {
      client.close();
      assert.equal(await serve.stop(), 0, serve.stderr());
    }
    assert.match(await cli(root, "check"), /no faults/);
  }));

test("serve: the mounter restores every active layer and view at start, and closes at stop", () =>
  withDir(async (dir) => {
    const root = path.join(dir, "store");
    const store = await LayerStore.open(root, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
    await store.prepare("a");
    await store.commit("c", "a");
    await store.prepare("ctr", "c");
    await store.view("v", "c");
    const mounter = scratchMounter(path.join(dir, "m"));
    const daemon = await Daemon.start({ store, root, address: path.join(dir, "s.sock"), mounter, info: () => [] });
    await daemon.stop();
    assert.deepEqual(mounter.log.restored, [[{ key: "ctr", kind: "active" }, { key: "v", kind: "view" }]]);
    assert.equal(mounter.log.closed, 1);
    await assert.rejects(store.stat("c"), { code: "EBADF" }, "the daemon closed the store");
  }));

test("serve: --print-config prints containerd's proxy plugin fragment; a second daemon on a store is refused", () =>
  withDir(async (dir) => {
    const cfg = await runCli(["serve", "--print-config", "--address", "/run/x/ts.sock"]);
    assert.equal(cfg.code, 0);
    assert.equal(cfg.stdout, `[proxy_plugins.thinstack]\n  type = "snapshot"\n  address = "/run/x/ts.sock"\n`);
    const root = path.join(dir, "new");
    // No store there: serve makes one with the default sizes.
    const first = await startServe(root, path.join(dir, "a.sock"), { cli: true });
    try {
      assert.match(first.stderr(), /created a store/);
      const second = await runCli(["--root", root, "serve", "--address", path.join(dir, "b.sock")]);
      assert.equal(second.code, 1);
      assert.match(second.stderr, /EBUSY.*'thinstack serve' \(process \d+/);
      // And another store cannot take the first one's socket.
      const other = await runCli(["--root", path.join(dir, "other"), "serve", "--address", path.join(dir, "a.sock")]);
      assert.equal(other.code, 1);
      assert.match(other.stderr, /EBUSY.*another server listens on this socket/);
    } finally {
      assert.equal(await first.stop(), 0, first.stderr());
    }
  }));
