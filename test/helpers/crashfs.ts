/**
 * Replaying a recording of file operations (src/pool/fileops.ts, src/pool/oplog.ts) as a
 * disk would hold it after losing power at a cut point: the harness that catches a
 * missing or misordered fsync, which `kill -9` cannot (the page cache survives it).
 *
 * The durability model is strict POSIX, as fsync(2) states it and nothing more:
 * - a file's writes, truncations and punched holes are durable once an fsync or fdatasync
 *   of that file (any descriptor of the same inode) started after they completed and
 *   finished before the cut;
 * - a name's creation, rename, link or removal is durable once an fsync of its directory
 *   started after it and finished before the cut. An fsync of the file itself does not
 *   make its name durable ("Calling fsync() does not necessarily ensure that the entry in
 *   the directory containing the file has also reached disk", fsync(2)); ext4 and XFS
 *   happen to do it, other file systems need not;
 * - anything else that happened before the cut may or may not be on disk, each
 *   independently, in any order, and a write only in part (whole 4 KiB pages): a "torn"
 *   replay keeps a random subset of those operations, a strict one none of them.
 * Directory operations are tracked by inode, so a rename kept without the creation of its
 * source still puts the source's inode under the new name, as a journal replay would.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { type LoggedOp, type OpRecord, readOps } from "../../src/pool/oplog.ts";

const PAGE = 4096;

type Ino = number;

interface FileState { size: number; pages: Map<number, Uint8Array> }

/** One recorded operation resolved to the inodes it touches. */
interface Step {
  t: number;
  rec: OpRecord;
  data?: Uint8Array;
  /** A change to a file's bytes or size (durable with an fsync of `ino`). */
  file?: Ino;
  /** A change to names (durable with an fsync of each directory in `dirs`). */
  dirs?: Ino[];
  ino?: Ino;
  /** For an open with "w" of an existing file: it empties that file. */
  empties?: boolean;
  /** For creations: the kind made. */
  makes?: "file" | "dir";
}

/** A directory's contents at the start of a recording (all of it durable). */
export interface Snapshot { root: string; entries: { path: string; kind: "file" | "dir"; bytes?: Uint8Array }[] }

/** Reads the tree under `root` (call before starting a recording). */
export async function snapshot(root: string): Promise<Snapshot> {
  const entries: Snapshot["entries"] = [];
  const walk = async (dir: string) => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        entries.push({ path: p, kind: "dir" });
        await walk(p);
      } else if (e.isFile()) entries.push({ path: p, kind: "file", bytes: new Uint8Array(await fs.readFile(p)) });
    }
  };
  await walk(path.resolve(root));
  return { root: path.resolve(root), entries };
}

/** What a replay keeps of the operations that were not durable at the cut. */
export type Keep = (step: { t: number; op: string }) => "all" | "none" | "part";

/** A recording, resolved and ready to be cut anywhere. */
export class Recording {
  readonly steps: Step[] = [];
  readonly #initial: Snapshot;
  /** Per inode, the start and end tickets of its fsyncs (files and directories alike). */
  readonly #syncs = new Map<Ino, { t0: number; t: number }[]>();
  #nextIno = 1;
  readonly #kinds = new Map<Ino, "file" | "dir">([[0, "dir"]]);
  readonly #initialFiles = new Map<Ino, FileState>();
  readonly #initialNames = new Map<string, Ino>();

  constructor(initial: Snapshot, ops: LoggedOp[]) {
    this.#initial = initial;
    const names = new Map<string, Ino>([[initial.root, 0]]);
    for (const e of initial.entries) {
      const ino = this.#nextIno++;
      names.set(e.path, ino);
      this.#kinds.set(ino, e.kind);
      if (e.kind === "file") this.#initialFiles.set(ino, fileFrom(e.bytes!));
    }
    for (const [p, ino] of names) this.#initialNames.set(p, ino);
    const handles = new Map<number, Ino>();
    const need = (p: string, what: string): Ino => {
      const ino = names.get(p);
      if (ino === undefined) throw new Error(`Recorded ${what} of '${p}', which the recording does not know`);
      return ino;
    };
    const parent = (p: string) => need(path.dirname(p), "a name in the directory");
    for (const { rec, data } of ops) {
      const step: Step = { t: rec.t, rec, data };
      switch (rec.op) {
        case "open": {
          const there = names.get(rec.path);
          if (there === undefined || rec.flags === "wx") {
            if (there !== undefined) throw new Error(`Recorded an exclusive create of '${rec.path}', which exists`);
            if (rec.flags === "r+") throw new Error(`Recorded an open of '${rec.path}', which does not exist`);
            const ino = this.#nextIno++;
            this.#kinds.set(ino, "file");
            Object.assign(step, { ino, dirs: [parent(rec.path)], makes: "file" });
            names.set(rec.path, ino);
          } else if (rec.flags === "w") {
            Object.assign(step, { ino: there, file: there, empties: true });
          } else {
            step.ino = there;
          }
          handles.set(rec.t, step.ino!);
          break;
        }
        case "pwrite": case "zero": case "punch": case "truncate": {
          const h = (rec as { h?: number }).h;
          const ino = h !== undefined ? handles.get(h) : need((rec as { path: string }).path, rec.op);
          if (ino === undefined) throw new Error(`Recorded ${rec.op} through an unknown handle ${h}`);
          step.file = ino;
          break;
        }
        case "fsync": case "dirsync": {
          const ino = rec.op === "fsync" ? handles.get(rec.h) : need(rec.path, "dirsync");
          if (ino === undefined) throw new Error(`Recorded an fsync through an unknown handle`);
          step.ino = ino;
          let list = this.#syncs.get(ino);
          if (!list) this.#syncs.set(ino, list = []);
          list.push({ t0: rec.t0, t: rec.t });
          break;
        }
        case "mkdir": {
          const ino = this.#nextIno++;
          this.#kinds.set(ino, "dir");
          Object.assign(step, { ino, dirs: [parent(rec.path)], makes: "dir" });
          names.set(rec.path, ino);
          break;
        }
        case "rename": case "link": {
          const ino = need(rec.from, rec.op);
          const dirs = new Set([parent(rec.from), parent(rec.to)]);
          Object.assign(step, { ino, dirs: rec.op === "link" ? [parent(rec.to)] : [...dirs] });
          if (rec.op === "rename") names.delete(rec.from);
          names.set(rec.to, ino);
          break;
        }
        case "unlink": {
          Object.assign(step, { ino: need(rec.path, "unlink"), dirs: [parent(rec.path)] });
          names.delete(rec.path);
          break;
        }
        case "mark":
          break;
      }
      this.steps.push(step);
    }
  }

