/**
 * Metadata as readable text and back, in the spirit of thin_dump and thin_restore: one
 * element per line, each device's map as single and range mappings. The text names no
 * map nodes, only what each device maps, so it is canonical: dump, restore, dump gives
 * the same bytes. Participants' files (the layer store's) follow as JSON.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { Buffer } from "node:buffer";
import { storeError } from "../common/errors.ts";
import { openLock } from "../common/pidlock.ts";
import { buildNodes } from "./check.ts";
import { LEVEL_BITS, MIN_LEVEL_BITS } from "./maptree.ts";
import { MetaStore } from "./metastore.ts";
import type { PoolSettings } from "./types.ts";
import { checkPoolRecord, type DeviceRecord, levelBitsOf, POOL_FORMAT, POOL_VERSION, type PoolRecord, type SegmentRecord, type StoredNode } from "./persist.ts";

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const unesc = (s: string) => s.replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

/** CBOR values to JSON and back: byte strings become {"$bytes": base64}. */
function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => {
    if (x instanceof Uint8Array) return { $bytes: Buffer.from(x).toString("base64") };
    if (x && typeof x === "object" && x.type === "Buffer" && Array.isArray(x.data)) return { $bytes: Buffer.from(x.data).toString("base64") };
    return x;
  });
}
function fromJson(s: string): unknown {
  return JSON.parse(s, (_k, x) => (x && typeof x === "object" && typeof x.$bytes === "string" && Object.keys(x).length === 1)
    ? new Uint8Array(Buffer.from(x.$bytes, "base64")) : x);
}

/** The pool's operator settings, as superblock attributes. */
const SETTINGS: [keyof PoolSettings, string][] = [
  ["minFreeSpacePercent", "min_free_space"], ["autoextendThreshold", "autoextend_threshold"], ["autoextendPercent", "autoextend_percent"],
];

const attrs = (o: Record<string, string | number>) => Object.entries(o).map(([k, v]) => ` ${k}="${esc(String(v))}"`).join("");

/**
 * Writes a pool's committed metadata as text.
 *
 * @example
 * ```ts
 * import { dumpPool } from "./dump.ts";
 * console.log(await dumpPool("/var/lib/thin"));
 * ```
 */
export async function dumpPool(dir: string): Promise<string> {
  const meta = new MetaStore(path.join(dir, "metadata"));
  const record = await meta.readRoot();
  if (!checkPoolRecord(record)) throw storeError("EINVAL", "dump", dir, "no readable pool record here; run check");
  const nodes = new Map<number, StoredNode>();
  for (const name of record.segments) for (const n of (await meta.read(name) as SegmentRecord).nodes) nodes.set(n[0], n);
  const out: string[] = [];
  const settings: Record<string, number> = {};
  for (const [k, name] of SETTINGS) if (typeof record.settings?.[k] === "number") settings[name] = record.settings[k]!;
  // Only a test's pool has other than 10 bits per map level: a real pool's dump does not say it.
  if (record.mapLevelBits !== undefined) settings.map_level_bits = record.mapLevelBits;
  const fanout = 2 ** levelBitsOf(record);
  out.push(`<superblock${attrs({ format: POOL_FORMAT, version: record.version, transaction: record.transactionId, block_size: record.blockSize, nr_data_blocks: record.dataBlocks, metadata_size: record.metadataSize, ...settings })}>`);
  const devs: DeviceRecord[] = [];
  for (const file of Object.values(record.devices)) devs.push(await meta.read(file) as DeviceRecord);
  for (const d of devs.sort((a, b) => a.id - b.id)) {
    const map: [number, number][] = [];
    const walk = (id: number, level: number, base: number) => {
      const n = nodes.get(id);
      if (!n) throw storeError("EIO", "dump", dir, `map node ${id} of device ${d.id} is missing; run repair first`);
      for (let k = 0; k < n[2].length; k += 2) {
        const vb = base + n[2][k] * fanout ** level;
        if (level === 0) map.push([vb, n[2][k + 1] - 1]);
        else walk(n[2][k + 1], level - 1, vb);
      }
    };
    if (d.root) walk(d.root, d.height - 1, 0);
    map.sort((a, b) => a[0] - b[0]);
    const extra: Record<string, string | number> = d.deleting ? { deleting: 1 } : {};
    out.push(`  <device${attrs({ dev_id: d.id, size: d.size, height: d.height, created: d.created, mapped_blocks: map.length, ...extra })}>`);
    for (let i = 0; i < map.length;) {
      let j = i + 1;
      while (j < map.length && map[j][0] === map[i][0] + (j - i) && map[j][1] === map[i][1] + (j - i)) j++;
      out.push(j - i === 1
        ? `    <single_mapping${attrs({ origin_block: map[i][0], data_block: map[i][1] })}/>`
        : `    <range_mapping${attrs({ origin_begin: map[i][0], data_begin: map[i][1], length: j - i })}/>`);
      i = j;
    }
    out.push(`  </device>`);
  }
  for (const [name, root] of Object.entries(record.participants ?? {}).sort((a, b) => a[0].localeCompare(b[0]))) {
    out.push(`  <participant${attrs({ name, root: toJson(root) })}>`);
    const files = ((root as { files?: string[] })?.files ?? []).slice().sort();
    for (const f of files) out.push(`    <file${attrs({ name: f, value: toJson(await meta.read(f)) })}/>`);
    out.push(`  </participant>`);
  }
  out.push(`</superblock>`);
  return out.join("\n") + "\n";
}

