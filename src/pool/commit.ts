/**
 * The pool's commit engine: which metadata files hold the committed state, and how a
 * transaction becomes the next one. Map nodes live in *segments* (each commit writes the
 * nodes it created or changed into one new segment); devices and participants (the layer
 * store) have files of their own; the root record names every live file. A commit writes
 * the new files, syncs them together with the data file, and switches the root by one
 * rename (metastore.ts). Segments that become mostly dead are compacted into the next
 * commit's segment.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { storeError } from "../common/errors.ts";
import type { PoolCore } from "./core.ts";
import * as fileops from "./fileops.ts";
import { LEVEL_BITS, MapNode } from "./maptree.ts";
import type { MetaStore } from "./metastore.ts";
import { blockRanges, checkPoolRecord, type DeviceRecord, namedFiles, POOL_FORMAT, POOL_VERSION, type PoolRecord, type SegmentRecord, storeNode } from "./persist.ts";
import type { CommitParticipant, MetadataTransaction, NodeId } from "./types.ts";

interface SegmentState { live: number; total: number }

/** Commits of one open pool, and the committed state they build on. */
export class CommitEngine {
  readonly #core: PoolCore;
  readonly #segments = new Map<string, SegmentState>();
  readonly #nodeSegment = new Map<NodeId, string>();
  readonly #nodes = new Map<NodeId, MapNode>();
  readonly #participants = new Map<string, CommitParticipant>();
  #participantRoots: Record<string, unknown>;
  #transactionId: number;
  /** Files named by the last committed root, and files written since. */
  #liveFiles = new Set<string>();
  /** Files only the previous root names: kept until the next commit, for repair to go back to. */
  #prevFiles = new Set<string>();
  readonly #written = new Set<string>();
  #metadataUsed = 0;

  constructor(core: PoolCore, record: PoolRecord) {
    this.#core = core;
    this.#transactionId = record.transactionId;
    this.#participantRoots = record.participants ?? {};
    core.forest.onDead = (node) => this.#nodeDied(node);
  }

  /** The id of the last committed transaction. */
  get transactionId(): number {
    return this.#transactionId;
  }

  /** Metadata bytes the committed state uses. */
  get metadataUsed(): number {
    return this.#metadataUsed;
  }

