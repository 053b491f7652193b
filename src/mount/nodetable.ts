/**
 * The server's node ids: what each id the kernel holds stands for, and how many lookups
 * of it the kernel has not forgotten yet (a node goes when that count reaches zero).
 *
 * Node identity:
 * - a directory is one node per served layer (its listing depends on the layer), named
 *   by its canonical path there, which a rename of it or of a parent rewrites;
 * - a file whose version is held by a committed layer is **shared**: one node wherever
 *   that version appears (every container of an image gets the same node for an
 *   unchanged image file, so the kernel keeps one copy of it in the page cache);
 * - any other file (created or copied up in an active layer, or anything in a
 *   connection that serves a single layer) is one node per served layer and inode.
 *
 * For shared nodes the table also remembers the names the kernel may have cached for
 * them (from lookups and READDIRPLUS), so that when a layer copies such a file up, the
 * server can invalidate that layer's names and the kernel looks them up again.
 *
 * @module
 */
import type { Ino, Inode } from "../layers/inode.ts";
import type { Layer } from "../layers/layer.ts";
import type { LayerNodes } from "../layers/nodes.ts";
import { isWithin, type LayerPath } from "../layers/path.ts";
import { storeError } from "../common/errors.ts";
import { ROOT_ID } from "./protocol.ts";

/** A layer a server serves. */
export interface ServedLayer {
  /** The layer's key or name in the store. */
  readonly key: string;
  /** Its directory's name in a served root (see names.ts). */
  readonly name: string;
  readonly nodes: LayerNodes;
  /** Changes are refused with EROFS (a view, a committed layer, or mounted read-only). */
  readonly readOnly: boolean;
}

/** The EROFS of a change to a read-only served layer. */
export function readOnly(served: ServedLayer, syscall: string): Error {
  const kind = served.nodes.layer.record.kind;
  const why = kind === "active" ? "is mounted read-only" : kind === "view" ? "is a view" : "is committed";
  return storeError("EROFS", syscall, served.key, `layer '${served.key}' ${why}`);
}

/** A name the kernel may have cached for a shared node. */
export interface Dentry {
  parent: number;
  name: string;
  served: ServedLayer;
}

/** What a node id stands for. */
export interface FuseNode {
  readonly id: number;
  readonly kind: "root" | "dir" | "file";
  readonly ino: Ino;
  /** Where reads resolve the inode: the holding layer of a shared file, else the served layer's layer (none for a served root). */
  readonly layer: Layer | undefined;
  /** The served layer a directory or an unshared file is in; for a shared file, the first that looked it up. */
  readonly served: ServedLayer | undefined;
  readonly shared: boolean;
  /** A directory's canonical path in its layer. */
  path: LayerPath;
  /** Lookups the kernel has not forgotten. */
  nlookup: number;
  /** A shared node's names the kernel may hold, keyed `parent/name`. */
  dentries?: Map<string, Dentry>;
  /**
   * An unshared file whose last link went while the kernel still holds its node: what
   * it was, so the attribute requests that still come for it (the writeback cache
   * flushing its times at syncfs) are answered as a local file system answers them for
   * an unlinked inode that is still referenced, instead of ENOENT.
   */
  gone?: Inode;
}

/**
 * The node ids of one connection.
 *
 * @example
 * ```ts ignore
 * const table = new NodeTable();
 * const dir = table.dir(served, ino, "/etc");
 * table.counted(dir); // a lookup reply named it
 * table.forget(dir.id, 1);
 * ```
 */
export class NodeTable {
  readonly #byId = new Map<number, FuseNode>();
  readonly #shared = new Map<string, FuseNode>();
  readonly #perServed = new Map<ServedLayer, Map<string, FuseNode>>();
  #next = ROOT_ID + 1;

  /** The node of a served root listing layers (node 1). */
  setRoot(node: Omit<FuseNode, "id" | "nlookup">): FuseNode {
    const n: FuseNode = { ...node, id: ROOT_ID, nlookup: 1 };
    this.#byId.set(ROOT_ID, n);
    if (n.served && n.kind === "dir") this.#map(n.served).set(`d${n.ino}`, n);
    return n;
  }

