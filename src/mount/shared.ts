/**
 * Changes that arrive on a shared node (one file version of a committed layer that
 * several served layers see through one node). The kernel's request names the node, not
 * the layer the caller went through, yet the change must copy the file up in that layer
 * alone and must not touch what the kernel caches for the node (its attributes, its
 * pages), which stays right for every other layer.
 *
 * Which layer:
 * 1. If every name the kernel holds for the node (from LOOKUP and READDIRPLUS replies,
 *    which the node table records) is in one served layer, it is that layer: a path
 *    can only reach the node through a name the kernel got from us.
 * 2. Otherwise the request fails with ESTALE and the server notes the caller (the
 *    thread id the request carries). Path-based calls (open, chmod, truncate, setxattr,
 *    utimensat, ...) retry once on ESTALE with every name looked up afresh
 *    (LOOKUP_REVAL); the retry's LOOKUP, from the same thread and finding the same node,
 *    comes through a directory node, which belongs to one layer: the file is copied up
 *    there and the LOOKUP answers with the copy's own node, so the retried call lands on
 *    it. A call on a descriptor (fchmod of a file opened read-only) does not retry: it
 *    fails with ESTALE when the node is known in several layers.
 *
 * What then: an OPEN for writing copies the file up and fails with ESTALE once more, so
 * the retried open lands on the copy's node and its writes never enter the shared
 * node's page cache (a second arrival, when no retry can switch nodes, gets a direct-I/O
 * handle on the copy). SETATTR, SETXATTR and REMOVEXATTR are applied to the copy and
 * answered with the shared version's unchanged attributes. Either way the layer's other
 * names for the node (hardlinks) are invalidated, so the kernel looks them up again and
 * finds the copy.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { Ino } from "../layers/inode.ts";
import type { Layer } from "../layers/layer.ts";
import type { FoundNode } from "../layers/nodes.ts";
import { Reply, type Request } from "./codec.ts";
import { type FuseNode, readOnly, type ServedLayer } from "./nodetable.ts";
import { Notify, Op, OP_NAMES, Size } from "./protocol.ts";
import type { Session } from "./session.ts";

/** Requests a path walk makes before the call it walks for: they keep a caller's notes. */
const WALKING = new Set<number>([Op.LOOKUP, Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT, Op.GETATTR, Op.READLINK, Op.ACCESS]);

/** What a caller's retry found: the shared node, the layer, and whether it was already redirected. */
export interface Carried {
  node: number;
  served: ServedLayer;
  redirected: boolean;
}

/**
 * The redirection state of one session. Notes are per caller thread and last until the
 * caller's next request that is not part of a path walk, which may use them.
 *
 * @example
 * ```ts ignore
 * const served = s.shared.target(req, node); // a layer, or throws ESTALE / EROFS
 * ```
 */
export class SharedWrites {
  /** Callers whose change to a shared node failed with ESTALE: thread id → node id. */
  readonly #pending = new Map<number, number>();
  /** What a caller's next request may use: thread id → what its retry found. */
  readonly #carried = new Map<number, Carried>();

  constructor(readonly s: Session) {}

  /** Called for every request before its handler: hands the caller's notes to it, or keeps them during a walk. */
  arrived(req: Request): void {
    if (WALKING.has(req.opcode)) return;
    const c = this.#carried.get(req.pid);
    if (c) {
      req.carried = c;
      this.#carried.delete(req.pid);
    }
    this.#pending.delete(req.pid);
  }

  /**
   * A LOOKUP in `parent` found `found`. When the caller is retrying a change to that
   * shared version, copy it up in the parent's layer and answer with the copy.
   */
  async onLookup(req: Request, parent: FuseNode, found: FoundNode): Promise<FoundNode> {
    const id = this.#pending.get(req.pid);
    if (id === undefined || !found.holder.frozen) return found;
    const node = this.s.table.sharedNode(found.holder, found.ino);
    if (!node || node.id !== id) return found;
    this.#pending.delete(req.pid);
    const served = parent.served!;
    this.#carried.set(req.pid, { node: node.id, served, redirected: true });
    if (served.readOnly) return found;
    const done = this.watch(served, [found.ino]);
    const copy = await served.nodes.copyUp(found.ino);
    done();
    return copy;
  }

