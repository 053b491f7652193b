/**
 * Checking and repairing a pool's metadata offline, as thin_check and thin_repair do for
 * dm-thin. Both read the metadata files directly; neither needs the pool open.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { blockDeviceSize } from "./blockdev.ts";
import { FANOUT, heightFor } from "./maptree.ts";
import { MetaStore } from "./metastore.ts";
import { checkPoolRecord, type DeviceRecord, levelBitsOf, type PoolRecord, type SegmentRecord, type StoredNode } from "./persist.ts";
import type { NodeId } from "./types.ts";

const DATA_FILE = "data";
const METADATA_DIR = "metadata";

/** What a check found. `faults` empty means the metadata is consistent. */
export interface CheckReport {
  faults: string[];
  /** Things worth knowing that are not faults (leftover files of a crashed commit). */
  notes: string[];
  devices: number;
  mappedBlocks: number;
  usedBlocks: number;
}

/** A device's cleaned map: virtual block → pool block, with what was dropped. */
interface Salvaged {
  record: PoolRecord;
  devices: { record: DeviceRecord; file: string; map: Map<number, number> }[];
  faults: string[];
  notes: string[];
}

async function salvage(dir: string): Promise<Salvaged> {
  const meta = new MetaStore(path.join(dir, METADATA_DIR));
  const faults: string[] = [];
  const notes: string[] = [];
  const record = await meta.readRoot().catch((e) => {
    throw new Error(`The pool record of '${dir}' cannot be read: ${(e as Error).message}`);
  });
  if (record === undefined) throw new Error(`No pool record in '${dir}'; nothing to check`);
  if (!checkPoolRecord(record)) throw new Error(`The pool record of '${dir}' is not a thinstack pool record`);
  if (record.dataDevice !== undefined) {
    const size = await blockDeviceSize(record.dataDevice).catch((e) => (e as Error).message);
    if (typeof size === "string") faults.push(`data device '${record.dataDevice}' cannot be used: ${size}`);
    else if (size < record.dataBlocks * record.blockSize) {
      faults.push(`data device has ${size} bytes, fewer than the pool's ${record.dataBlocks} blocks of ${record.blockSize}`);
    }
  } else {
    const st = await fs.stat(path.join(dir, DATA_FILE)).catch(() => undefined);
    if (!st) faults.push(`data file '${path.join(dir, DATA_FILE)}' is missing`);
    else if (st.size < record.dataBlocks * record.blockSize) {
      faults.push(`data file has ${st.size} bytes, fewer than the pool's ${record.dataBlocks} blocks of ${record.blockSize}`);
    }
  }
  const nodes = new Map<NodeId, StoredNode>();
  let maxId = 0;
  for (const name of record.segments) {
    try {
      const seg = await meta.read(name) as SegmentRecord;
      for (const n of seg.nodes) { nodes.set(n[0], n); maxId = Math.max(maxId, n[0]); }
    } catch (e) {
      faults.push(`node segment '${name}' cannot be read (${(e as Error).message.split("\n")[0]})`);
    }
  }
  if (maxId >= record.nextNodeId) faults.push(`next node id ${record.nextNodeId} is not above the largest node id ${maxId}`);
  const devices: Salvaged["devices"] = [];
  const fanout = 2 ** levelBitsOf(record);
  for (const [key, file] of Object.entries(record.devices)) {
    let dev: DeviceRecord;
    try {
      dev = await meta.read(file) as DeviceRecord;
    } catch (e) {
      faults.push(`device ${key}: file '${file}' cannot be read (${(e as Error).message.split("\n")[0]}); the device is lost`);
      continue;
    }
    if (String(dev.id) !== key) faults.push(`device ${key}: its file says it is device ${dev.id}`);
    const blocks = Math.ceil(dev.size / record.blockSize);
    if (!(dev.height >= heightFor(blocks, fanout))) {
      faults.push(`device ${key}: map height ${dev.height} cannot address its ${blocks} blocks`);
      dev.height = heightFor(blocks, fanout);
    }
    const map = new Map<number, number>();
    const walk = (id: NodeId, level: number, base: number, where: string) => {
      const n = nodes.get(id);
      if (!n) return faults.push(`device ${key}: map node ${id} (${where}) is missing; its blocks are lost`);
      if ((n[1] === 1) !== (level === 0)) return faults.push(`device ${key}: map node ${id} is a ${n[1] ? "leaf" : "branch"} at level ${level}`);
      const span = fanout ** level;
      for (let k = 0; k < n[2].length; k += 2) {
        const [slot, value] = [n[2][k], n[2][k + 1]];
        if (!(slot >= 0 && slot < fanout)) { faults.push(`device ${key}: map node ${id} has slot ${slot}`); continue; }
        const vb = base + slot * span;
        if (level > 0) { walk(value, level - 1, vb, `under node ${id}`); continue; }
        if (vb >= blocks) faults.push(`device ${key}: block ${vb} is mapped past the device's ${blocks} blocks`);
        else if (!(value >= 1 && value - 1 < record.dataBlocks)) faults.push(`device ${key}: block ${vb} maps to pool block ${value - 1}, outside the pool's ${record.dataBlocks}`);
        else map.set(vb, value - 1);
      }
    };
    if (dev.root) walk(dev.root, dev.height - 1, 0, "root");
    devices.push({ record: dev, file, map });
  }
  const named = new Set<string>([...record.segments, ...Object.values(record.devices)]);
  for (const root of Object.values(record.participants ?? {})) {
    for (const f of (root as { files?: string[] })?.files ?? []) named.add(f);
  }
  for (const f of await fs.readdir(meta.dir)) {
    if (f !== "pool.cbor" && !named.has(f)) notes.push(`file '${f}' is not part of the last commit (a crashed commit's leftover; open removes it)`);
  }
  for (const f of named) {
    if (!(await fs.stat(path.join(meta.dir, f)).catch(() => undefined))) {
      if (!record.segments.includes(f) && !Object.values(record.devices).includes(f)) faults.push(`metadata file '${f}' named by the pool record is missing`);
    }
  }
  return { record, devices, faults, notes };
}

