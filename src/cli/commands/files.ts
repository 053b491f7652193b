/**
 * Files between a layer and the host: `cp` (docker cp style: `KEY:/path` on one side, a
 * host path or `-` for a tar stream on the other, files and trees both ways) and `cat`.
 * Copies to the host go through the HostWriter that checkout uses, so nothing already in
 * the destination is written through.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import tar from "tar-stream";
import { storeError } from "../../common/errors.ts";
import { fsTarget } from "../../interchange/fstarget.ts";
import { HostWriter } from "../../interchange/hostwrite.ts";
import { writable, type WritableLike } from "../../interchange/pump.ts";
import type { LayerFs } from "../../layers/mod.ts";
import { layerPath } from "../args.ts";
import { note, withStore } from "../context.ts";
import { type Progress, progress } from "../progress.ts";
import { isStdoutClosed, pipeOut } from "../stdout.ts";

const CHUNK = 1024 * 1024;

/** The side a copy reads from: the host's fs or a layer's. */
interface Reader {
  lstat(p: string): Promise<{ isDirectory(): boolean; isFile(): boolean; isSymbolicLink(): boolean; mode: number; size: number; mtimeMs: number; atimeMs: number }>;
  readdir(p: string): Promise<string[]>;
  readlink(p: string): Promise<string>;
  readChunks(p: string): AsyncIterable<Uint8Array>;
}

/** A layer, which a copy also writes to (the host is written by the HostWriter). */
interface Side extends Reader {
  mkdir(p: string, opts: { recursive?: boolean; mode?: number }): Promise<unknown>;
  symlink(target: string, p: string): Promise<void>;
  chmod(p: string, mode: number): Promise<void>;
  utimes(p: string, atime: number | Date, mtime: number | Date): Promise<void>;
  writeChunks(p: string, mode: number, chunks: AsyncIterable<Uint8Array>): Promise<void>;
}

const host: Reader = {
  lstat: (p) => fs.lstat(p),
  readdir: (p) => fs.readdir(p),
  readlink: (p) => fs.readlink(p),
  async *readChunks(p) {
    const fh = await fs.open(p, "r");
    try {
      const buf = new Uint8Array(CHUNK);
      for (let pos = 0; ;) {
        const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
        if (bytesRead === 0) return;
        yield buf.slice(0, bytesRead);
        pos += bytesRead;
      }
    } finally {
      await fh.close();
    }
  },
};

function layerSide(lfs: LayerFs): Side {
  return {
    lstat: (p) => lfs.lstat(p),
    readdir: (p) => lfs.readdir(p) as Promise<string[]>,
    readlink: (p) => lfs.readlink(p),
    mkdir: (p, o) => lfs.mkdir(p, o),
    symlink: (t, p) => lfs.symlink(t, p),
    chmod: (p, m) => lfs.chmod(p, m),
    utimes: (p, a, m) => lfs.utimes(p, a, m),
    async *readChunks(p) {
      const fh = await lfs.open(p, "r");
      try {
        for (let pos = 0; ;) {
          const buf = new Uint8Array(CHUNK);
          const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
          if (bytesRead === 0) return;
          yield buf.subarray(0, bytesRead);
          pos += bytesRead;
        }
      } finally {
        await fh.close();
      }
    },
    async writeChunks(p, mode, chunks) {
      const fh = await lfs.open(p, "w", mode & 0o7777);
      try {
        let pos = 0;
        for await (const c of chunks) {
          await fh.write(c, 0, c.byteLength, pos);
          pos += c.byteLength;
        }
      } finally {
        await fh.close();
      }
    },
  };
}


/** Copies a file, symlink or tree from the host into a layer. */
async function copyTree(from: Reader, src: string, to: Side, dst: string, bar: Progress): Promise<void> {
  const st = await from.lstat(src);
  if (st.isSymbolicLink()) {
    await to.symlink(await from.readlink(src), dst);
    return;
  }
  if (st.isDirectory()) {
    await to.mkdir(dst, { recursive: true, mode: st.mode & 0o7777 });
    for (const name of (await from.readdir(src)).sort()) await copyTree(from, path.posix.join(src, name), to, path.posix.join(dst, name), bar);
    await to.chmod(dst, st.mode & 0o7777);
  } else if (st.isFile()) {
    const counted = async function* () {
      for await (const c of from.readChunks(src)) {
        bar.advance(c.byteLength);
        yield c;
      }
    };
    await to.writeChunks(dst, st.mode, counted());
    await to.chmod(dst, st.mode & 0o7777);
  } else {
    return; // devices and fifos stay where they are: docker cp skips them too
  }
  await to.utimes(dst, st.atimeMs / 1000, st.mtimeMs / 1000);
}

