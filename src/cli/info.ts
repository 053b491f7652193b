/**
 * What `thinstack info` and `thinstack status` print: the fields `docker info` shows for
 * the devicemapper driver, in its order, and dm-thin's pool status line.
 *
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { formatBytes } from "../common/units.ts";
import type { Pool } from "../pool/pool.ts";
import { METADATA_DIR } from "../pool/pool.ts";
import { MetaStore } from "../pool/metastore.ts";
import { checkPoolRecord } from "../pool/persist.ts";

/** The package version, reported as the Library Version. */
export const VERSION = "0.1.0";

/** The file system type holding `p`, from /proc/mounts (Linux); "unknown" elsewhere. */
export function backingFilesystem(p: string): string {
  try {
    const real = fs.realpathSync(p);
    let best = { mount: "", type: "unknown" };
    for (const line of fs.readFileSync("/proc/mounts", "utf8").split("\n")) {
      const [, mount, type] = line.split(" ");
      if (!mount) continue;
      const m = mount.replace(/\\040/g, " ");
      if ((real === m || real.startsWith(m.endsWith("/") ? m : m + "/")) && m.length >= best.mount.length) best = { mount: m, type };
    }
    return best.type;
  } catch {
    return "unknown";
  }
}

/** Bytes free for an unprivileged user on the file system holding `p`. */
export function hostFree(p: string): number {
  const s = fs.statfsSync(p);
  return Number(s.bavail) * Number(s.bsize);
}

/** Docker's pool name: docker-MAJ:MIN-INO-pool, from the store directory's device and inode. */
export function poolName(root: string): string {
  const st = fs.statSync(root);
  const major = Math.floor(st.dev / 256) & 0xfff;
  const minor = (st.dev & 0xff) | ((st.dev >> 12) & 0xfff00);
  return `thinstack-${major}:${minor}-${st.ino}-pool`;
}

/** The `info` fields, in docker's order. */
export function infoFields(pool: Pool, root: string, baseSize: number): [string, string][] {
  const s = pool.status();
  const bs = s.blockSize;
  const dataTotal = s.dataBlocks.total * bs;
  const dataUsed = s.dataBlocks.used * bs;
  // A sparse file cannot outgrow its disk: never claim more than the host has free.
  // (A data device's space is its own: the host's file system does not bound it.)
  const available = Math.max(0, pool.dataDevice !== undefined ? dataTotal - dataUsed : Math.min(dataTotal - dataUsed, hostFree(pool.dir)));
  const metaAvailable = Math.max(0, Math.min(s.metadataBytes.total - s.metadataBytes.used, hostFree(pool.dir)));
  return [
    ["Pool Name", poolName(root)],
    ["Pool Blocksize", formatBytes(bs)],
    ["Base Device Size", formatBytes(baseSize)],
    ["Backing Filesystem", backingFilesystem(pool.dir)],
    ["Data file", pool.dataFile],
    ["Metadata file", path.join(pool.dir, METADATA_DIR)],
    ["Data Space Used", formatBytes(dataUsed)],
    ["Data Space Total", formatBytes(dataTotal)],
    ["Data Space Available", formatBytes(available)],
    ["Metadata Space Used", formatBytes(s.metadataBytes.used)],
    ["Metadata Space Total", formatBytes(s.metadataBytes.total)],
    ["Metadata Space Available", formatBytes(metaAvailable)],
    ["Thin Pool Minimum Free Space", formatBytes(Math.ceil(s.dataBlocks.total * s.settings.minFreeSpacePercent / 100) * bs)],
    ["Deferred Removal Enabled", "true"],
    ["Deferred Deletion Enabled", "true"],
    ["Deferred Deleted Device Count", String(s.deferredDeletes)],
    // Not a docker field: shown only when a deferred deletion failed.
    ...s.deferredDeleteErrors.map((e): [string, string] => ["Deferred Delete Error", `device ${e.device} (${e.time}): ${e.message.split("\n")[0]}`]),
    ["Library Version", `thinstack ${VERSION}`],
  ];
}

/** What the status line is made of: a pool's status, or what the metadata says offline. */
export interface StatusFields {
  transactionId: number;
  dataBlocks: { used: number; total: number };
  metadataBytes: { used: number; total: number };
  pendingFreeBlocks: number;
}

/**
 * dm-thin's status line: `<transaction id> <used>/<total metadata blocks> <used>/<total
 * data blocks> <held root> rw|ro|out_of_data_space discard_passdown error_if_no_space
 * needs_check|-`. Metadata blocks are 4 KiB, as dm-thin counts them. `ro` is for a pool
 * that cannot be opened (dm-thin's read-only mode after a metadata error).
 */
export function statusLine(s: StatusFields, needsCheck: boolean, readOnly = false): string {
  const meta = (n: number) => Math.ceil(n / 4096);
  const full = s.dataBlocks.total - s.dataBlocks.used - s.pendingFreeBlocks <= 0;
  const mode = readOnly ? "ro" : full ? "out_of_data_space" : "rw";
  return `${s.transactionId} ${meta(s.metadataBytes.used)}/${meta(s.metadataBytes.total)} ${s.dataBlocks.used}/${s.dataBlocks.total} - ${mode} discard_passdown error_if_no_space ${needsCheck ? "needs_check" : "-"}`;
}

/**
 * The status fields as the last commit recorded them, read without opening the pool: for
 * `status` on a pool whose metadata is too damaged to open. Undefined without a readable
 * pool record.
 */
export async function offlineStatus(root: string): Promise<StatusFields | undefined> {
  const dir = path.join(root, METADATA_DIR);
  const record = await new MetaStore(dir).readRoot().catch(() => undefined);
  if (!checkPoolRecord(record)) return undefined;
  let used = 0;
  for (const f of await fs.promises.readdir(dir)) used += (await fs.promises.stat(path.join(dir, f)).catch(() => undefined))?.size ?? 0;
  return {
    transactionId: record.transactionId,
    dataBlocks: { used: record.usedBlocks ?? 0, total: record.dataBlocks },
    metadataBytes: { used, total: record.metadataSize },
    pendingFreeBlocks: 0,
  };
}
