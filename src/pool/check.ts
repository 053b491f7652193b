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
import { MetaStore, PREVIOUS_ROOT_FILE, ROOT_FILE } from "./metastore.ts";
import { checkPoolRecord, type DeviceRecord, levelBitsOf, namedFiles, type PoolRecord, type SegmentRecord, type StoredNode } from "./persist.ts";
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
  /** Files the record names that are missing or damaged: what repair could get back from the previous root. */
  lost: string[];
}

/** A root record as read: the record, or why it cannot be used. */
type RootRead = { record: PoolRecord; fault?: undefined } | { record?: undefined; fault: string };

async function readRootFile(meta: MetaStore, name: string): Promise<RootRead | undefined> {
  let v: unknown;
  try {
    v = name === ROOT_FILE ? await meta.readRoot() : await meta.readPreviousRoot();
  } catch (e) {
    return { fault: firstLine(e) };
  }
  if (v === undefined) return undefined;
  if (!checkPoolRecord(v)) return { fault: `'${path.join(meta.dir, name)}' is not a thinstack pool record of a version this build reads` };
  return { record: v };
}

const firstLine = (e: unknown) => String((e as Error).message ?? e).split("\n")[0];

async function readRoot(dir: string): Promise<{ meta: MetaStore; current: RootRead }> {
  const meta = new MetaStore(path.join(dir, METADATA_DIR));
  const current = await readRootFile(meta, ROOT_FILE);
  if (current === undefined) throw new Error(`No pool record in '${dir}'; nothing to check`);
  return { meta, current };
}

async function salvage(dir: string, meta: MetaStore, record: PoolRecord, previous?: Set<string>): Promise<Salvaged> {
  const faults: string[] = [];
  const notes: string[] = [];
  const lost: string[] = [];
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
      lost.push(name);
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
      lost.push(file);
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
  const named = namedFiles(record);
  for (const f of await fs.readdir(meta.dir)) {
    if (f === ROOT_FILE || f === PREVIOUS_ROOT_FILE || named.has(f) || previous?.has(f)) continue;
    notes.push(`file '${f}' is not part of the last commit (a crashed commit's leftover; open removes it)`);
  }
  // The participants' files (the layer store's): there, and whole.
  for (const f of named) {
    if (record.segments.includes(f) || Object.values(record.devices).includes(f)) continue;
    if (!(await fs.stat(path.join(meta.dir, f)).catch(() => undefined))) {
      faults.push(`metadata file '${f}' named by the pool record is missing`);
      lost.push(f);
    } else {
      await meta.read(f).catch((e) => {
        faults.push(firstLine(e));
        lost.push(f);
      });
    }
  }
  return { record, devices, faults, notes, lost };
}

/**
 * The previous root (the one the last commit replaced) as repair would go back to it: its
 * salvage when it and every file it names are whole, else why not.
 */
async function previousRoot(dir: string, meta: MetaStore): Promise<{ salvaged?: Salvaged; fault?: string; files: Set<string> }> {
  const prev = await readRootFile(meta, PREVIOUS_ROOT_FILE);
  if (prev === undefined) return { fault: "there is no previous root", files: new Set() };
  if (prev.fault !== undefined) return { fault: prev.fault, files: new Set() };
  const s = await salvage(dir, meta, prev.record);
  const files = namedFiles(prev.record);
  return s.faults.length ? { fault: `the previous root is not whole either (${s.faults[0]})`, files } : { salvaged: s, files };
}

