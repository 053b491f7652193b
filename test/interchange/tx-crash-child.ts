// Child process of storemethods.test.ts: starts a transaction on a layer, makes the
// store commit while it runs (so the scratch layer is on disk), says so, and kills
// itself before the transaction ends.
import process from "node:process";
import { LayerStore } from "../../src/layers/mod.ts";

const [dir] = process.argv.slice(2);
const store = await LayerStore.open(dir, { create: true, dataSize: 64 * 2 ** 20, baseSize: 16 * 2 ** 20 });
await store.prepare("ctr");
await store.fs("ctr").writeFile("/before", "kept");
await store.sync();
await store.transaction("ctr", async (fs) => {
  await fs.writeFile("/during", new Uint8Array(200_000).fill(3));
  await store.sync(); // the scratch layer and its device are committed now
  console.log("in transaction");
  process.kill(process.pid, "SIGKILL");
  await new Promise(() => {});
});
