/** Store-wide commands: init, info, status, resize, check, repair, dump, restore, trim. @module */
import fs from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import { storeError } from "../../common/errors.ts";
import { formatBytes, GiB, KiB } from "../../common/units.ts";
import { LayerStore } from "../../layers/mod.ts";
import { PAGE } from "../../layers/inode.ts";
import { checkPool, repairPool } from "../../pool/check.ts";
import { dumpPool, restorePool } from "../../pool/dump.ts";
import { DATA_FILE, METADATA_DIR } from "../../pool/pool.ts";
import { checkDataSize, percentArg, sizeArg } from "../args.ts";
import { deleteErrorLine, hasStore, openStore, out, rootOf, withExisting, withStore } from "../context.ts";
import { withLock } from "../../common/pidlock.ts";
import { offlineStatus, statusLine } from "../info.ts";
import { withLayers } from "../access.ts";
import { errorLine, Exit, fields, json } from "../output.ts";

const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

export function storeCommands(cmd: Command): void {
  cmd.command("init")
    .description("create a store: a thin pool over a sparse data file (or a block device: direct mode), and its base device")
    .option("--data-size <size>", "data file size (dm.loopdatasize); on a data device, all of it unless given", sizeArg, 100 * GiB)
    .option("--data-device <dev>", "direct mode (direct-lvm): keep the data on this unused block device, not in a data file (dm.directlvm_device)")
    .option("--metadata-size <size>", "metadata space (dm.loopmetadatasize)", sizeArg, 2 * GiB)
    .option("--block-size <size>", "pool block size, a multiple of 64K up to 1G (dm.blocksize)", sizeArg, 64 * KiB)
    .option("--base-size <size>", "size of the base device every layer snapshots (dm.basesize)", sizeArg, 10 * GiB)
    .option("--min-free-space <pct>", "free data space below which new layers fail (dm.min_free_space)", percentArg, 10)
    .option("--autoextend-threshold <pct>", "data use past which the pool grows; 100 disables", percentArg, 80)
    .option("--autoextend-percent <pct>", "how much the pool grows each time", percentArg, 20)
    .option("--low-water-mark <pct>", "free data space under which the pool emits a lowWater event (dm-thin's low_water_mark); 0 disables", percentArg, 20)
    .option("--metadata-low-water-mark <pct>", "free metadata space under which the pool emits a lowWater event; 0 disables", percentArg, 20)
    .action(async (o, c: Command) => {
      const root = rootOf(c);
      const refuseExisting = () => {
        if (hasStore(root)) throw storeError("EEXIST", "init", root, "a store already exists here; use it, or pick another --root");
      };
      refuseExisting();
      if (o.baseSize % PAGE !== 0 || o.baseSize < o.blockSize) {
        throw storeError("EINVAL", "init", root, `--base-size ${formatBytes(o.baseSize)} must be a whole number of 4 KiB pages and at least one pool block (${formatBytes(o.blockSize)})`);
      }
      if (o.minFreeSpace > 99) throw storeError("EINVAL", "init", root, `--min-free-space ${o.minFreeSpace}% leaves no space for layers; use at most 99%`);
      // With a data device, the size is the device's unless one is given.
      const dataSize: number | undefined = o.dataDevice !== undefined && c.getOptionValueSource("dataSize") === "default" ? undefined : o.dataSize;
      if (dataSize !== undefined) checkDataSize(dataSize, o.blockSize, "init", root, false);
      // What init may leave behind when it fails half-way, and so must take away again.
      const before = { root: await exists(root), data: await exists(path.join(root, DATA_FILE)), meta: await exists(path.join(root, METADATA_DIR)) };
      await fs.mkdir(root, { recursive: true });
      let made: { data: number; block: number; base: number };
      let ours = false; // past the checks: what is there now, this init made
      try {
        made = await withLock(root, async () => {
          refuseExisting(); // another init may have won the race
          ours = true;
          const store = await LayerStore.open(root, {
            create: true, dataSize, dataDevice: o.dataDevice, metadataSize: o.metadataSize, blockSize: o.blockSize, baseSize: o.baseSize,
            settings: {
              minFreeSpacePercent: o.minFreeSpace, autoextendThreshold: o.autoextendThreshold, autoextendPercent: o.autoextendPercent,
              lowWaterMarkPercent: o.lowWaterMark, metadataLowWaterMarkPercent: o.metadataLowWaterMark,
            },
          });
          const s = store.pool.status();
          await store.close();
          return { data: s.dataBlocks.total * s.blockSize, block: s.blockSize, base: store.baseSize };
        });
      } catch (e) {
        if (ours) {
          if (!before.root) await fs.rm(root, { recursive: true, force: true });
          else {
            if (!before.meta) await fs.rm(path.join(root, METADATA_DIR), { recursive: true, force: true });
            if (!before.data) await fs.rm(path.join(root, DATA_FILE), { force: true });
          }
        }
        throw e;
      }
      out(`Created a store in ${root}: data ${formatBytes(made.data)}${o.dataDevice ? ` on ${path.resolve(o.dataDevice)}` : ""}, blocks ${formatBytes(made.block)}, base device ${formatBytes(made.base)}\n`);
    });

  cmd.command("info")
    .description("the devicemapper fields of `docker info`")
    .option("--json", "print JSON")
    .action((o, c: Command) =>
      withLayers(c, async (store) => {
        const f = await store.info();
        out(o.json ? json(Object.fromEntries(f)) : `Storage Driver: thinstack\n${fields(f)}`);
      }, { reportOnly: true }));

  cmd.command("status")
    .description("the dm-thin pool status line: transaction, metadata and data use, mode (rw, ro, out_of_data_space), needs_check")
    .option("--json", "print JSON")
    .action(async (o, c: Command) => {
      const root = rootOf(c);
      await withExisting(root, async () => {
        let store: LayerStore;
        try {
          store = await openStore(root, { reportOnly: true });
        } catch (e) {
          // dm-thin keeps reporting a pool whose metadata failed: read-only, needs_check.
          const s = await offlineStatus(root);
          if (!s) throw e;
          out(o.json ? json({ ...s, mode: "ro", needsCheck: true, error: errorLine(e).slice("thinstack: ".length).trim() }) : statusLine(s, true, true) + "\n");
          return;
        }
        try {
          const report = await checkPool(root);
          const needsCheck = report.faults.length > 0;
          const line = statusLine(store.pool.status(), needsCheck);
          const errors = store.pool.status().deferredDeleteErrors;
          out(o.json ? json({ ...store.pool.status(), mode: line.split(" ")[4], needsCheck }) : line + "\n" + errors.map((e) => `${deleteErrorLine(e)}\n`).join(""));
        } finally {
          await store.close();
        }
      });
    });

  cmd.command("resize")
    .description("grow (or shrink, down to what is used) the data file; in direct mode, follow the device's size (after lvextend or losetup -c)")
    .option("--data-size <size>", "the new data size (required for a data file; default in direct mode: the whole device)", sizeArg)
    .action((o, c: Command) =>
      withStore(c, async (store, root) => {
        if (o.dataSize === undefined && store.pool.dataDevice === undefined) {
          throw storeError("EINVAL", "resize", root, "--data-size is required for a store over a data file (only direct mode follows its device)");
        }
        if (o.dataSize !== undefined) checkDataSize(o.dataSize, store.pool.blockSize, "resize", root, true);
        await store.pool.resize(o.dataSize);
        await store.pool.commit();
        out(`Data space is now ${formatBytes(store.pool.status().dataBlocks.total * store.pool.blockSize)}\n`);
      }));

  cmd.command("check")
    .description("verify the metadata (thin_check), then the layers against it; exits 1 on any fault")
    .action(async (_o, c: Command) => {
      const root = rootOf(c);
      const failed = await withExisting(root, async () => {
        const { report, faults } = await checkAll(root);
        for (const n of report.notes) out(`note: ${n}\n`);
        for (const f of faults) out(`fault: ${f}\n`);
        out(`${report.devices} devices, ${report.mappedBlocks} mapped blocks, ${report.usedBlocks} blocks in use: ${faults.length ? `${faults.length} fault(s)` : "no faults"}\n`);
        return faults.length > 0;
      });
      if (failed) throw new Exit(1);
    });

  cmd.command("repair")
    .description("rebuild what can be derived, drop what cannot, and report each change (thin_repair); exits 1 if faults remain")
    .action(async (_o, c: Command) => {
      const root = rootOf(c);
      const failed = await withExisting(root, async () => {
        const changes = await repairPool(root);
        for (const line of changes) out(`${line}\n`);
        let layerChanges: string[];
        try {
          layerChanges = await withSalvaged(root, (store) => store.repair());
        } catch (e) {
          out(changes.length ? `${changes.length} change(s) to the pool metadata\n` : "");
          throw e;
        }
        for (const line of layerChanges) out(`${line}\n`);
        const n = changes.length + layerChanges.length;
        // What the repair could not fix is still a fault: check again, as `check` would.
        const { faults } = await checkAll(root);
        out(n ? `${n} change(s)\n` : faults.length ? "no changes\n" : "nothing to repair\n");
        for (const f of faults) out(`fault: ${f}\n`);
        if (faults.length) out(`${faults.length} fault(s) remain that repair cannot fix\n`);
        return faults.length > 0;
      });
      if (failed) throw new Exit(1);
    });

  cmd.command("dump")
    .description("write all metadata as text (thin_dump); restore reads it back")
    .option("-o, --output <file>", "write to a file instead of stdout")
    .action(async (o, c: Command) => {
      const root = rootOf(c);
      const text = await withExisting(root, () => dumpPool(root));
      if (o.output) await fs.writeFile(o.output, text);
      else out(text);
    });

  cmd.command("restore")
    .description("replace the metadata with a dump (thin_restore)")
    .argument("<file>", "a dump, or - for stdin")
    .action(async (file: string, _o, c: Command) => {
      const root = rootOf(c);
      const text = file === "-" ? await readStdin() : await fs.readFile(file, "utf8");
      await fs.mkdir(root, { recursive: true });
      await withLock(root, () => restorePool(root, text));
      out(`Restored the metadata of ${root}\n`);
    });

  cmd.command("trim")
    .description("give free blocks back to the host: punch holes in the data file, or discard them on the data device (BLKDISCARD)")
    .action((_o, c: Command) =>
      withStore(c, async (store) => {
        await store.pool.settle(); // deferred removals an earlier rm left: their blocks are free first
        await store.pool.commit(); // blocks freed in the open transaction become trimmable
        const r = await store.pool.trim();
        out(`Trimmed ${r.blocks} free blocks (${formatBytes(r.blocks * store.pool.blockSize)}) in ${r.ranges} ranges${r.method === "none" ? "" : ` with ${r.method}`}\n`);
      }));
}

