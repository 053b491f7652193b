/**
 * One FUSE connection's state and its dispatch: the node table, open handles, the layers
 * served, the timeouts, and the table of opcode handlers (registered by the files in
 * `ops/`). Each request is parsed, handed to its handler, and answered with what the
 * handler returns or the errno of what it throws (the layer store's Node-style codes).
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import { storeError } from "../common/errors.ts";
import { allocatedBytes } from "../layers/fileio.ts";
import type { LayerFileHandle } from "../layers/filehandle.ts";
import { type Ino, type Inode, isDir, PAGE, S_IFDIR } from "../layers/inode.ts";
import type { Layer } from "../layers/layer.ts";
import type { LayerStore } from "../layers/store.ts";
import type { FoundNode } from "../layers/nodes.ts";
import { join } from "../layers/path.ts";
import { type Attr, Reply, Request } from "./codec.ts";
import type { FuseDevice } from "./device.ts";
import { type FuseNode, NodeTable, readOnly, type ServedLayer } from "./nodetable.ts";
import { SharedWrites } from "./shared.ts";
import { Errno, errnoOf, OP_NAMES, ROOT_ID, Size } from "./protocol.ts";

/** An open file. */
export interface OpenFile {
  kind: "file";
  node: FuseNode;
  file: LayerFileHandle;
  /** The layer the handle reads the file through. */
  layer: Layer;
  /** The served layer a writing handle writes in. */
  served?: ServedLayer;
  writable: boolean;
}

/** An open directory: its listing as of the first read (or the last rewind). */
export interface OpenDir {
  kind: "dir";
  node: FuseNode;
  entries?: [string, Ino][];
}

/** A READ's bytes, and what to do with them once written to the kernel (give their buffer back for reuse). */
export class DataAnswer {
  constructor(readonly bytes: Uint8Array, readonly sent: () => void) {}
}

/** What a handler answers: a reply, a READ's bytes, or nothing for requests that get none (FORGET). */
export type Answer = Reply | Uint8Array | DataAnswer | undefined;
/** Handles one opcode. */
export type Handler = (req: Request) => Answer | Promise<Answer>;

/** How a session serves. */
export interface SessionOptions {
  /** Seconds the kernel may cache names and attributes of active layers. */
  activeTimeout: number;
  /** Seconds for views and committed layers, which never change. */
  frozenTimeout: number;
  /** Largest WRITE (and READ) request, in bytes. */
  maxWrite: number;
  /** Ask for the kernel's writeback cache (buffered writes flushed in large requests). */
  writeback: boolean;
  /** Give files of committed layers one node across served layers (a served root of many layers). */
  share: boolean;
  /** Called for requests that fail with an error that is not the store's (a bug): a log line. */
  onError?: (line: string) => void;
}

/**
 * The state of one connection.
 *
 * @example
 * ```ts ignore
 * const s = new Session(store, device, options);
 * registerEntries(s); registerFiles(s); // ...
 * await device.serve((buf, done) => s.onRequest(buf, done));
 * ```
 */