/**
 * Copies `src` of a layer (a file, symlink or tree) to host path `dst`, as checkout
 * writes (the HostWriter): every entry is made anew and nothing is followed that the
 * copy did not make. A non-directory in the way (a symlink to anywhere included) is
 * replaced, a real directory is written into, and anything else where a directory goes
 * is refused (ENOTDIR). Device nodes are not made and setuid/setgid bits are dropped
 * unless `keepSetid`; what was left out is returned, one line each.
 */
async function copyOut(lfs: LayerFs, src: string, dst: string, keepSetid: boolean, bar: Progress): Promise<string[]> {
  const w = new HostWriter(fsTarget(lfs), { op: "cp", owners: false, devices: false, keepSetid, replace: true, onData: (n) => bar.advance(n) });
  await w.write(src, dst);
  await w.finish();
  return w.report.skipped;
}

async function treeSize(side: Reader, p: string): Promise<number> {
  const st = await side.lstat(p);
  if (st.isFile()) return st.size;
  if (!st.isDirectory()) return 0;
  let n = 0;
  for (const name of await side.readdir(p)) n += await treeSize(side, path.posix.join(p, name));
  return n;
}

/**
 * docker cp's destination rule: into an existing directory, under the source's name. A
 * destination ending in `/` names a directory: it must be one (ENOTDIR) and, unless the
 * source is a directory (made there), exist (ENOENT), where without the `/` a file of that
 * name would be made. `stat` is how the destination is looked at: on the host it follows
 * symlinks (the directory the user names may be reached through one; what the copy
 * writes below it never is). `shown` is the destination as the user gave it, for the error.
 */
async function target(stat: (p: string) => Promise<{ isDirectory(): boolean }>, dst: string, src: string, srcIsDir: boolean, shown: string): Promise<string> {
  const dirOnly = dst.length > 1 && dst.endsWith("/");
  const notDir = () => storeError("ENOTDIR", "cp", shown, "a destination ending in '/' names a directory, and this is not one");
  let st: { isDirectory(): boolean } | undefined;
  try {
    st = await stat(dst);
  } catch (e) {
    if (dirOnly && (e as { code?: string }).code === "ENOTDIR") throw notDir();
  }
  if (st?.isDirectory()) return path.posix.join(dst, path.posix.basename(src));
  if (dirOnly && st) throw notDir();
  if (dirOnly && !srcIsDir) {
    throw storeError("ENOENT", "cp", shown, "a destination ending in '/' names a directory, which must exist (as with docker cp)");
  }
  return dst.length > 1 ? dst.replace(/\/+$/, "") : dst;
}

/**
 * Writes `src` of a layer (a file or a tree) to stdout as a tar stream, one file at a time.
 * When stdout fails (its reader went away) the walk stops too, and stdout's error is the
 * one thrown.
 */
async function packTree(lfs: LayerFs, src: string): Promise<void> {
  const pack = tar.pack();
  const written = pipeOut(pack as AsyncIterable<Uint8Array>); // leaving it early destroys pack: the walk's next entry fails
  const walk = async (p: string, name: string) => {
    const st = await lfs.lstat(p);
    const header = { name, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: new Date(st.mtimeMs) };
    if (st.isSymbolicLink()) pack.entry({ ...header, type: "symlink", linkname: await lfs.readlink(p) });
    else if (st.isDirectory()) {
      pack.entry({ ...header, type: "directory" });
      for (const child of ((await lfs.readdir(p)) as string[]).sort()) await walk(path.posix.join(p, child), `${name}/${child}`);
    } else if (st.isFile()) {
      await new Promise<void>((resolve, reject) => {
        const entry = pack.entry({ ...header, size: st.size }, (err) => (err ? reject(err) : resolve()));
        (async () => {
          for await (const c of layerSide(lfs).readChunks(p)) {
            if (!entry.write(c)) await writable(entry as unknown as WritableLike);
            if (entry.destroyed) throw new Error("tar entry destroyed");
          }
          entry.end(() => {});
        })().catch((e) => {
          entry.destroy(e);
          reject(e);
        });
      });
    }
  };
  const walked = walk(src, path.posix.basename(src) || ".").then(
    () => pack.finalize(),
    (e) => {
      pack.destroy(e as Error);
      throw e;
    },
  );
  const [w, o] = await Promise.allSettled([walked, written]);
  if (o.status === "rejected" && isStdoutClosed(o.reason)) throw o.reason;
  if (w.status === "rejected") throw w.reason;
  if (o.status === "rejected") throw o.reason;
}

/**
 * Extracts a tar stream from stdin into directory `dst` of a layer, as `docker cp -`:
 * `dst` must be a directory; files, directories, symlinks and hard links keep their
 * modes and times.
 */