  /**
   * The served layer a change to shared node `node` is for; EROFS when it is read-only;
   * ESTALE (the caller noted, see the module doc) when it cannot be told yet.
   */
  target(req: Request, node: FuseNode): ServedLayer {
    const syscall = OP_NAMES[req.opcode]?.toLowerCase() ?? "change";
    const c = req.carried as Carried | undefined;
    let served: ServedLayer | undefined;
    if (c && c.node === node.id) served = c.served;
    else {
      const layers = new Set([...node.dentries?.values() ?? []].map((d) => d.served));
      if (layers.size === 1) served = [...layers][0];
    }
    if (!served) {
      this.#pending.set(req.pid, node.id);
      this.#prune();
      throw storeError("ESTALE", syscall, `node ${node.id}`, "the file is shared by several layers; the kernel retries through a fresh lookup");
    }
    if (served.readOnly) throw readOnly(served, syscall);
    return served;
  }

  /**
   * For an OPEN for writing of shared `node` in `served`: true the first time (the
   * caller copies up and answers ESTALE, so the open is retried and lands on the copy's
   * node), false when the caller comes back to the same node (open with direct I/O then).
   */
  firstOpen(req: Request, node: FuseNode, served: ServedLayer): boolean {
    const c = req.carried as Carried | undefined;
    if (c && c.node === node.id && c.redirected) return false;
    this.#carried.set(req.pid, { node: node.id, served, redirected: true });
    this.#prune();
    return true;
  }

  /**
   * Notes which of `inos` `served` does not hold yet; the returned function, called
   * after a change, invalidates the kernel's names in `served` for those the change
   * copied up (their shared nodes no longer show what the layer sees).
   */
  watch(served: ServedLayer, inos: (Ino | undefined)[]): () => void {
    if (!this.s.options.share) return () => {};
    const layer = served.nodes.layer;
    const before: [Ino, Layer][] = [];
    for (const ino of inos) {
      if (!ino || layer.tables.inodes.has(ino)) continue;
      try {
        before.push([ino, served.nodes.holder(ino)]);
      } catch {
        // not visible in the layer: nothing of it can be copied up
      }
    }
    return () => {
      for (const [ino, holder] of before) {
        const node = this.s.table.sharedNode(holder, ino);
        if (!node) continue;
        // The kernel adjusts the link count and ctime it caches for the node after an
        // unlink, link or rename; they stay right for the other layers only if it asks again.
        this.invalidateAttrs(node);
        if (layer.tables.inodes.has(ino)) this.invalidate(node, served);
      }
    };
  }

  /** Invalidates the kernel's names for shared `node` in `served` (asynchronously; never awaited by a request). */
  invalidate(node: FuseNode, served: ServedLayer): void {
    for (const [key, d] of node.dentries ?? []) {
      if (d.served !== served) continue;
      node.dentries!.delete(key);
      const name = new TextEncoder().encode(d.name);
      const r = Reply.of(Size.NOTIFY_INVAL_ENTRY + name.byteLength + 1);
      r.u64(d.parent).u32(name.byteLength).u32(0).raw(name).pad(1);
      void this.s.device.notify(Notify.INVAL_ENTRY, r);
    }
  }

  /** Makes the kernel fetch a node's attributes again (its pages stay cached). */
  invalidateAttrs(node: FuseNode): void {
    const r = Reply.of(Size.NOTIFY_INVAL_INODE);
    r.u64(node.id).u64(-1).u64(0);
    void this.s.device.notify(Notify.INVAL_INODE, r);
  }

  /** Threads come and go: keep the notes bounded. */
  #prune(): void {
    if (this.#pending.size > 4096) this.#pending.clear();
    if (this.#carried.size > 4096) this.#carried.clear();
  }
}