/**
 * Writes metadata from a dump into `dir` (replacing any there), as one atomic switch: every
 * file is new (a participant's file keeps its dumped name unless a file of that name with
 * other bytes is there; then it gets a fresh name, and its root names that), and the root
 * record's rename switches them in, so a restore cut short leaves the pool as it was.
 * The data file is created sparse if it is missing; its blocks are not touched. Takes the
 * pool's lock: EBUSY while the pool is open here or in another process.
 */
export async function restorePool(dir: string, text: string): Promise<void> {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const parse = (line: string) => {
    const m = /^<\/?(\w+)((?:\s+\w+="[^"]*")*)\s*\/?>$/.exec(line);
    if (!m) throw storeError("EINVAL", "restore", dir, `cannot read dump line '${line.slice(0, 80)}'`);
    const a: Record<string, string> = {};
    for (const x of m[2].matchAll(/(\w+)="([^"]*)"/g)) a[x[1]] = unesc(x[2]);
    return { tag: m[1], closing: line.startsWith("</"), a };
  };
  const num = (a: Record<string, string>, k: string) => {
    const v = Number(a[k]);
    if (!Number.isSafeInteger(v)) throw storeError("EINVAL", "restore", dir, `attribute ${k}="${a[k]}" is not a whole number`);
    return v;
  };
  const head = parse(lines[0] ?? "");
  if (head.tag !== "superblock" || head.a.format !== POOL_FORMAT) throw storeError("EINVAL", "restore", dir, "the text is not a thinstack dump");
  const blockSize = num(head.a, "block_size");
  const dataBlocks = num(head.a, "nr_data_blocks");
  const devices: { record: DeviceRecord; map: Map<number, number> }[] = [];
  const participants: Record<string, unknown> = {};
  const files: [string, unknown][] = [];
  let dev: { record: DeviceRecord; map: Map<number, number> } | undefined;
  for (const line of lines.slice(1)) {
    const { tag, closing, a } = parse(line);
    if (closing) { if (tag === "device") dev = undefined; continue; }
    if (tag === "device") {
      dev = { record: { id: num(a, "dev_id"), size: num(a, "size"), height: num(a, "height"), created: num(a, "created"), root: 0 }, map: new Map() };
      if (a.deleting) dev.record.deleting = true;
      devices.push(dev);
    } else if (tag === "single_mapping" || tag === "range_mapping") {
      if (!dev) throw storeError("EINVAL", "restore", dir, `a mapping outside a device: '${line}'`);
      const [vb, pb, n] = tag === "single_mapping" ? [num(a, "origin_block"), num(a, "data_block"), 1] : [num(a, "origin_begin"), num(a, "data_begin"), num(a, "length")];
      for (let k = 0; k < n; k++) {
        if (pb + k >= dataBlocks) throw storeError("EINVAL", "restore", dir, `device ${dev.record.id} maps block ${vb + k} to ${pb + k}, outside the pool`);
        dev.map.set(vb + k, pb + k);
      }
    } else if (tag === "participant") {
      participants[a.name] = fromJson(a.root);
    } else if (tag === "file") {
      files.push([a.name, fromJson(a.value)]);
    }
  }
  const metaDir = path.join(dir, "metadata");
  await fs.mkdir(metaDir, { recursive: true });
  // No instance of this pool may be open in this process, nor the pool in another.
  const unlock = await openLock(dir, "restore");
  try {
    const dataFile = path.join(dir, "data");
    if (!(await fs.stat(dataFile).catch(() => undefined))) {
      const fh = await fs.open(dataFile, "wx");
      try {
        await fh.truncate(dataBlocks * blockSize);
      } finally {
        await fh.close();
      }
    }
    const meta = new MetaStore(metaDir);
    const tx = num(head.a, "transaction");
    const levelBits = head.a.map_level_bits === undefined ? LEVEL_BITS : num(head.a, "map_level_bits");
    if (levelBits < MIN_LEVEL_BITS || levelBits > LEVEL_BITS) throw storeError("EINVAL", "restore", dir, `map_level_bits="${levelBits}" must be from ${MIN_LEVEL_BITS} to ${LEVEL_BITS}`);
    let nextId = 1;
    const stored: StoredNode[] = [];
    const deviceFiles: Record<string, string> = {};
    const used = new Set<number>();
    for (const d of devices) {
      d.record.root = d.map.size ? buildNodes(d.map, d.record.height, () => nextId++, stored, 2 ** levelBits) : 0;
      for (const b of d.map.values()) used.add(b);
      deviceFiles[String(d.record.id)] = await meta.write(`dev-${d.record.id}`, tx, d.record);
    }
    const segments = stored.length ? [await meta.write("nodes", tx, { transactionId: tx, nodes: stored } satisfies SegmentRecord)] : [];
    // Participants' files keep their dumped names where that changes no file (a file of that
    // name with other bytes may be live): until the root switches, the store is as it was.
    const renamed = new Map<string, string>();
    for (const [name, value] of files) {
      const placed = await meta.place(name, tx, value);
      if (placed !== name) renamed.set(name, placed);
    }
    if (renamed.size > 0) for (const name of Object.keys(participants)) participants[name] = renameFiles(participants[name], renamed);
    const record: PoolRecord = {
      format: POOL_FORMAT, version: POOL_VERSION, transactionId: tx, blockSize, dataBlocks,
      metadataSize: num(head.a, "metadata_size"), nextNodeId: nextId, usedBlocks: used.size,
      devices: deviceFiles, segments, participants,
      ...(levelBits !== LEVEL_BITS ? { mapLevelBits: levelBits } : {}),
    };
    const settings: Partial<PoolSettings> = {};
    for (const [k, name] of SETTINGS) {
      if (head.a[name] === undefined) continue;
      const v = Number(head.a[name]);
      if (!Number.isFinite(v)) throw storeError("EINVAL", "restore", dir, `attribute ${name}="${head.a[name]}" is not a number`);
      settings[k] = v;
    }
    if (Object.keys(settings).length) record.settings = settings;
    await meta.switchRoot(record);
    await meta.collect(new Set([...segments, ...Object.values(deviceFiles), ...files.map(([n]) => renamed.get(n) ?? n)]));
  } finally {
    await unlock();
  }
}

/** `value` with every string that names a renamed file replaced by its new name (participant roots name their files). */
function renameFiles(value: unknown, renamed: Map<string, string>): unknown {
  if (typeof value === "string") return renamed.get(value) ?? value;
  if (Array.isArray(value)) return value.map((v) => renameFiles(v, renamed));
  if (value && typeof value === "object" && !ArrayBuffer.isView(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renameFiles(v, renamed)]));
  }
  return value;
}
