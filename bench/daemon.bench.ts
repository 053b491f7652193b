/**
 * The daemon's gRPC overhead: containerd's Snapshots calls through `thinstack serve`'s
 * server (in this process, over its unix socket, thinstack's client) against the same
 * calls on the store directly. Server and client run under the same runtime, so the Deno
 * column is Deno's node:http2 serving.
 *
 * (Issue 12's container benchmarks, `ctr run` and `ctr images pull` against overlayfs,
 * are bench/containerd.bench.ts.)
 *
 *   node --import tsx bench/daemon.bench.ts        deno run -A bench/daemon.bench.ts
 */
import path from "node:path";
import { LayerStore } from "../src/layers/mod.ts";
import { SnapshotsClient } from "../src/daemon/client.ts";
import { SocketServer } from "../src/daemon/server.ts";
import { SnapshotService } from "../src/daemon/service.ts";
import { emit, finish, median, note, progress, quick, withScratchDir } from "./lib.ts";

const B = "daemon";
const CALLS = quick ? 200 : 5000;
const CYCLES = quick ? 20 : 200;

async function perCall(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  for (let round = 0; round < 5; round++) {
    const t = performance.now();
    for (let i = 0; i < n / 5; i++) await fn(round * n + i);
    samples.push((performance.now() - t) / (n / 5));
  }
  return median(samples);
}

await withScratchDir(B, "grpc", async (dir) => {
  const store = await LayerStore.open(path.join(dir, "store"), { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
  const server = await SocketServer.listen(path.join(dir, "s.sock"), new SnapshotService({ store, info: () => [] }));
  const client = new SnapshotsClient(server.address);
  try {
    await store.prepare("a");
    await store.commit("base", "a");
    await client.stat("base"); // connected
    progress("stat");
    const direct = await perCall(CALLS, () => store.stat("base"));
    const remote = await perCall(CALLS, () => client.stat("base"));
    emit({ bench: B, name: "Stat of a layer, one call at a time", value: remote * 1000, unit: "µs", baseline: direct * 1000, baselineLabel: "store.stat", ratio: remote / direct });
    progress("prepare + commit");
    const directCycle = await perCall(CYCLES, async (i) => {
      await store.prepare(`d-${i}`, "base");
      await store.commit(`dc-${i}`, `d-${i}`);
    });
    const remoteCycle = await perCall(CYCLES, async (i) => {
      await client.prepare(`r-${i}`, "base");
      await client.commit(`rc-${i}`, `r-${i}`);
    });
    emit({ bench: B, name: "Prepare + Commit (each commits the store)", value: remoteCycle, unit: "ms", baseline: directCycle, baselineLabel: "store calls", ratio: remoteCycle / directCycle });
    progress("list");
    const listed = await perCall(quick ? 20 : 100, () => client.list());
    const n = (await store.list()).length;
    emit({ bench: B, name: "List of every layer (streamed, batches of 100)", value: listed, unit: "ms", baseline: await perCall(quick ? 20 : 100, () => store.list()), baselineLabel: "store.list", detail: `${n} layers` });
    note(B, "In-process server and client on a unix socket; medians of 5 rounds; the gRPC side asks for no mounts (the CLI's calls).");
  } finally {
    client.close();
    await server.close(1000);
    await store.close();
  }
});
finish("daemon");
