/**
 * Child of the crash test: works in layer "work" of the store in argv[2], from step
 * argv[3] on, announcing each durable point on stdout, until it is killed.
 */
import { LayerStore } from "../../src/layers/mod.ts";
import { commitsLayer, step } from "./crash-steps.ts";

const [dir, from] = process.argv.slice(2);
const store = await LayerStore.open(dir);
if (!(await store.list()).some((l) => l.name === "work")) {
  const images = (await store.list()).filter((l) => l.kind === "committed").map((l) => l.name);
  await store.prepare("work", images.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4))).pop());
}
process.stdout.write("ready\n");
for (let i = Number(from); ; i++) {
  await step(store.fs("work"), i);
  if (commitsLayer(i)) {
    await store.commit(`img-${i}`, "work");
    await store.prepare("work", `img-${i}`);
  } else {
    await store.sync();
  }
  process.stdout.write(`durable ${i}\n`);
}