async function unpackInto(lfs: LayerFs, dst: string): Promise<void> {
  const st = await lfs.stat(dst).catch(() => undefined);
  if (!st) throw storeError("ENOENT", "cp", dst, "the destination of a tar stream must be an existing directory of the layer");
  if (!st.isDirectory()) throw storeError("ENOTDIR", "cp", dst, "the destination of a tar stream must be a directory");
  const extract = tar.extract();
  const feed = pipeline(process.stdin, extract);
  feed.catch(() => {}); // awaited below, after the entries; an entry's failure ends it early
  const dirTimes: [string, Date][] = [];
  // Every name lands inside `dst`: `..` and absolute names cannot climb out of it.
  const inside = (name: string) => path.posix.join(dst, path.posix.normalize("/" + name).slice(1)).replace(/(.)\/+$/, "$1");
  for await (const entry of extract) {
    const h = entry.header;
    const p = inside(h.name);
    const mode = (h.mode ?? 0o644) & 0o7777;
    const mtime = h.mtime ?? new Date();
    if (h.type === "directory") {
      if (!(await lfs.lstat(p).catch(() => undefined))?.isDirectory()) await lfs.mkdir(p, { recursive: true, mode });
      await lfs.chmod(p, mode);
      dirTimes.push([p, mtime]);
    } else if (h.type === "symlink") {
      await lfs.rm(p, { force: true });
      await lfs.symlink(h.linkname!, p);
      await lfs.lutimes(p, mtime, mtime);
    } else if (h.type === "link") {
      await lfs.rm(p, { force: true });
      await lfs.link(inside(h.linkname!), p);
    } else if (h.type === "file" || h.type === "contiguous-file") {
      await layerSide(lfs).writeChunks(p, mode, entry as AsyncIterable<Uint8Array>);
      await lfs.chmod(p, mode);
      await lfs.utimes(p, mtime, mtime);
    }
    // Devices, fifos and the rest stay out, as with docker cp.
    entry.resume();
  }
  await feed;
  // Last, and deepest first: making entries inside a directory changes its times.
  for (const [p, t] of dirTimes.reverse()) await lfs.utimes(p, t, t);
}

export function fileCommands(cmd: Command): void {
  cmd.command("cp")
    .description("copy files or trees between a layer and the host: KEY:/path and a host path (or - for a tar stream)")
    .argument("<src>").argument("<dst>")
    .option("--keep-setid", "to the host: keep setuid and setgid bits of files (dropped by default)")
    .action((src: string, dst: string, o: { keepSetid?: boolean }, c: Command) =>
      withStore(c, async (store) => {
        const s = layerPath(src);
        const d = layerPath(dst);
        if ((s ? 1 : 0) + (d ? 1 : 0) !== 1) {
          throw Object.assign(new Error(`exactly one side of cp must be KEY:/path, got '${src}' and '${dst}'`), { code: "EINVAL" });
        }
        if (s) {
          const lfs = store.fs(s.key);
          if (dst === "-") return await packTree(lfs, s.path);
          const from = layerSide(lfs);
          const srcPath = path.posix.resolve("/", s.path);
          const bar = progress("cp", await treeSize(from, srcPath));
          let skipped: string[];
          try {
            const isDir = (await from.lstat(srcPath)).isDirectory();
            skipped = await copyOut(lfs, srcPath, await target((p) => fs.stat(p), dst, srcPath, isDir, dst), o.keepSetid ?? false, bar);
          } finally {
            bar.stop();
          }
          // What was not made (devices, setuid bits, xattrs): news, not output.
          for (const line of skipped) note(line);
        } else {
          const to = layerSide(store.fs(d!.key));
          if (src === "-") {
            await unpackInto(store.fs(d!.key), d!.path);
            return await store.sync();
          }
          const bar = progress("cp", await treeSize(host, src));
          try {
            const isDir = (await host.lstat(src)).isDirectory();
            await copyTree(host, path.resolve(src), to, await target((p) => to.lstat(p), d!.path, src, isDir, dst), bar);
          } finally {
            bar.stop();
          }
        }
        await store.sync();
      }));

  cmd.command("cat")
    .description("print a file of a layer")
    .argument("<spec>", "KEY:/path")
    .action((spec: string, _o, c: Command) =>
      withStore(c, async (store) => {
        const p = layerPath(spec);
        if (!p) throw Object.assign(new Error(`'${spec}' is not KEY:/path`), { code: "EINVAL" });
        const lfs = store.fs(p.key);
        if ((await lfs.stat(p.path)).isDirectory()) throw storeError("EISDIR", "cat", spec, "a directory; copy it out with 'thinstack cp'");
        await pipeOut(layerSide(lfs).readChunks(p.path));
      }));
}
