/**
 * containerd's snapshotter suite (snapshotter-suite.ts) against the layer store itself;
 * test/daemon/containerd-grpc.test.ts runs it over gRPC against `thinstack serve`.
 */
import { LayerStore } from "../../src/layers/mod.ts";
import { snapshotterSuite } from "./snapshotter-suite.ts";

snapshotterSuite("containerd", async (root) => {
  const store = await LayerStore.open(root, { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30 });
  return { snapshotter: store, cleanup: () => store.close() };
});
