/** Shared helpers of the interchange tests: the real images, tree descriptions, tar building. */
import { createHash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import nodePath from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { EntryType } from "../../src/interchange/entry.ts";
import { writeTar } from "../../src/interchange/tarwrite.ts";
import type { MergedView } from "../../src/interchange/view.ts";

/** `../shared/images` beside the repository, where CI puts the real images (THINSTACK_IMAGES overrides). */
export const IMAGES = process.env.THINSTACK_IMAGES ?? fileURLToPath(new URL("../../../shared/images/", import.meta.url));
/** Whether the real images are there. */
export const haveImages = fs.existsSync(nodePath.join(IMAGES, "MANIFEST.txt"));
/** node:test's `skip` option for tests that need them. */
export const needImages = haveImages ? false : `the real images are absent: ${IMAGES} (CI places ../shared/images beside the repo)`;
// Deno reports skipped tests as "ignored" without the reason: say it once.
if (!haveImages) console.warn(`interchange tests: ${needImages}; skipping those that need them`);

/** A real image file by name. */
export function image(name: string): string {
  return nodePath.join(IMAGES, name);
}

/** All bytes of a stream. */
export async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of chunks) {
    parts.push(c);
    n += c.length;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function sha(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 16);
}

/** A tar entry for `tarOf`: short forms for tests. */
export interface T {
  name: string;
  type?: EntryType;
  data?: string | Uint8Array;
  mode?: number;
  uid?: number;
  gid?: number;
  mtimeMs?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Map<string, Uint8Array>;
}

/** A tar archive of `entries`, written with the project's writer. */
export async function tarOf(entries: T[]): Promise<Uint8Array> {
  return await collect(writeTar(async (w) => {
    for (const e of entries) {
      const type = e.type ?? (e.name.endsWith("/") ? "dir" : "file");
      const data = typeof e.data === "string" ? new TextEncoder().encode(e.data) : e.data ?? new Uint8Array(0);
      await w.add({
        name: e.name, type, mode: e.mode ?? (type === "dir" ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0, mtimeMs: e.mtimeMs ?? 1e12,
        size: data.length, linkname: e.linkname, devmajor: e.devmajor, devminor: e.devminor, xattrs: e.xattrs,
      }, [data]);
    }
  }));
}

/** One line per entry: type, path, mode, owner, then size+hash, target, or device; hard links name their group's first path. */
export type Described = string[];

/** Describes a merged view (root excluded). */
export async function describeView(view: MergedView, opts: { mtime?: boolean } = {}): Promise<Described> {
  const out: string[] = [];
  const first = new Map<string, string>();
  async function walk(dir: string): Promise<void> {
    for (const name of (await view.readdir(dir)).sort()) {
      const p = dir === "/" ? `/${name}` : `${dir}/${name}`;
      const st = (await view.lstat(p))!;
      let extra = "";
      const group = st.type !== "dir" && st.nlink > 1 ? first.get(String(st.ino)) : undefined;
      if (group) extra = `=${group}`; // the rest is the group's first path's
      else if (st.type === "file") extra = `${st.size} ${sha(await collect(view.read(p)))}`;
      else if (st.type === "symlink") extra = `-> ${await view.readlink(p)}`;
      else if (st.type === "char" || st.type === "block") extra = `dev ${st.rdev}`;
      if (st.type !== "dir" && st.nlink > 1 && !group) first.set(String(st.ino), p);
      const mode = st.type === "symlink" ? "" : (st.mode & 0o7777).toString(8);
      const mtime = opts.mtime ? `@${Math.floor(st.mtimeMs / 1000)}` : "";
      out.push([st.type, p, mode, `${st.uid}:${st.gid}`, extra.trim(), mtime].filter((s) => s !== "").join(" "));
      if (st.type === "dir") await walk(p);
    }
  }
  await walk("/");
  return out;
}

/** A host directory as a MergedView, to describe checkouts and other tools' output alike. */
export function hostView(root: string): MergedView {
  const abs = (p: string) => nodePath.join(root, p);
  const typeOf = (s: fs.Stats) =>
    s.isFile() ? "file" : s.isDirectory() ? "dir" : s.isSymbolicLink() ? "symlink" : s.isCharacterDevice() ? "char" : s.isBlockDevice() ? "block" : s.isFIFO() ? "fifo" : "socket";
  return {
    async lstat(p) {
      const s = await fsp.lstat(abs(p)).catch(() => undefined);
      return s && { type: typeOf(s), mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, size: s.size, nlink: s.nlink, ino: s.ino, rdev: s.rdev, mtimeMs: s.mtimeMs } as const;
    },
    readdir: (p) => fsp.readdir(abs(p)),
    readlink: (p) => fsp.readlink(abs(p)),
    async *read(p) {
      yield new Uint8Array(await fsp.readFile(abs(p)));
    },
    xattrs: () => Promise.resolve(undefined),
  };
}
