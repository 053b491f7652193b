/**
 * containerd's snapshotter suite (test/layers/snapshotter-suite.ts) over gRPC: a fresh
 * `thinstack serve` per scenario, reached through thinstack's Snapshots client, with
 * layers' files reached as containerd reaches them: through the bind mount that Prepare,
 * View or Mounts returns (made here by the test process, unmounted before Commit and
 * Remove; see mountfs.ts). Without root or /dev/fuse the scenarios that change files are
 * skipped, saying why.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { SnapshotsClient } from "../../src/daemon/client.ts";
import type { MountMessage } from "../../src/daemon/definition.ts";
import { clearDeadMounts, fuseUnsupported, mountSource } from "../../src/mount/mod.ts";
import { snapshotterSuite } from "../layers/snapshotter-suite.ts";
import { startServe } from "./helpers.ts";
import { bindOf, LayerBinds } from "./mountfs.ts";

const noFuse = fuseUnsupported();

snapshotterSuite("containerd over gRPC", async (root) => {
  // serve makes the store (default sizes, sparse) and mounts its layers over FUSE.
  const store = path.join(root, "store");
  const serve = await startServe(store, path.join(root, "thinstack.sock"), { cli: true });
  const client = new SnapshotsClient(serve.socket, { mounts: !noFuse });
  const returned = new Map<string, MountMessage[]>();
  const bindDir = path.join(root, "binds");
  await fs.mkdir(bindDir, { recursive: true });
  const binds = noFuse ? undefined : new LayerBinds(bindDir, async (key) => {
    // What Mounts answers must be what Prepare or View returned.
    const now = await client.mounts(key);
    const first = returned.get(key);
    if (first && JSON.stringify(bindOf(key, first)) !== JSON.stringify(bindOf(key, now))) {
      throw new Error(`${key}: Mounts ${JSON.stringify(now)} differs from what Prepare/View returned: ${JSON.stringify(first)}`);
    }
    return now;
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      await binds?.close();
    } finally {
      client.close();
    }
  };
  return {
    snapshotter: {
      prepare: async (key, parent, o) => {
        const m = await client.prepare(key, parent, o);
        returned.set(key, m);
        return m;
      },
      view: async (key, parent, o) => {
        const m = await client.view(key, parent, o);
        returned.set(key, m);
        return m;
      },
      commit: async (name, key, o) => {
        await binds?.unmount(key);
        return await client.commit(name, key, o);
      },
      remove: async (key) => {
        await binds?.unmount(key);
        returned.delete(key);
        await client.remove(key);
      },
      stat: (key) => client.stat(key),
      update: (info, ...paths) => client.update(info, ...paths),
      walk: (fn, ...filters) => client.walk(fn, ...filters),
      close,
      ...(binds ? { fs: (key: string) => binds.fs(key) } : {}),
    },
    cleanup: async () => {
      try {
        await close();
      } finally {
        const code = await serve.stop();
        // A serve that died leaves its FUSE mount dead under the scratch root: clear it.
        if (code !== 0) await clearDeadMounts(mountSource(store));
        if (code !== 0) throw new Error(`thinstack serve exited with ${code}: ${serve.stderr()}`);
      }
    },
  };
}, {
  files: noFuse ? `changes files through the layers' mounts, which need root and /dev/fuse: ${noFuse}` : true,
});