export class Session {
  readonly table = new NodeTable();
  readonly handles = new Map<number, OpenFile | OpenDir>();
  readonly handlers = new Map<number, Handler>();
  /** Requests seen per opcode (for measurements and tests). */
  readonly counts = new Map<string, number>();
  /** Requests being handled, and whether the kernel interrupted them. */
  readonly inflight = new Map<number, { interrupted: boolean }>();
  /** Layers of a served root, by entry name (empty when one layer is the root). */
  readonly layers = new Map<string, ServedLayer>();
  /** The layer at the root, when the connection serves one layer. */
  single: ServedLayer | undefined;
  /** What INIT settled: the kernel's minor version and the flags both sides have. */
  conn = { minor: 0, flags: 0, maxWrite: 0 };
  /** Changes arriving on shared nodes (see shared.ts). */
  readonly shared: SharedWrites = new SharedWrites(this);
  #nextFh = 1;
  #initialized!: () => void;
  /** Settles when INIT has been answered. */
  readonly initialized: Promise<void> = new Promise((resolve) => (this.#initialized = resolve));

  constructor(readonly store: LayerStore, readonly device: FuseDevice, readonly options: SessionOptions) {}

  /** INIT was answered: the connection is ready. */
  ready(): void {
    this.#initialized();
  }

  /** Handles one request read from the device; `done` once its bytes are not needed. */
  onRequest(buf: Buffer, done: () => void): void {
    let req: Request;
    try {
      req = new Request(buf);
    } catch {
      done();
      return;
    }
    if (this.options.share) this.shared.arrived(req);
    const name = OP_NAMES[req.opcode] ?? String(req.opcode);
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    const handler = this.handlers.get(req.opcode);
    if (!handler) {
      done();
      this.device.replyError(req.unique, Errno.ENOSYS);
      return;
    }
    const state = { interrupted: false };
    this.inflight.set(req.unique, state);
    const finish = (answer: Answer | Error) => {
      this.inflight.delete(req.unique);
      done();
      if (answer instanceof Error) this.#fail(req, answer);
      else if (answer instanceof Reply) this.device.reply(req.unique, answer);
      else if (answer instanceof DataAnswer) {
        this.device.replyData(req.unique, answer.bytes, (e) => {
          answer.sent();
          if (e) this.options.onError?.(`READ reply to node ${req.nodeid}: ${e.stack ?? e.message}`);
        });
      } else if (answer) this.device.replyData(req.unique, answer);
    };
    try {
      const out = handler(req);
      if (out instanceof Promise) out.then(finish, (e) => finish(e instanceof Error ? e : new Error(String(e))));
      else finish(out);
    } catch (e) {
      finish(e instanceof Error ? e : new Error(String(e)));
    }
  }

  #fail(req: Request, e: Error): void {
    const errno = errnoOf(e);
    if ((e as { code?: unknown }).code === undefined) this.options.onError?.(`${OP_NAMES[req.opcode]} of node ${req.nodeid}: ${e.stack ?? e.message}`);
    this.device.replyError(req.unique, errno);
  }

  /** The node a request is about; ESTALE for one the kernel should not hold. */
  node(req: Request, id = req.nodeid): FuseNode {
    const n = this.table.get(id);
    if (!n) throw storeError("ESTALE", OP_NAMES[req.opcode]?.toLowerCase() ?? "request", `node ${id}`, "the kernel named a node the server does not know");
    return n;
  }

  /** The directory node a request is about (ENOTDIR for a file). */
  dir(req: Request, id = req.nodeid): FuseNode {
    const n = this.node(req, id);
    if (n.kind === "file") throw storeError("ENOTDIR", OP_NAMES[req.opcode]?.toLowerCase() ?? "request", `node ${id}`);
    return n;
  }

  /** The served layer of directory node `dir`, refusing the served root (EPERM) and read-only layers (EROFS) for changes. */
  changing(dir: FuseNode, syscall: string): ServedLayer {
    if (dir.kind === "root" || !dir.served) throw storeError("EPERM", syscall, "/", "the served root holds layers; change files inside one of them");
    if (dir.served.readOnly) throw readOnly(dir.served, syscall);
    return dir.served;
  }

  /** A new file handle number for `h`. */
  open(h: OpenFile | OpenDir): number {
    const fh = this.#nextFh++;
    this.handles.set(fh, h);
    return fh;
  }

  /** Seconds the kernel may keep a name (`entry`) and attributes (`attr`) of a node in `served`. */
  timeouts(served: ServedLayer | undefined, node?: FuseNode): { entry: number; attr: number } {
    if (!served || served.nodes.layer.frozen) return { entry: this.options.frozenTimeout, attr: this.options.frozenTimeout };
    // A committed layer's version of a file never changes: only the name may.
    if (node?.shared) return { entry: this.options.activeTimeout, attr: this.options.frozenTimeout };
    return { entry: this.options.activeTimeout, attr: this.options.activeTimeout };
  }

  /**
   * The node for what `parent`/`name` leads to, counted as looked up (the caller replies
   * with it), and the reply: fuse_entry_out.
   */
  entry(parent: FuseNode, name: string, found: FoundNode): Reply {
    return this.entryNode(parent, name, found).reply;
  }

  /** {@linkcode entry}, with the node it names. */
  entryNode(parent: FuseNode, name: string, found: FoundNode): { node: FuseNode; reply: Reply } {
    const served = parent.served!;
    const node = isDir(found.inode.mode)
      ? this.table.dir(served, found.ino, join(parent.path, name))
      : this.table.file(served, found.ino, found.holder, this.options.share);
    this.table.counted(node);
    if (node.shared) this.table.sawName(node, parent, name);
    const t = this.timeouts(served, node);
    return { node, reply: Reply.of(Size.ENTRY_OUT).entry(node.id, t.entry, t.attr, attrOf(found.ino, found.inode)) };
  }

  /** The node of a served layer's root directory (the entry of the served root). */
  layerRoot(served: ServedLayer): FuseNode {
    return this.table.dir(served, served.nodes.root, "/");
  }

  /** The attributes of a node as its layer sees them now. */
  async attr(node: FuseNode): Promise<Attr> {
    if (node.kind === "root") return this.rootAttr();
    const inode = await this.inode(node);
    return attrOf(node.ino, inode);
  }

  /**
   * The inode a node stands for now: a shared node's fixed version, else what its layer
   * sees, else (its last link gone) what it was. ENOENT when none of these.
   */
  async inode(node: FuseNode): Promise<Inode> {
    const nodes = node.served!.nodes;
    const inode = node.shared ? await nodes.held(node.layer!, node.ino) : (await nodes.stat(node.ino))?.inode ?? node.gone;
    if (!inode) throw storeError("ENOENT", "stat", `node ${node.id}`, "the file is gone");
    return inode;
  }

  /**
   * After an unlink or a rename over it: if `ino` (which was `before`) lost its last
   * link and the store freed it while the kernel still holds its node, keep what it was
   * on the node (see `FuseNode.gone`).
   */
  async lastLinkGone(served: ServedLayer, ino: Ino, before: Inode): Promise<void> {
    const node = this.table.fileNode(served, ino);
    if (!node || (await served.nodes.stat(ino))) return;
    node.gone = { ...before, nlink: 0, ctimeMs: Date.now(), xattrs: before.xattrs && new Map(before.xattrs) };
  }

  /** The attributes of a served root listing layers. */
  rootAttr(): Attr {
    const now = Date.now();
    return {
      ino: ROOT_ID, size: 0, blocks: 0, atimeMs: now, mtimeMs: now, ctimeMs: now, mode: S_IFDIR | 0o755,
      nlink: 2 + this.layers.size, uid: 0, gid: 0, rdev: 0, blksize: PAGE,
    };
  }

  /** Commits the store: what fsync and syncfs make durable. */
  async sync(): Promise<void> {
    await this.store.sync();
  }
}

/** The fuse_attr of an inode. */
export function attrOf(ino: Ino, inode: Inode): Attr {
  return {
    ino, size: inode.size, blocks: inode.inline ? Math.ceil(inode.size / 512) : allocatedBytes(inode) / 512,
    atimeMs: inode.atimeMs, mtimeMs: inode.mtimeMs, ctimeMs: inode.ctimeMs, mode: inode.mode, nlink: Math.max(0, inode.nlink),
    uid: inode.uid, gid: inode.gid, rdev: inode.rdev >>> 0, blksize: PAGE,
  };
}
