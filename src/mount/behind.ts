/**
 * Changes made behind a mount: through the store's path API (`store.fs(key)` and its
 * file handles) on a layer the connection serves. The kernel caches the layer's names,
 * attributes and listings for `activeTimeout` and keeps file pages across opens, all
 * kept right by the changes it makes itself; of these it hears nothing, so the mount's
 * hold on the layer (holds.ts) tells it here:
 *
 * - for each name the change touched, the kernel's node of its directory (if it holds
 *   one) gets INVAL_ENTRY for the name and INVAL_INODE for its listing and attributes;
 * - the nodes of what the name led to before and after the change get INVAL_INODE
 *   (attributes and every page), and an unshared file whose last link went keeps what
 *   it was (`FuseNode.gone`) for the descriptors still open on it;
 * - a shared node (a committed file version several layers see) keeps its attributes
 *   and pages, which stay right for the others: this layer's names for it are dropped
 *   instead, so the next lookup here finds what the layer now has;
 * - a directory that moved takes the paths of the nodes below it along.
 *
 * The notifications go out through the device's notifier (they may wait in the kernel
 * on a directory lock a request of ours holds: the server keeps answering meanwhile).
 * The store's lock is released by then; the call that made the change waits until the
 * kernel has taken them, at most {@link BEHIND_MS}, so a program started after it
 * returns sees the change.
 *
 * @module
 */
import type { LayerChange } from "../layers/holds.ts";
import type { Ino } from "../layers/inode.ts";
import { Reply } from "./codec.ts";
import type { FuseNode, ServedLayer } from "./nodetable.ts";
import { Notify, Size } from "./protocol.ts";
import type { Session } from "./session.ts";

/**
 * The longest a path-API change waits for its invalidations. Nothing of ours waits on
 * the store here, so they land as soon as the kernel takes them; the bound is for a
 * kernel lock held by something that waits on the caller itself.
 */
const BEHIND_MS = 2000;

/**
 * Tells the kernel of `change`, made behind the mount to `served`; resolves once it has
 * taken the notifications, or after {@link BEHIND_MS}.
 *
 * @example
 * ```ts ignore
 * store.hold(key, { reason, changed: (c) => changedBehind(session, served, c) });
 * ```
 */
export async function changedBehind(s: Session, served: ServedLayer, change: LayerChange): Promise<void> {
  const sent: Promise<void>[] = [];
  const inval = (node: FuseNode) => sent.push(invalidateInode(s, node));
  if ("ino" in change) {
    const node = s.table.fileNode(served, change.ino);
    if (node) inval(node);
  } else {
    if (change.moved) s.table.moved(served, change.moved.from, change.moved.to);
    const done = new Set<FuseNode>();
    const once = (node: FuseNode | undefined) => {
      if (!node || done.has(node)) return;
      done.add(node);
      inval(node);
    };
    for (const n of change.names) {
      const dir = s.table.dirNode(served, n.dirIno);
      if (dir && n.name !== "") {
        sent.push(invalidateEntry(s, dir.id, n.name));
        once(dir);
      }
      for (const ino of new Set([n.before, n.after])) {
        if (!ino) continue;
        const own = s.table.dirNode(served, ino) ?? s.table.fileNode(served, ino);
        if (own) {
          if (ino === n.before && n.after !== n.before && n.was && own.kind === "file" && !own.gone) await s.lastLinkGone(served, ino, n.was);
          once(own);
        }
        for (const node of sharedNodes(s, served, ino)) sent.push(s.shared.invalidate(node, served));
      }
    }
  }
  if (sent.length === 0) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([Promise.all(sent), new Promise<void>((resolve) => (timer = setTimeout(resolve, BEHIND_MS)))]);
  clearTimeout(timer);
}

/** The shared nodes the kernel holds for versions of `ino` in the layers below `served`'s. */
function sharedNodes(s: Session, served: ServedLayer, ino: Ino): FuseNode[] {
  if (!s.options.share) return [];
  const found: FuseNode[] = [];
  for (let l = served.nodes.layer.parent; l; l = l.parent) {
    const node = s.table.sharedNode(l, ino);
    if (node) found.push(node);
  }
  return found;
}

/** INVAL_ENTRY: the kernel drops its name `name` in directory node `parent` (and what it caches below). */
function invalidateEntry(s: Session, parent: number, name: string): Promise<void> {
  const bytes = new TextEncoder().encode(name);
  const r = Reply.of(Size.NOTIFY_INVAL_ENTRY + bytes.byteLength + 1);
  r.u64(parent).u32(bytes.byteLength).u32(0).raw(bytes).pad(1);
  return s.device.notify(Notify.INVAL_ENTRY, r);
}

/** INVAL_INODE from offset 0, length 0: the node's attributes and all its pages (a directory's listing). */
function invalidateInode(s: Session, node: FuseNode): Promise<void> {
  const r = Reply.of(Size.NOTIFY_INVAL_INODE);
  r.u64(node.id).u64(0).u64(0);
  return s.device.notify(Notify.INVAL_INODE, r);
}
