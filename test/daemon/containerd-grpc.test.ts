/**
 * containerd's snapshotter suite (test/layers/snapshotter-suite.ts) over gRPC: a fresh
 * `thinstack serve` per scenario, reached through thinstack's Snapshots client. Over gRPC
 * a layer's files are reached only through its mount, so the scenarios that change files
 * are skipped here: containerd's Go suite (conformance.test.ts) mounts them and runs them.
 */
import path from "node:path";
import { SnapshotsClient } from "../../src/daemon/client.ts";
import { snapshotterSuite } from "../layers/snapshotter-suite.ts";
import { startServe } from "./helpers.ts";

snapshotterSuite("containerd over gRPC", async (root) => {
  // serve makes the store (default sizes, sparse).
  const store = path.join(root, "store");
  const serve = await startServe(store, path.join(root, "thinstack.sock"), { cli: true });
  const client = new SnapshotsClient(serve.socket);
  let closed = false;
  return {
    snapshotter: {
      prepare: (key, parent, o) => client.prepare(key, parent, o),
      view: (key, parent, o) => client.view(key, parent, o),
      commit: (name, key, o) => client.commit(name, key, o),
      remove: (key) => client.remove(key),
      stat: (key) => client.stat(key),
      update: (info, ...paths) => client.update(info, ...paths),
      walk: (fn, ...filters) => client.walk(fn, ...filters),
      close: () => {
        if (!closed) client.close();
        closed = true;
        return Promise.resolve();
      },
    },
    cleanup: async () => {
      if (!closed) client.close();
      closed = true;
      const code = await serve.stop();
      if (code !== 0) throw new Error(`thinstack serve exited with ${code}: ${serve.stderr()}`);
    },
  };
}, { files: false });