/**
 * Opens the store for check or repair (a layer whose parent is missing does not stop it:
 * see `salvage`), runs `fn` and closes it. Call holding the store's lock.
 */
async function withSalvaged<T>(root: string, fn: (store: LayerStore) => Promise<T>): Promise<T> {
  let store: LayerStore;
  try {
    store = await LayerStore.open(root, { salvage: true });
  } catch (e) {
    const err = e as { message?: string; code?: string };
    throw Object.assign(new Error(`cannot open the store at '${root}': ${String(err.message ?? e).split("\n")[0]}`), { code: err.code ?? "EIO", cause: e });
  }
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The pool's check, then (when the pool is whole) the layers': every fault, one line each. */
async function checkAll(root: string): Promise<{ report: Awaited<ReturnType<typeof checkPool>>; faults: string[] }> {
  const report = await checkPool(root);
  const faults = [...report.faults];
  if (faults.length > 0) return { report, faults };
  let store: LayerStore;
  try {
    store = await LayerStore.open(root, { salvage: true });
  } catch (e) {
    faults.push(`the layer store cannot be opened: ${errorLine(e).slice("thinstack: ".length).trim()}`);
    return { report, faults };
  }
  try {
    faults.push(...await store.check());
  } catch (e) {
    faults.push(`the layer store's check failed: ${errorLine(e).slice("thinstack: ".length).trim()}`);
  } finally {
    await store.close();
  }
  return { report, faults };
}

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array);
  return Buffer.concat(chunks).toString("utf8");
}