  /**
   * Builds the committed maps and devices of `record` in memory, then removes what a
   * crashed commit left in the metadata directory (files the root does not name).
   */
  async load(record: PoolRecord): Promise<void> {
    const { meta, space, dir } = this.#core;
    const raw = new Map<NodeId, { leaf: boolean; pairs: number[]; segment: string }>();
    for (const name of record.segments) {
      const seg = await meta.read(name) as SegmentRecord;
      for (const [id, leaf, pairs] of seg.nodes) raw.set(id, { leaf: leaf === 1, pairs, segment: name });
      this.#segments.set(name, { live: 0, total: seg.nodes.length });
    }
    const build = (id: NodeId): MapNode => {
      const known = this.#nodes.get(id);
      if (known) {
        known.refs++;
        return known;
      }
      const r = raw.get(id);
      if (!r) throw storeError("EIO", "open", dir, `metadata names map node ${id}, which no segment holds; run repair`);
      const fanout = this.#core.forest.fanout;
      const node = r.leaf ? new MapNode(id, true, new Uint32Array(fanout)) : new MapNode(id, false, new Array(fanout).fill(null));
      for (let k = 0; k < r.pairs.length; k += 2) {
        const [i, v] = [r.pairs[k], r.pairs[k + 1]];
        if (!(i >= 0 && i < fanout)) throw storeError("EIO", "open", dir, `map node ${id} has slot ${i}, past its ${fanout}; run repair`);
        if (r.leaf) {
          if (v - 1 >= space.total) throw storeError("EIO", "open", dir, `map node ${id} points at block ${v - 1}, past the pool's end; run repair`);
          (node.slots as Uint32Array)[i] = v;
          space.ref(v - 1);
        } else {
          (node.slots as (MapNode | null)[])[i] = build(v);
        }
        node.count++;
      }
      this.#nodes.set(id, node);
      this.#nodeSegment.set(id, r.segment);
      this.#segments.get(r.segment)!.live++;
      return node;
    };
    for (const file of Object.values(record.devices)) {
      const d = await meta.read(file) as DeviceRecord;
      const root = d.root ? build(d.root) : null;
      this.#core.devices.set(d.id, {
        id: d.id, size: d.size, mapping: { root, height: d.height }, created: d.created, file, savedRoot: d.root, deleting: d.deleting, version: this.#core.nextVersion(),
      });
    }
    this.#liveFiles = this.#collectLive();
    // Anything else in the directory is a crashed commit's leftover.
    this.#prevFiles = await previousFiles(meta);
    await meta.collect(new Set([...this.#liveFiles, ...this.#prevFiles]));
    await this.#measureLive();
  }

  /** Registers a participant whose metadata commits with the pool's (the layer store). */
  attach(name: string, participant: CommitParticipant): void {
    this.#participants.set(name, participant);
  }

  /** The root record a participant stored at the last commit. */
  participantRoot(name: string): unknown | undefined {
    return this.#participantRoots[name];
  }

  /**
   * Holds every attached participant as it is now (see CommitParticipant.holdForCommit)
   * and returns the release of them all; undefined, holding none, when one is in the middle
   * of an operation.
   */
  holdParticipants(): (() => void) | undefined {
    const releases: (() => void)[] = [];
    const releaseAll = () => {
      for (const r of releases.splice(0)) r();
    };
    for (const p of this.#participants.values()) {
      if (!p.holdForCommit) continue;
      const release = p.holdForCommit();
      if (!release) {
        releaseAll();
        return undefined;
      }
      releases.push(release);
    }
    return releaseAll;
  }

  /** {@linkcode holdParticipants}, or EBUSY. */
  holdOrRefuse(syscall: string): () => void {
    const release = this.holdParticipants();
    if (!release) {
      throw storeError("EBUSY", syscall, this.#core.dir, "the layer store is in the middle of an operation; commit through it (store.sync()) or retry when it is done");
    }
    return release;
  }

  /**
   * Commits if every participant can be held as it is (they stay so until the commit is
   * done); false, committing nothing, when one is in the middle of an operation. The
   * caller holds the pool's write lock.
   */
  async commitIfAllowed(): Promise<boolean> {
    const release = this.holdParticipants();
    if (!release) return false;
    try {
      await this.commit();
    } finally {
      release();
    }
    return true;
  }

  /** Commits holding every participant, or EBUSY (see {@linkcode holdOrRefuse}). The caller holds the pool's write lock. */
  async commitOrRefuse(syscall: string): Promise<void> {
    const release = this.holdOrRefuse(syscall);
    try {
      await this.commit();
    } finally {
      release();
    }
  }

  /** Commits the open transaction. The caller holds the pool's write lock. */
  async commit(): Promise<void> {
    const { ctx, io, meta } = this.#core;
    await ctx.inflight.drain();
    // The data file's fdatasync runs while the metadata files are written; every new file
    // is synced (all at once) before the root switch, which is what makes them count.
    const dataSync = io.run({ file: ctx.file, key: ctx.key, ops: [{ op: "sync" }] });
    dataSync.catch(() => {}); // handled below; a rejection must not count as unhandled meanwhile
    try {
      await this.#switchIn(dataSync);
    } catch (e) {
      await dataSync.catch(() => {});
      await meta.dropStaged();
      for (const p of this.#participants.values()) p.aborted?.();
      throw e;
    }
  }

  /**
   * Writes the transaction's files and switches the root record to them. Nothing in memory
   * says a file holds committed state until the switch succeeded: a commit that fails
   * (metadata ENOSPC, an I/O error) leaves every change pending for the next commit, which
   * writes it again rather than naming a file that was never synced.
   */
  async #switchIn(dataSync: Promise<void>): Promise<void> {
    const core = this.#core;
    const tx = this.#transactionId + 1;
    const transaction: MetadataTransaction = {
      transactionId: tx,
      writeCbor: async (prefix, value) => {
        const name = await core.meta.stage(prefix, tx, value);
        this.#written.add(name);
        return name;
      },
    };
    this.#compactSegments();
    const dirty = [...core.forest.dirty];
    // Live node counts per segment as they will be once this commit is in.
    const segLive = new Map([...this.#segments].map(([name, s]) => [name, s.live]));
    let segment: string | undefined;
    if (dirty.length > 0) {
      const seg: SegmentRecord = { transactionId: tx, nodes: dirty.map(storeNode) };
      segment = await transaction.writeCbor("nodes", seg);
      for (const node of dirty) {
        const old = this.#nodeSegment.get(node.id);
        if (old) segLive.set(old, segLive.get(old)! - 1);
      }
      segLive.set(segment, dirty.length);
    }
    const devFiles = new Map<typeof devs[number], { file: string; root: NodeId }>();
    const devs = [...core.devices.values()];
    for (const dev of devs) {
      const root = dev.mapping.root?.id ?? 0;
      if (dev.file && root === dev.savedRoot && !dev.deleting) continue;
      const record: DeviceRecord = { id: dev.id, size: dev.size, height: dev.mapping.height, root, created: dev.created };
      if (dev.deleting) record.deleting = true;
      devFiles.set(dev, { file: await transaction.writeCbor(`dev-${dev.id}`, record), root });
    }
    const roots: Record<string, unknown> = {};
    for (const [name, p] of this.#participants) roots[name] = await p.prepareCommit(transaction);
    for (const [name, root] of Object.entries(this.#participantRoots)) if (!(name in roots)) roots[name] = root;
    const devicesFile = (d: typeof devs[number]) => devFiles.get(d)?.file ?? d.file!;
    const live = new Set<string>();
    for (const [name, n] of segLive) if (n > 0) live.add(name);
    for (const d of devs) live.add(devicesFile(d));
    this.#addParticipantFiles(live);
    const record: PoolRecord = {
      format: POOL_FORMAT, version: POOL_VERSION, transactionId: tx, blockSize: core.blockSize,
      ...(core.forest.levelBits !== LEVEL_BITS ? { mapLevelBits: core.forest.levelBits } : {}),
      dataBlocks: core.space.total, metadataSize: core.metadataSize, nextNodeId: core.forest.nextId,
      usedBlocks: core.space.used,
      ...(core.dataDevice === undefined ? {} : { dataDevice: core.dataDevice }),
      ...(core.lowWater.data || core.lowWater.metadata ? { lowWater: { ...core.lowWater } } : {}),
      devices: Object.fromEntries(devs.map((d) => [String(d.id), devicesFile(d)])),
      segments: [...segLive.keys()].filter((s) => live.has(s)),
      participants: roots,
      settings: core.settings,
      freed: blockRanges(core.space.pending),
    };
    const used = core.meta.bytesOf(live);
    if (used > core.metadataSize) {
      throw storeError("ENOSPC", "commit", core.dir, `metadata needs ${used} bytes, more than the pool's ${core.metadataSize}; delete devices or layers`);
    }
    // The staged files, the new root and the data file are synced together, then the root switches.
    await core.meta.switchRoot(record, { alongside: [dataSync] });
    // Committed: from here on memory says so.
    if (segment) {
      for (const node of dirty) {
        this.#moveNode(node, segment);
        this.#nodes.set(node.id, node);
        core.forest.dirty.delete(node);
      }
      this.#segments.set(segment, { live: dirty.length, total: dirty.length });
    }
    for (const [dev, { file, root }] of devFiles) {
      dev.file = file;
      dev.savedRoot = root;
    }
    this.#transactionId = tx;
    this.#participantRoots = roots;
    for (const p of this.#participants.values()) p.committed?.();
    core.space.committed();
    core.changed = false;
    for (const [name, s] of this.#segments) if (s.live === 0) this.#segments.delete(name);
    // The replaced root is the previous one now: its files stay until the next commit.
    const kept = new Set([...live, ...this.#liveFiles]);
    const dead = [...this.#prevFiles, ...this.#written].filter((f) => !kept.has(f));
    this.#prevFiles = new Set([...this.#liveFiles].filter((f) => !live.has(f)));
    this.#liveFiles = live;
    this.#written.clear();
    this.#metadataUsed = core.meta.bytesOf(live);
    await Promise.all(dead.map((f) => fileops.removeFile(path.join(core.meta.dir, f))));
    for (const f of dead) core.meta.sizes.delete(f);
  }

  /** Sizes of live files not read at open (a participant's), for the metadata counters. */
  async #measureLive(): Promise<void> {
    const { meta } = this.#core;
    for (const f of this.#liveFiles) {
      if (!meta.sizes.has(f)) meta.sizes.set(f, (await fs.stat(path.join(meta.dir, f))).size);
    }
    this.#metadataUsed = meta.bytesOf(this.#liveFiles);
  }

  /** Rewrites the live nodes of segments that are mostly dead, so old segments can go. */
  #compactSegments(): void {
    const sparse = new Set<string>();
    for (const [name, s] of this.#segments) if (s.live > 0 && s.total >= 64 && s.live * 4 < s.total) sparse.add(name);
    if (sparse.size === 0) return;
    for (const [id, seg] of this.#nodeSegment) if (sparse.has(seg)) this.#core.forest.dirty.add(this.#nodes.get(id)!);
  }

  #moveNode(node: MapNode, segment: string): void {
    const old = this.#nodeSegment.get(node.id);
    if (old) this.#segments.get(old)!.live--;
    this.#nodeSegment.set(node.id, segment);
  }

  #nodeDied(node: MapNode): void {
    const seg = this.#nodeSegment.get(node.id);
    if (seg) this.#segments.get(seg)!.live--;
    this.#nodeSegment.delete(node.id);
    this.#nodes.delete(node.id);
  }

  #collectLive(): Set<string> {
    const live = new Set<string>();
    for (const [name, s] of this.#segments) if (s.live > 0) live.add(name);
    for (const d of this.#core.devices.values()) if (d.file) live.add(d.file);
    this.#addParticipantFiles(live);
    return live;
  }

  #addParticipantFiles(live: Set<string>): void {
    for (const p of this.#participants.values()) for (const f of p.liveFiles()) live.add(f);
    if (this.#participants.size === 0) {
      // Not attached yet (opening): keep what the participants' last roots name.
      for (const root of Object.values(this.#participantRoots)) for (const f of filesOf(root)) live.add(f);
    }
  }
}

/** The files the previous root names, if it reads as a root record (repair may go back to it). */
async function previousFiles(meta: MetaStore): Promise<Set<string>> {
  const prev = await meta.readPreviousRoot().catch(() => undefined);
  return checkPoolRecord(prev) ? namedFiles(prev) : new Set();
}

/** Participant roots name their files under `files` (a convention the pool relies on at open). */
function filesOf(root: unknown): string[] {
  const files = (root as { files?: unknown })?.files;
  return Array.isArray(files) ? files.filter((f): f is string => typeof f === "string") : [];
}