/** Damaged files among those only the previous root names (missing ones are fine: a repair or restore removed them). */
async function previousDamage(meta: MetaStore, current: PoolRecord, prevFiles: Set<string>): Promise<string[]> {
  const faults: string[] = [];
  const live = namedFiles(current);
  for (const f of prevFiles) {
    if (live.has(f) || !(await fs.stat(path.join(meta.dir, f)).catch(() => undefined))) continue;
    await meta.read(f).catch((e) => faults.push(`${firstLine(e)} (a file of the previous commit, which repair goes back to)`));
  }
  return faults;
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
  const { meta, current } = await readRoot(dir);
  const prev = await previousRoot(dir, meta);
  if (current.fault !== undefined) {
    // Nothing of the current commit can be checked; say what repair can do.
    const s = prev.salvaged;
    const faults = [current.fault, s
      ? `repair goes back to the previous commit (transaction ${s.record.transactionId})`
      : `the previous root cannot stand in for it: ${prev.fault}`];
    return { faults, notes: [], devices: s?.devices.length ?? 0, mappedBlocks: s?.devices.reduce((n, d) => n + d.map.size, 0) ?? 0, usedBlocks: s ? distinct(s.devices) : 0 };
  }
  const s = await salvage(dir, meta, current.record, prev.files);
  const usedBlocks = distinct(s.devices);
  if (s.record.usedBlocks !== undefined && s.record.usedBlocks !== usedBlocks) {
    s.faults.push(`the maps use ${usedBlocks} blocks but the last commit recorded ${s.record.usedBlocks}`);
  }
  const prevRead = await readRootFile(meta, PREVIOUS_ROOT_FILE);
  if (prevRead?.fault !== undefined) s.faults.push(`${prevRead.fault} (the previous root, which repair goes back to)`);
  s.faults.push(...await previousDamage(meta, current.record, prev.files));
  return {
    faults: s.faults, notes: s.notes, devices: s.devices.length,
    mappedBlocks: s.devices.reduce((n, d) => n + d.map.size, 0), usedBlocks,
  };
}

/**
 * Rebuilds a pool's metadata from what can be read. When the root record or a file it
 * names is damaged or missing and the previous root (the one the last commit replaced)
 * is whole, the pool goes back to that commit. Otherwise devices whose files are lost are
 * dropped, subtrees whose nodes are lost or malformed are dropped, mappings outside the
 * device or the pool are dropped, and the rest is written out afresh (one new segment,
 * new device files, a new root) by the same atomic switch as a commit. Returns one line
 * per change; blocks shared between devices stay shared.
 */
export async function repairPool(dir: string): Promise<string[]> {
  const { meta, current } = await readRoot(dir);
  const s0 = current.record ? await salvage(dir, meta, current.record) : undefined;
  if (current.fault !== undefined || s0!.lost.length > 0) {
    const prev = await previousRoot(dir, meta);
    if (prev.salvaged) return await goBack(meta, current, s0, prev.salvaged);
    if (current.fault !== undefined) throw new Error(`The pool record of '${dir}' cannot be read (${current.fault}) and ${prev.fault}; nothing to repair from`);
  }
  const s = s0!;
  const changes = [...s.faults.map((f) => `dropped: ${f}`)];
  const recorded = s.record.usedBlocks;
  const used = distinct(s.devices);
  if (recorded !== undefined && recorded !== used) changes.push(`recounted blocks in use: ${recorded} -> ${used}`);
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
  delete record.freed;
  // Everything is written afresh: no previous root to go back to.
  await meta.switchRoot(record, { keepPrevious: false });
  await meta.collect(namedFiles(record));
  return changes;
}

/**
 * Makes the previous root the pool's root again (its files are whole), and says what of
 * its data later writes may have changed: blocks the abandoned commit freed could have
 * been reused (or punched by trim) after it.
 */
async function goBack(meta: MetaStore, current: RootRead, s: Salvaged | undefined, prev: Salvaged): Promise<string[]> {
  const from = current.record ? `transaction ${current.record.transactionId}` : "the current root";
  const why = current.fault ?? `it lost ${s!.lost.map((f) => `'${f}'`).join(", ")}`;
  const changes = [`went back to the previous commit (transaction ${prev.record.transactionId}) from ${from}: ${why}`];
  const freed = current.record?.freed;
  if (freed === undefined) {
    changes.push(current.record
      ? "the abandoned commit did not record the blocks it freed (repair or restore wrote it): data of the previous commit may have been overwritten where it freed blocks"
      : "the blocks the abandoned commit freed are unknown: data of the previous commit may have been overwritten where it freed blocks");
  } else {
    const free = new Set<number>();
    for (let i = 0; i < freed.length; i += 2) for (let b = freed[i]; b < freed[i] + freed[i + 1]; b++) free.add(b);
    for (const d of prev.devices) {
      const hit = [...d.map].filter(([, pb]) => free.has(pb)).map(([vb]) => vb).sort((a, b) => a - b);
      if (hit.length) changes.push(`device ${d.record.id}: ${hit.length} block(s) (virtual ${hit.slice(0, 8).join(", ")}${hit.length > 8 ? ", ..." : ""}) were freed by the abandoned commit; writes after it may have reused them`);
    }
  }
  const record: PoolRecord = { ...prev.record };
  await meta.switchRoot(record, { keepPrevious: false });
  await meta.collect(namedFiles(record));
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
