/**
 * What a commit's root switch costs now (src/pool/metastore.ts switchRoot: the new root
 * written and fdatasynced, the directory fsynced before the rename so the new files'
 * names land first, the replaced root linked as pool.prev.cbor, the rename, the directory
 * fsynced) against the switch as it was before the durability work (the same without
 * the first directory fsync and the link): median per switch, the two alternating, each
 * after one new 300-byte metadata file written and fdatasynced as a commit's would be.
 *
 *   node --import tsx bench/rootswitch.bench.ts      deno run -A bench/rootswitch.bench.ts
 */
import fs from "node:fs/promises";
import path from "node:path";
import { MetaStore } from "../src/pool/metastore.ts";
import { emit, finish, median, note, progress, quick, runtime, withScratchDir } from "./lib.ts";

const B = "rootswitch";
const ROUNDS = quick ? 20 : 300;
const record = { format: "bench", transactionId: 0, files: new Array(40).fill("nodes.123.4.cbor") };

async function before(dir: string): Promise<void> {
  const tmp = path.join(dir, "pool.cbor.tmp");
  const fh = await fs.open(tmp, "w");
  await fh.writeFile(new Uint8Array(300));
  await fh.datasync();
  await fh.close();
  await fs.rename(tmp, path.join(dir, "pool.cbor"));
  const d = await fs.open(dir, "r");
  await d.sync();
  await d.close();
}

progress(`root switch benchmark under ${runtime}`);
await withScratchDir(B, "switch", async (base) => {
  const nowDir = path.join(base, "now");
  const oldDir = path.join(base, "before");
  await fs.mkdir(nowDir);
  await fs.mkdir(oldDir);
  const meta = new MetaStore(nowDir);
  await meta.switchRoot(record);
  await before(oldDir);
  const now: number[] = [];
  const old: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const side of i % 2 ? ["now", "before"] : ["before", "now"]) {
      const t = performance.now();
      if (side === "now") {
        await meta.write("nodes", i, { i });
        await meta.switchRoot({ ...record, transactionId: i });
        now.push(performance.now() - t);
      } else {
        const fh = await fs.open(path.join(oldDir, `nodes.${i}.cbor`), "wx");
        await fh.writeFile(new Uint8Array(300));
        await fh.datasync();
        await fh.close();
        await before(oldDir);
        old.push(performance.now() - t);
      }
    }
  }
  emit({
    bench: B, name: "a commit's new file + root switch, now (dir fsync before the rename, previous root linked) vs before",
    value: median(now), unit: "ms", baseline: median(old), baselineLabel: "before", ratio: median(now) / median(old),
    detail: `median of ${ROUNDS} each, alternating`,
  });
});
note(B, "On the repository's disk (bench/out); both sides write one fdatasynced file, then switch.");
finish("Root switch");
