/**
 * Checking out a layer: writing its merged tree to a host directory, as a runtime needs
 * a rootfs. Modes, mtimes, symlinks and hard links always; owners when the process may
 * (root); device nodes and setuid/setgid bits only when asked, since a checkout as root
 * of an untrusted image would otherwise plant them on the host. Extended attributes are
 * not written (Node and Deno have no call for them) and are reported instead.
 *
 * The root stays 0700 (and, as root, owned by root) until every entry is written, so no
 * other user can reach into the tree while it is incomplete, its setuid files
 * included; only then does it get the layer root's mode, owner and mtime. A checkout
 * that fails part way leaves its root 0700. Entries are written by the
 * {@linkcode HostWriter}: nothing is followed that the checkout did not make.
 *
 * @module
 */
import fsp from "node:fs/promises";
import nodePath from "node:path";
import process from "node:process";
import { hasCode, storeError } from "../common/errors.ts";
import { HostWriter, type HostWriteReport } from "./hostwrite.ts";
import type { MergedView } from "./view.ts";

/** Options of {@linkcode checkout}. */
export interface CheckoutOptions {
  /** Set owners (uid/gid). Default: when running as root. */
  owners?: boolean;
  /** Make block and character device nodes (needs root). Default: no (they are reported). */
  devices?: boolean;
  /** Keep setuid and setgid bits of files. Default: no (they are dropped and reported). */
  keepSetid?: boolean;
  /**
   * Called as file data is written: bytes so far, and the total, which is not known
   * ahead (always 0: the merged tree is walked as it is written).
   */
  onProgress?: (done: number, total: number) => void;
}

/** What a checkout did: entries written (the root excluded), and one line per thing left out. */
export type CheckoutReport = HostWriteReport;

/** The mode a root gets when the view has none for it. */
const ROOT_MODE = 0o755;

/** Makes `dir` (parents as needed) or takes it if it is an empty directory; it is 0700 and the caller's after. */
async function makeRoot(dir: string, asRoot: boolean): Promise<string> {
  await fsp.mkdir(nodePath.dirname(nodePath.resolve(dir)), { recursive: true });
  try {
    await fsp.mkdir(dir, { mode: 0o700 });
  } catch (e) {
    if (!hasCode(e, "EEXIST")) throw e;
    if ((await fsp.readdir(dir)).length) throw storeError("ENOTEMPTY", "checkout", dir, "check out into an empty or new directory");
    // Its owner could open it up again while the tree is written.
    if (asRoot) await fsp.chown(dir, 0, 0);
    await fsp.chmod(dir, 0o700);
  }
  // Entries go below the real directory: a symlink the caller named is resolved once, here.
  return await fsp.realpath(dir);
}

/**
 * Writes the merged tree of `view` into `dir`, which must be absent or empty, and then
 * gives `dir` the mode, owner (with `owners`) and mtime of the view's root.
 *
 * @example
 * ```ts ignore
 * const report = await checkout(store.view("app"), "/run/app/rootfs", { devices: true });
 * for (const line of report.skipped) console.warn(line);
 * ```
 */
export async function checkout(view: MergedView, dir: string, options: CheckoutOptions = {}): Promise<CheckoutReport> {
  const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const root = await makeRoot(dir, asRoot);
  let bytes = 0;
  const progress = options.onProgress;
  const w = new HostWriter(view, {
    op: "checkout",
    owners: options.owners ?? asRoot,
    devices: options.devices ?? false,
    keepSetid: options.keepSetid ?? false,
    replace: false,
    onData: progress && ((n) => progress(bytes += n, 0)),
  });
  await w.writeChildren("/", root);
  await w.finish();
  const top = await view.lstat("/");
  if (top?.type === "dir") await w.setDirAttrs(root, top);
  else await fsp.chmod(root, ROOT_MODE);
  return w.report;
}