  /** Reads the logs in `logDir` and resolves them against the tree the recording started from. */
  static read(initial: Snapshot, logDir: string): Recording {
    return new Recording(initial, readOps(logDir));
  }

  /** The last ticket; cuts run from 1 (nothing happened) to last + 1 (everything did). */
  get last(): number {
    return this.steps.length ? this.steps[this.steps.length - 1].t : 0;
  }

  /** Marks (`name`, `value`) whose ticket is below `cut`. */
  marksBefore(cut: number, name: string): number[] {
    return this.steps.filter((s) => s.rec.op === "mark" && s.rec.name === name && s.t < cut).map((s) => (s.rec as { value: number }).value);
  }

  /** True when the change at ticket `t` to inode `ino` is covered by a sync that finished before `cut`. */
  #synced(ino: Ino, t: number, cut: number): boolean {
    for (const s of this.#syncs.get(ino) ?? []) if (s.t0 > t && s.t < cut) return true;
    return false;
  }

  /** Whether a step that happened before `cut` is durable there. */
  durable(step: Step, cut: number): boolean {
    if (step.file !== undefined && !this.#synced(step.file, step.t, cut)) return false;
    if (step.dirs && !step.dirs.every((d) => this.#synced(d, step.t, cut))) return false;
    return true;
  }

  /**
   * Writes into `out` (an empty directory) what the recorded root would hold after power
   * was lost just before ticket `cut`: the durable operations, plus those `keep` chooses
   * among the rest (none for a strict replay). `rand` draws the pages of partial writes.
   * Returns how many not-durable operations were kept.
   */
  async materialize(cut: number, out: string, keep: Keep = () => "none", rand: () => number = Math.random): Promise<number> {
    const names = new Map(this.#initialNames);
    const files = new Map<Ino, FileState>();
    const file = (ino: Ino) => {
      let f = files.get(ino);
      if (!f) {
        const init = this.#initialFiles.get(ino);
        f = init ? { size: init.size, pages: new Map(init.pages) } : { size: 0, pages: new Map() };
        files.set(ino, f);
      }
      return f;
    };
    let kept = 0;
    for (const step of this.steps) {
      if (step.t >= cut) break;
      const { rec } = step;
      if (rec.op === "mark" || rec.op === "fsync" || rec.op === "dirsync") continue;
      if (rec.op === "open" && step.file === undefined && step.dirs === undefined) continue;
      let part = false;
      if (!this.durable(step, cut)) {
        const k = keep({ t: step.t, op: rec.op });
        if (k === "none") continue;
        kept++;
        part = k === "part";
      }
      switch (rec.op) {
        case "open":
          if (step.makes) {
            names.set(rec.path, step.ino!);
            file(step.ino!);
          } else if (step.empties) setSize(file(step.ino!), 0);
          break;
        case "pwrite":
          writeAt(file(step.file!), rec.pos, step.data ?? new Uint8Array(0), part, rand);
          break;
        case "zero":
          writeAt(file(step.file!), rec.pos, new Uint8Array(rec.len), part, rand);
          break;
        case "punch": {
          const f = file(step.file!);
          const len = Math.max(0, Math.min(rec.len, f.size - rec.pos));
          writeAt(f, rec.pos, new Uint8Array(len), part, rand);
          break;
        }
        case "truncate":
          setSize(file(step.file!), rec.len);
          break;
        case "mkdir":
          names.set(rec.path, step.ino!);
          break;
        case "rename":
          names.set(rec.to, step.ino!);
          if (names.get(rec.from) === step.ino) names.delete(rec.from);
          break;
        case "link":
          names.set(rec.to, step.ino!);
          break;
        case "unlink":
          if (names.get(rec.path) === step.ino) names.delete(rec.path);
          break;
      }
    }
    // Only names whose every parent is there: a durable file in a directory whose own name
    // was lost is lost with it.
    const root = this.#initial.root;
    const reachable = (p: string): boolean => {
      for (let d = path.dirname(p); d !== root; d = path.dirname(d)) {
        const ino = names.get(d);
        if (ino === undefined || this.#kinds.get(ino) !== "dir") return false;
        if (d === path.dirname(d)) return false;
      }
      return true;
    };
    const paths = [...names.keys()].filter((p) => p !== root && reachable(p)).sort((a, b) => a.length - b.length);
    for (const p of paths) {
      const target = path.join(out, path.relative(root, p));
      const ino = names.get(p)!;
      if (this.#kinds.get(ino) === "dir") {
        await fs.mkdir(target, { recursive: true });
        continue;
      }
      const f = file(ino);
      const fh = await fs.open(target, "w");
      try {
        await fh.truncate(f.size);
        // Runs of consecutive pages in one write each.
        const order = [...f.pages.keys()].filter((n) => n * PAGE < f.size).sort((a, b) => a - b);
        for (let i = 0; i < order.length;) {
          let j = i + 1;
          while (j < order.length && order[j] === order[j - 1] + 1) j++;
          const run = new Uint8Array((j - i) * PAGE);
          for (let k = i; k < j; k++) run.set(f.pages.get(order[k])!, (k - i) * PAGE);
          const at = order[i] * PAGE;
          await fh.write(run, 0, Math.min(run.byteLength, f.size - at), at);
          i = j;
        }
      } finally {
        await fh.close();
      }
    }
    return kept;
  }
}

function fileFrom(bytes: Uint8Array): FileState {
  const f: FileState = { size: 0, pages: new Map() };
  writeAt(f, 0, bytes, false, Math.random);
  return f;
}

/** Writes `bytes` at `pos`; `part` keeps each page the write touches with even odds (a torn write). */
function writeAt(f: FileState, pos: number, bytes: Uint8Array, part: boolean, rand: () => number): void {
  let wroteEnd = false;
  for (let at = 0; at < bytes.byteLength;) {
    const off = pos + at;
    const n = Math.floor(off / PAGE);
    const inPage = off - n * PAGE;
    const len = Math.min(PAGE - inPage, bytes.byteLength - at);
    if (!part || rand() < 0.5) {
      let page = f.pages.get(n);
      if (!page) f.pages.set(n, page = new Uint8Array(PAGE));
      page.set(bytes.subarray(at, at + len), inPage);
      if (at + len === bytes.byteLength) wroteEnd = true;
    }
    at += len;
  }
  // The size grows with the write's last page (a torn write may keep it or not).
  if ((wroteEnd || !part) && pos + bytes.byteLength > f.size) f.size = pos + bytes.byteLength;
}

function setSize(f: FileState, size: number): void {
  for (const n of [...f.pages.keys()]) {
    if (n * PAGE >= size) f.pages.delete(n);
    else if ((n + 1) * PAGE > size) f.pages.get(n)!.fill(0, size - n * PAGE);
  }
  f.size = size;
}

/** A seeded generator (xorshift32), so a failing replay can be run again. */
export function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

/**
 * `count` cut points, in three tiers. First (up to 40% of them) right after each
 * "committed" mark: a commit just returned, so everything it promised must be durable
 * there and nothing later is. Then (up to 70% in all) right after a rename, before the
 * directory sync that makes it durable: a commit's root switch lands there, and a torn
 * replay keeps the new root with or without the files it names. Then tickets right before
 * and right after a sync, a link, an unlink or a mark (where missing or misordered syncs
 * show), and any ticket at random, to `count`.
 */
export function chooseCuts(rec: Recording, count: number, rand: () => number): number[] {
  const committed: number[] = [];
  const renamed: number[] = [];
  const special = new Set<number>();
  for (const s of rec.steps) {
    if (s.rec.op === "mark" && s.rec.name === "committed") committed.push(s.t + 1);
    if (s.rec.op === "rename") renamed.push(s.t + 1);
    if (["fsync", "dirsync", "rename", "unlink", "link", "mark"].includes(s.rec.op)) {
      special.add(s.t);
      special.add(s.t + 1);
    }
  }
  const want = Math.min(count, rec.last + 1);
  const cuts = new Set<number>();
  const draw = (from: number[], upTo: number) => {
    while (from.length && cuts.size < upTo) cuts.add(from.splice(Math.floor(rand() * from.length), 1)[0]);
  };
  draw(committed, Math.ceil(want * 0.4));
  draw(renamed, Math.ceil(want * 0.7));
  const pool = [...special].filter((t) => !cuts.has(t));
  while (cuts.size < want) {
    if (pool.length && rand() < 0.7) cuts.add(pool.splice(Math.floor(rand() * pool.length), 1)[0]);
    else cuts.add(1 + Math.floor(rand() * (rec.last + 1)));
  }
  return [...cuts].sort((a, b) => a - b);
}
