/** Store-wide commands: init, info, status, resize, check, repair, dump, restore, trim. @module */
import fs from "node:fs/promises";
import type { Command } from "commander";
import { formatBytes, GiB, KiB } from "../../common/units.ts";
import { checkPool, repairPool } from "../../pool/check.ts";
import { dumpPool, restorePool } from "../../pool/dump.ts";
import { LayerStore } from "../../layers/mod.ts";
import { Pool } from "../../pool/pool.ts";
import { storeError } from "../../common/errors.ts";
import { percentArg, sizeArg } from "../args.ts";
import { out, rootOf, withStore } from "../context.ts";
import { infoFields, statusLine } from "../info.ts";
import { fields, json } from "../output.ts";

export function storeCommands(cmd: Command): void {
  cmd.command("init")
    .description("create a store: a thin pool over a sparse data file, and its base device")
    .option("--data-size <size>", "data file size (dm.loopdatasize)", sizeArg, 100 * GiB)
    .option("--metadata-size <size>", "metadata space (dm.loopmetadatasize)", sizeArg, 2 * GiB)
    .option("--block-size <size>", "pool block size, a multiple of 64K up to 1G (dm.blocksize)", sizeArg, 64 * KiB)
    .option("--base-size <size>", "size of the base device every layer snapshots (dm.basesize)", sizeArg, 10 * GiB)
    .option("--min-free-space <pct>", "free data space below which new layers fail (dm.min_free_space)", percentArg, 10)
    .option("--autoextend-threshold <pct>", "data use past which the pool grows; 100 disables", percentArg, 80)
    .option("--autoextend-percent <pct>", "how much the pool grows each time", percentArg, 20)
    .action(async (o, c: Command) => {
      const root = rootOf(c);
      if (await Pool.open(root).then((p) => p.close().then(() => true), () => false)) {
        throw storeError("EEXIST", "init", root, "a store already exists here; use it, or pick another --root");
      }
      const store = await LayerStore.open(root, {
        create: true, dataSize: o.dataSize, metadataSize: o.metadataSize, blockSize: o.blockSize, baseSize: o.baseSize,
        settings: { minFreeSpacePercent: o.minFreeSpace, autoextendThreshold: o.autoextendThreshold, autoextendPercent: o.autoextendPercent },
      });
      const s = store.pool.status();
      await store.close();
      out(`Created a store in ${root}: data ${formatBytes(s.dataBlocks.total * s.blockSize)}, blocks ${formatBytes(s.blockSize)}, base device ${formatBytes(store.baseSize)}\n`);
    });

  cmd.command("info")
    .description("the devicemapper fields of `docker info`")
    .option("--json", "print JSON")
    .action((o, c: Command) =>
      withStore(c, async (store, root) => {
        const f = infoFields(store.pool, root, store.baseSize);
        out(o.json ? json(Object.fromEntries(f)) : `Storage Driver: thinstack\n${fields(f)}`);
      }));

  cmd.command("status")
    .description("the dm-thin pool status line: transaction, metadata and data use, mode")
    .option("--json", "print JSON")
    .action((o, c: Command) =>
      withStore(c, async (store, root) => {
        const report = await checkPool(root);
        out(o.json ? json({ ...store.pool.status(), needsCheck: report.faults.length > 0 }) : statusLine(store.pool, report.faults.length > 0) + "\n");
      }));

  cmd.command("resize")
    .description("grow (or shrink, down to what is used) the data file")
    .requiredOption("--data-size <size>", "the new data file size", sizeArg)
    .action((o, c: Command) =>
      withStore(c, async (store) => {
        await store.pool.resize(o.dataSize);
        await store.pool.commit();
        out(`Data space is now ${formatBytes(store.pool.status().dataBlocks.total * store.pool.blockSize)}\n`);
      }));

  cmd.command("check")
    .description("verify the metadata (thin_check); exits 1 on any fault")
    .action(async (_o, c: Command) => {
      const root = rootOf(c);
      const report = await checkPool(root);
      const faults = [...report.faults];
      if (faults.length === 0) {
        const layerFaults = await withStore(c, (store) => store.check());
        faults.push(...layerFaults);
      }
      for (const n of report.notes) out(`note: ${n}\n`);
      for (const f of faults) out(`fault: ${f}\n`);
      out(`${report.devices} devices, ${report.mappedBlocks} mapped blocks, ${report.usedBlocks} blocks in use: ${faults.length ? `${faults.length} fault(s)` : "no faults"}\n`);
      if (faults.length) process.exitCode = 1;
    });

  cmd.command("repair")
    .description("rebuild what can be derived, drop what cannot, and report each change (thin_repair)")
    .action(async (_o, c: Command) => {
      const root = rootOf(c);
      const changes = await repairPool(root);
      changes.push(...await withStore(c, (store) => store.repair()));
      for (const line of changes) out(`${line}\n`);
      out(changes.length ? `${changes.length} change(s)\n` : "nothing to repair\n");
    });

  cmd.command("dump")
    .description("write all metadata as text (thin_dump); restore reads it back")
    .option("-o, --output <file>", "write to a file instead of stdout")
    .action(async (o, c: Command) => {
      const text = await dumpPool(rootOf(c));
      if (o.output) await fs.writeFile(o.output, text);
      else out(text);
    });

  cmd.command("restore")
    .description("replace the metadata with a dump (thin_restore)")
    .argument("<file>", "a dump, or - for stdin")
    .action(async (file: string, _o, c: Command) => {
      const text = file === "-" ? await readStdin() : await fs.readFile(file, "utf8");
      await restorePool(rootOf(c), text);
      out(`Restored the metadata of ${rootOf(c)}\n`);
    });

  cmd.command("trim")
    .description("give free blocks back to the host by punching holes in the data file")
    .action((_o, c: Command) =>
      withStore(c, async (store) => {
        await store.pool.commit(); // blocks freed in the open transaction become trimmable
        const r = await store.pool.trim();
        out(`Trimmed ${r.blocks} free blocks (${formatBytes(r.blocks * store.pool.blockSize)}) in ${r.ranges} ranges${r.method === "none" ? "" : ` with ${r.method}`}\n`);
      }));
}

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array);
  return Buffer.concat(chunks).toString("utf8");
}
