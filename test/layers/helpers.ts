/**
 * Shared test helpers: temporary stores, tree descriptions of layers, the runtime.
 *
 * @module
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type LayerFs, LayerStore, type LayerStoreOptions } from "../../src/layers/mod.ts";
import { describeEntry, type EntryDesc } from "./memfs.ts";

/** True under Deno. */
export const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";

/** A fresh temporary directory (THINSTACK_TEST_DIR picks where, e.g. a tmpfs). */
export async function tempDir(prefix = "layers-"): Promise<string> {
  const base = process.env.THINSTACK_TEST_DIR ?? os.tmpdir();
  await fs.mkdir(base, { recursive: true });
  return await fs.mkdtemp(path.join(base, prefix));
}

/** A new store in a temporary directory, and a cleanup that closes and deletes it. */
export async function withStore(options: LayerStoreOptions = {}): Promise<{ store: LayerStore; dir: string; cleanup: () => Promise<void> }> {
  const dir = await tempDir();
  const store = await LayerStore.open(dir, { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30, ...options });
  return {
    store, dir,
    cleanup: async () => {
      await store.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** What {@linkcode describeLayer} reads of an entry's stats (a LayerStats, or node's fs.Stats). */
export interface TreeStats {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev: number;
  size: number;
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
}

/** What {@linkcode describeLayer} reads a tree through: a {@linkcode LayerFs}, or a directory on the host (a mounted layer). */
export interface TreeFs {
  lstat(path: string): Promise<TreeStats>;
  readdir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Uint8Array | string>;
  readlink(path: string): Promise<string>;
}

/** The tree a layer shows, described as the model describes its own. */
export async function describeLayer(lfs: TreeFs): Promise<Map<string, EntryDesc>> {
  const out = new Map<string, EntryDesc>();
  const inos = new Map<number, string[]>();
  const stats: [string, TreeStats][] = [];
  const walk = async (dir: string) => {
    stats.push([dir, await lfs.lstat(dir)]);
    for (const name of await lfs.readdir(dir)) {
      const p = dir === "/" ? `/${name}` : `${dir}/${name}`;
      const st = await lfs.lstat(p);
      if (st.isDirectory()) await walk(p);
      else {
        stats.push([p, st]);
        inos.set(st.ino, [...inos.get(st.ino) ?? [], p]);
      }
    }
  };
  await walk("/");
  stats.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [p, st] of stats) {
    const data = st.isFile() ? new Uint8Array(await lfs.readFile(p) as Uint8Array) : undefined;
    const target = st.isSymbolicLink() ? await lfs.readlink(p) : undefined;
    const group = inos.get(st.ino);
    const d = describeEntry(st.mode, st.uid, st.gid, st.nlink, data, target, st.rdev, group && group.length > 1 ? group.sort()[0] : undefined);
    if (d.type !== "dir" && d.size !== st.size) d.size = -st.size; // shows up as a mismatch
    out.set(p, d);
  }
  return out;
}

/** Map → plain object, for readable assertion diffs. */
export function plain(m: Map<string, EntryDesc>): Record<string, EntryDesc> {
  return Object.fromEntries(m);
}