function distinct(devices: Salvaged["devices"]): number {
  const used = new Set<number>();
  for (const d of devices) for (const b of d.map.values()) used.add(b);
  return used.size;
}

/**
 * Verifies a pool's metadata: every file the record names is readable, every map node is
 * present and of the right kind, every mapping lies inside its device and the pool, and
 * the blocks in use recounted from the maps equal the count the commit recorded.
 *
 * @example
 * ```ts
 * import { checkPool } from "./check.ts";
 * const report = await checkPool("/var/lib/thin");
 * if (report.faults.length) console.error(report.faults.join("\n"));
 * ```
 */
export async function checkPool(dir: string): Promise<CheckReport> {
  const s = await salvage(dir);
  const usedBlocks = distinct(s.devices);
  if (s.record.usedBlocks !== undefined && s.record.usedBlocks !== usedBlocks) {
    s.faults.push(`the maps use ${usedBlocks} blocks but the last commit recorded ${s.record.usedBlocks}`);
  }
  return {
    faults: s.faults, notes: s.notes, devices: s.devices.length,
    mappedBlocks: s.devices.reduce((n, d) => n + d.map.size, 0), usedBlocks,
  };
}

/**
 * Rebuilds a pool's metadata from what can be read: devices whose files are lost are
 * dropped, subtrees whose nodes are lost or malformed are dropped, mappings outside the
 * device or the pool are dropped, and the rest is written out afresh (one new segment,
 * new device files, a new root) by the same atomic switch as a commit. Returns one line
 * per change; blocks shared between devices stay shared.
 */
export async function repairPool(dir: string): Promise<string[]> {
  const s = await salvage(dir);
  const changes = [...s.faults.map((f) => `dropped: ${f}`)];
  const recorded = s.record.usedBlocks;
  const used = distinct(s.devices);
  if (recorded !== undefined && recorded !== used) changes.push(`recounted blocks in use: ${recorded} -> ${used}`);
  const meta = new MetaStore(path.join(dir, METADATA_DIR));
  const tx = s.record.transactionId + 1;
  let nextId = 1;
  const stored: StoredNode[] = [];
  const devices: Record<string, string> = {};
  for (const d of s.devices) {
    const root = d.map.size ? buildNodes(d.map, d.record.height, () => nextId++, stored, 2 ** levelBitsOf(s.record)) : 0;
    const record: DeviceRecord = { ...d.record, root };
    devices[String(d.record.id)] = await meta.write(`dev-${d.record.id}`, tx, record);
  }
  const segments = stored.length ? [await meta.write("nodes", tx, { transactionId: tx, nodes: stored } satisfies SegmentRecord)] : [];
  const record: PoolRecord = { ...s.record, transactionId: tx, nextNodeId: nextId, usedBlocks: used, devices, segments };
  await meta.switchRoot(record);
  const live = new Set([...segments, ...Object.values(devices)]);
  for (const root of Object.values(record.participants ?? {})) for (const f of (root as { files?: string[] })?.files ?? []) live.add(f);
  await meta.collect(live);
  return changes;
}

/** Writes a map as fresh, unshared nodes of `fanout` slots; returns the root id. */
export function buildNodes(map: Map<number, number>, height: number, newId: () => NodeId, out: StoredNode[], fanout = FANOUT): NodeId {
  const build = (level: number, entries: [number, number][]): NodeId => {
    const id = newId();
    const pairs: number[] = [];
    if (level === 0) {
      for (const [vb, pb] of entries) pairs.push(vb % fanout, pb + 1);
    } else {
      const span = fanout ** level;
      const groups = new Map<number, [number, number][]>();
      for (const e of entries) {
        const slot = Math.floor(e[0] / span) % fanout;
        let g = groups.get(slot);
        if (!g) groups.set(slot, g = []);
        g.push(e);
      }
      for (const [slot, g] of [...groups].sort((a, b) => a[0] - b[0])) pairs.push(slot, build(level - 1, g));
    }
    out.push([id, level === 0 ? 1 : 0, pairs]);
    return id;
  };
  return build(height - 1, [...map].sort((a, b) => a[0] - b[0]));
}