  /** The node `id`, if the kernel still holds it. */
  get(id: number): FuseNode | undefined {
    return this.#byId.get(id);
  }

  /** Nodes the kernel holds. */
  get size(): number {
    return this.#byId.size;
  }

  /** The node of directory `ino` at `path` in `served` (made if new, not counted). */
  dir(served: ServedLayer, ino: Ino, path: LayerPath): FuseNode {
    const map = this.#map(served);
    let n = map.get(`d${ino}`);
    if (n) {
      n.path = path;
      return n;
    }
    n = this.#add({ kind: "dir", ino, layer: served.nodes.layer, served, shared: false, path });
    map.set(`d${ino}`, n);
    return n;
  }

  /** The node of a file: shared when `holder` is committed and `share` is on. */
  file(served: ServedLayer, ino: Ino, holder: Layer, share: boolean): FuseNode {
    if (share && holder.frozen) {
      const key = `${holder.id}:${ino}`;
      let n = this.#shared.get(key);
      if (!n) {
        n = this.#add({ kind: "file", ino, layer: holder, served, shared: true, path: "", dentries: new Map() });
        this.#shared.set(key, n);
      }
      return n;
    }
    const map = this.#map(served);
    let n = map.get(`f${ino}`);
    if (!n) {
      n = this.#add({ kind: "file", ino, layer: served.nodes.layer, served, shared: false, path: "" });
      map.set(`f${ino}`, n);
    }
    return n;
  }

  /** The node of directory `ino` in `served`, if the kernel holds one (made by nothing). */
  dirNode(served: ServedLayer, ino: Ino): FuseNode | undefined {
    return this.#perServed.get(served)?.get(`d${ino}`);
  }

  /** The unshared node of file `ino` in `served`, if the kernel holds one. */
  fileNode(served: ServedLayer, ino: Ino): FuseNode | undefined {
    return this.#perServed.get(served)?.get(`f${ino}`);
  }

  /** The shared node of `holder`'s version of `ino`, if the kernel holds one. */
  sharedNode(holder: Layer, ino: Ino): FuseNode | undefined {
    return this.#shared.get(`${holder.id}:${ino}`);
  }

  /** Counts one more lookup of `node` (a reply that names it). */
  counted(node: FuseNode): FuseNode {
    node.nlookup++;
    return node;
  }

  /** Records a name the kernel now caches for a shared node. */
  sawName(node: FuseNode, parent: FuseNode, name: string): void {
    if (!node.dentries || !parent.served) return;
    node.dentries.set(`${parent.id}/${name}`, { parent: parent.id, name, served: parent.served });
  }

  /** The kernel forgot `n` lookups of node `id`. */
  forget(id: number, n: number): void {
    const node = this.#byId.get(id);
    if (!node || id === ROOT_ID) return;
    node.nlookup -= n;
    if (node.nlookup > 0) return;
    this.#byId.delete(id);
    if (node.shared) this.#shared.delete(`${node.layer!.id}:${node.ino}`);
    else if (node.served) {
      const map = this.#perServed.get(node.served);
      const key = `${node.kind === "dir" ? "d" : "f"}${node.ino}`;
      if (map?.get(key) === node) map.delete(key);
    }
  }

  /** A directory moved from `from` to `to` in `served`: its node and those below it follow. */
  moved(served: ServedLayer, from: LayerPath, to: LayerPath): void {
    for (const n of this.#map(served).values()) {
      if (n.kind === "dir" && isWithin(n.path, from)) n.path = to + n.path.slice(from.length);
    }
  }

  #map(served: ServedLayer): Map<string, FuseNode> {
    let m = this.#perServed.get(served);
    if (!m) this.#perServed.set(served, m = new Map());
    return m;
  }

  #add(n: Omit<FuseNode, "id" | "nlookup">): FuseNode {
    const node: FuseNode = { ...n, id: this.#next++, nlookup: 0 };
    this.#byId.set(node.id, node);
    return node;
  }
}
