/**
 * The `thinstack` command (issue 5), driven as a user drives it: every step runs the CLI
 * on a store in a temporary directory, through its entry function in this process, or in
 * a child process under the runtime running the tests (`node src/cli/bin.mjs` under Node,
 * `deno run -A --no-lock src/cli/bin.mjs` under Deno) where it reads stdin, needs a working
 * directory or is about the process itself (see cli.ts), and checks its exit code, its
 * output and, for errors, its one line on stderr.
 *
 * The scenarios are independent (each has its own store), so under Node they run
 * concurrently; Deno's node:test runs them one after another.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import { statfsSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { formatBytes, GiB, KiB, MiB } from "../../src/common/units.ts";
import { decodeMetaFile, encodeMetaFile } from "../../src/pool/metafile.ts";
import { namedFiles, type PoolRecord } from "../../src/pool/persist.ts";
import { program } from "../../src/cli/main.ts";
import { spawnScript } from "../helpers/runtime.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { cliCommand, fails, mktar, ok, parseFields, parseHuman, parseTable, pattern, thinstack, ts, untar } from "./cli.ts";

/** The devicemapper fields of `docker info`, in the order moby's driver prints them. */
const DOCKER_INFO_ORDER = [
  "Pool Name", "Pool Blocksize", "Base Device Size", "Backing Filesystem", "Data file", "Metadata file",
  "Data Space Used", "Data Space Total", "Data Space Available", "Metadata Space Used", "Metadata Space Total",
  "Metadata Space Available", "Thin Pool Minimum Free Space", "Udev Sync Supported", "Deferred Removal Enabled",
  "Deferred Deletion Enabled", "Deferred Deleted Device Count", "Data loop file", "Metadata loop file", "Library Version",
];

/** The fields `thinstack info` prints: docker's, less udev and the loop devices a user-space pool has none of. */
const INFO_FIELDS = DOCKER_INFO_ORDER.filter((f) => !["Udev Sync Supported", "Data loop file", "Metadata loop file"].includes(f));

/** The commands of issue 5 (the image commands are tested in images.test.ts). */
const COMMANDS = [
  "init", "info", "status", "prepare", "view", "commit", "rm", "ls", "inspect", "usage", "cp", "cat", "resize", "check", "repair", "dump", "restore", "trim",
  "apply", "diff", "import", "images", "export", "checkout", "rmi",
];

const STATUS_LINE = /^(\d+) (\d+)\/(\d+) (\d+)\/(\d+) - (rw|ro|out_of_data_space) discard_passdown error_if_no_space (needs_check|-)\n$/;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tmpDir("thinstack-cli-");
  try {
    await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

/** Allocated bytes of a file, as `du` counts them. */
async function du(file: string): Promise<number> {
  return Number((await fs.stat(file)).blocks) * 512;
}

type UsageRow = { key: string; device: number; mapped: number; exclusive: number; shared: number; size: number; inodes: number };

async function usage(root: string, ...keys: string[]): Promise<Record<string, UsageRow>> {
  const rows = JSON.parse((await ts(["usage", "--json", ...keys], { root })).stdout) as UsageRow[];
  return Object.fromEntries(rows.map((r) => [r.key, r]));
}

/** Rewrites a metadata file of the store through `fn` (decoded CBOR in, CBOR to write out). */
async function editMetadata(root: string, prefix: string, fn: (value: Record<string, unknown>) => void): Promise<string> {
  const dir = path.join(root, "metadata");
  // One the current root names (files of the previous root stay until the next commit).
  const live = namedFiles(decodeMetaFile(await fs.readFile(path.join(dir, "pool.cbor")), "pool.cbor") as PoolRecord);
  const name = (await fs.readdir(dir)).find((n) => n.startsWith(prefix) && live.has(n));
  assert.ok(name, `no metadata file starting with '${prefix}'`);
  const value = decodeMetaFile(await fs.readFile(path.join(dir, name)), "test") as Record<string, unknown>;
  fn(value);
  await fs.writeFile(path.join(dir, name), encodeMetaFile(value));
  return name;
}

describe("thinstack CLI", { concurrency: true }, () => {
  test("a full session: init, info, layers, files both ways, usage, status, dump/restore, deferred rm, trim", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      const host = path.join(dir, "host");
      await fs.mkdir(path.join(host, "tree", "sub"), { recursive: true });
      await fs.writeFile(path.join(host, "hello.txt"), "hello, layer\n");
      await fs.writeFile(path.join(host, "tree", "a.txt"), "a\n");
      await fs.chmod(path.join(host, "tree", "a.txt"), 0o640);
      await fs.utimes(path.join(host, "tree", "a.txt"), 1_600_000_000, 1_600_000_000);
      await fs.writeFile(path.join(host, "tree", "sub", "run.sh"), "#!/bin/sh\necho hi\n");
      await fs.chmod(path.join(host, "tree", "sub", "run.sh"), 0o755);
      const big = pattern(200_000, 2);
      await fs.writeFile(path.join(host, "tree", "sub", "big.bin"), big);
      await fs.symlink("a.txt", path.join(host, "tree", "link"));
      const data = pattern(256 * KiB, 3); // four 64 KiB blocks
      const data2 = pattern(256 * KiB, 4);
      await fs.writeFile(path.join(host, "data.bin"), data);
      await fs.writeFile(path.join(host, "data2.bin"), data2);

      // init, with every dm.* option spelled out
      const init = await ts(["init", "--data-size", "64M", "--metadata-size", "64M", "--block-size", "64K", "--base-size", "32M",
        "--min-free-space", "10%", "--autoextend-threshold", "80", "--autoextend-percent", "20"], r);
      assert.equal(init.stdout, `Created a store in ${root}: data 67.11 MB, blocks 65.54 kB, base device 33.55 MB\n`);

      // info: docker's devicemapper fields, in docker's order, sizes human-readable
      const info = await ts(["info"], r);
      assert.match(info.stdout, /^Storage Driver: thinstack\n/);
      const fields = parseFields(info.stdout);
      assert.deepEqual(fields.map(([k]) => k), INFO_FIELDS);
      const order = fields.map(([k]) => DOCKER_INFO_ORDER.indexOf(k));
      assert.deepEqual(order, [...order].sort((a, b) => a - b), "docker's order");
      const v = Object.fromEntries(fields);
      assert.match(v["Pool Name"], /^thinstack-\d+:\d+-\d+-pool$/);
      assert.equal(v["Pool Blocksize"], "65.54 kB");
      assert.equal(v["Base Device Size"], "33.55 MB");
      assert.equal(v["Data file"], path.join(root, "data"));
      assert.equal(v["Metadata file"], path.join(root, "metadata"));
      assert.equal(v["Data Space Used"], "0 B");
      assert.equal(v["Data Space Total"], "67.11 MB");
      assert.equal(v["Data Space Available"], "67.11 MB");
      assert.equal(v["Metadata Space Total"], "67.11 MB");
      assert.ok(parseHuman(v["Metadata Space Used"]) > 0);
      assert.equal(v["Thin Pool Minimum Free Space"], formatBytes(Math.ceil(1024 * 0.1) * 64 * KiB));
      assert.equal(v["Deferred Removal Enabled"], "true");
      assert.equal(v["Deferred Deletion Enabled"], "true");
      assert.equal(v["Deferred Deleted Device Count"], "0");
      assert.match(v["Library Version"], /^thinstack \d+\.\d+\.\d+$/);

      // a fresh layer and a known write: 256 KiB is four blocks, all its own
      assert.equal((await ts(["prepare", "c1"], r)).stdout, "c1\n");
      await ts(["cp", path.join(host, "data.bin"), "c1:/data.bin"], r);
      const u0 = (await usage(root, "c1")).c1;
      assert.deepEqual({ mapped: u0.mapped, exclusive: u0.exclusive, shared: u0.shared, size: u0.size, inodes: u0.inodes },
        { mapped: 4, exclusive: 4, shared: 0, size: 256 * KiB, inodes: 2 });

      // cp in: a file, and a tree into an existing directory (docker cp: it lands under its name)
      await ts(["cp", path.join(host, "hello.txt"), "c1:/hello.txt"], r);
      await ts(["cp", path.join(host, "tree"), "c1:/"], r);

      // cp out: the tree, with modes, times and the symlink
      const out = path.join(dir, "out");
      await fs.mkdir(out);
      await ts(["cp", "c1:/tree", out], r);
      assert.equal(await fs.readFile(path.join(out, "tree", "a.txt"), "utf8"), "a\n");
      assert.equal((await fs.stat(path.join(out, "tree", "a.txt"))).mode & 0o7777, 0o640);
      assert.equal((await fs.stat(path.join(out, "tree", "a.txt"))).mtimeMs, 1_600_000_000_000);
      assert.equal((await fs.stat(path.join(out, "tree", "sub", "run.sh"))).mode & 0o7777, 0o755);
      assert.deepEqual(new Uint8Array(await fs.readFile(path.join(out, "tree", "sub", "big.bin"))), big);
      assert.equal(await fs.readlink(path.join(out, "tree", "link")), "a.txt");

      // cp out to -: a tar stream of the tree
      const packed = await untar((await ts(["cp", "c1:/tree", "-"], r)).bytes);
      assert.deepEqual(packed.map((e) => `${e.type} ${e.name}`), [
        "directory tree", "file tree/a.txt", "symlink tree/link", "directory tree/sub", "file tree/sub/big.bin", "file tree/sub/run.sh",
      ]);
      const byName = Object.fromEntries(packed.map((e) => [e.name, e]));
      assert.deepEqual(new Uint8Array(byName["tree/sub/big.bin"].data), big);
      assert.equal(byName["tree/a.txt"].mode, 0o640);
      assert.equal(byName["tree/a.txt"].mtime, 1_600_000_000_000);
      assert.equal(byName["tree/link"].linkname, "a.txt");

      // cp in from -: a tar stream into a directory of the layer, modes, times and links kept
      const when = new Date(1_500_000_000_000);
      const blob = pattern(100_000, 5);
      const tarIn = await mktar([
        { name: "fromtar/", type: "directory", mode: 0o750, mtime: when },
        { name: "fromtar/script", mode: 0o755, mtime: when, data: "#!/bin/sh\n" },
        { name: "fromtar/blob", mode: 0o600, mtime: when, data: blob },
        { name: "fromtar/alias", type: "link", linkname: "fromtar/blob", mtime: when },
        { name: "fromtar/ln", type: "symlink", linkname: "script", mtime: when },
      ]);
      await ts(["cp", "-", "c1:/"], { ...r, input: tarIn });
      const back = Object.fromEntries((await untar((await ts(["cp", "c1:/fromtar", "-"], r)).bytes)).map((e) => [e.name, e]));
      assert.deepEqual(Object.keys(back).sort(), ["fromtar", "fromtar/alias", "fromtar/blob", "fromtar/ln", "fromtar/script"]);
      assert.deepEqual([back["fromtar"].type, back["fromtar"].mode, back["fromtar"].mtime], ["directory", 0o750, when.getTime()]);
      assert.deepEqual([back["fromtar/script"].mode, back["fromtar/script"].mtime, back["fromtar/script"].data.toString()], [0o755, when.getTime(), "#!/bin/sh\n"]);
      assert.deepEqual(new Uint8Array(back["fromtar/blob"].data), blob);
      assert.equal(back["fromtar/blob"].mode, 0o600);
      assert.deepEqual(new Uint8Array(back["fromtar/alias"].data), blob, "the hard link shows the same data");
      assert.deepEqual([back["fromtar/ln"].type, back["fromtar/ln"].linkname], ["symlink", "script"]);

      // commit, a view and a second active layer over it
      assert.equal((await ts(["commit", "img1", "c1"], r)).stdout, "img1\n");
      assert.equal((await ts(["view", "v1", "img1"], r)).stdout, "v1\n");
      assert.equal((await ts(["prepare", "c2", "img1"], r)).stdout, "c2\n");
      fails(await thinstack(["cp", path.join(host, "hello.txt"), "v1:/hello2.txt"], r), 1, /EROFS/, /read-only/);
      assert.equal((await ts(["cat", "v1:/hello.txt"], r)).stdout, "hello, layer\n", "the view shows img1's files");

      // usage: snapshots share every block of their parent until they write
      const u1 = await usage(root);
      const m = u1.img1.mapped;
      assert.ok(m >= 4 + Math.ceil((200_000 + 100_000) / (64 * KiB)), `img1 maps its files' blocks (${m})`);
      for (const key of ["img1", "v1", "c2"]) {
        assert.deepEqual([u1[key].mapped, u1[key].exclusive, u1[key].shared], [m, 0, m], `${key} shares all ${m} blocks`);
      }
      // ... and a write of 256 KiB to c2 gives it four blocks of its own (five if the file's
      // first page shares a block with img1's last: that block is copied, not shared, then)
      await ts(["cp", path.join(host, "data2.bin"), "c2:/data2.bin"], r);
      const table = Object.fromEntries(parseTable((await ts(["usage"], r)).stdout).map((row) => [row.LAYER, row]));
      assert.deepEqual(Object.keys(table).sort(), ["c2", "img1", "v1"]);
      const c2 = { mapped: Number(table.c2.MAPPED), exclusive: Number(table.c2.EXCLUSIVE), shared: Number(table.c2.SHARED) };
      assert.deepEqual([Number(table.img1.MAPPED), Number(table.img1.EXCLUSIVE), Number(table.img1.SHARED)], [m, 0, m], "img1 is unchanged");
      assert.deepEqual([Number(table.v1.MAPPED), Number(table.v1.EXCLUSIVE)], [m, 0], "v1 is unchanged");
      assert.ok(c2.mapped - m >= 4 && c2.mapped - m <= 5, `c2 maps 4 or 5 more blocks than img1: ${JSON.stringify(c2)}`);
      assert.ok(c2.exclusive >= 4 && c2.exclusive - (c2.mapped - m) <= 1, `c2's own blocks: ${JSON.stringify(c2)}`);
      assert.equal(c2.exclusive + c2.shared, c2.mapped);
      assert.equal(table.c2.INODES, "2");
      assert.match(table.c2.SIZE, / KiB$/);

      // status: dm-thin's line; the used data blocks are img1's and c2's own
      const status = STATUS_LINE.exec((await ts(["status"], r)).stdout);
      assert.ok(status, "status line format");
      assert.deepEqual([Number(status[4]), Number(status[5]), status[6], status[7]], [m + c2.exclusive, 1024, "rw", "-"]);
      assert.equal(Number(status[3]), 64 * MiB / 4096, "metadata total in 4 KiB blocks");
      assert.ok(Number(status[2]) >= 1);

      // inspect, ls, ls --json, ls --tree
      const inspect = JSON.parse((await ts(["inspect", "c2"], r)).stdout);
      assert.deepEqual([inspect.name, inspect.parent, inspect.kind], ["c2", "img1", "active"]);
      assert.deepEqual([inspect.usage.mapped, inspect.usage.exclusive, inspect.usage.shared], [c2.mapped, c2.exclusive, c2.shared]);
      const ls = parseTable((await ts(["ls"], r)).stdout);
      assert.deepEqual(ls.map((l) => [l.NAME, l.KIND, l.PARENT]), [["img1", "committed", "-"], ["v1", "view", "img1"], ["c2", "active", "img1"]]);
      const lsJson = JSON.parse((await ts(["ls", "--json"], r)).stdout) as { name: string; kind: string; parent: string; created: string }[];
      assert.deepEqual(lsJson.map((l) => [l.name, l.kind, l.parent]), [["img1", "committed", ""], ["v1", "view", "img1"], ["c2", "active", "img1"]]);
      for (const l of lsJson) assert.ok(Date.parse(l.created) > 0);
      assert.equal((await ts(["ls", "--tree"], r)).stdout, "└── img1 (committed)\n    ├── c2 (active)\n    └── v1 (view)\n");

      // dump, restore, dump: byte-identical; settings and data survive
      const dump1 = (await ts(["dump"], r)).stdout;
      assert.match(dump1, /^<superblock format="thinstack-pool" [^\n]*nr_data_blocks="1024"[^\n]* autoextend_threshold="80"/);
      assert.equal(dump1.match(/<device /g)?.length, 4, "the base device and three layers' devices");
      assert.equal((await ts(["restore", "-"], { ...r, input: dump1 })).stdout, `Restored the metadata of ${root}\n`);
      const dumpFile = path.join(dir, "dump2.txt");
      await ts(["dump", "-o", dumpFile], r);
      assert.equal(await fs.readFile(dumpFile, "utf8"), dump1, "dump, restore, dump is byte-identical");
      const afterRestore = JSON.parse((await ts(["status", "--json"], r)).stdout);
      assert.deepEqual(afterRestore.settings, { minFreeSpacePercent: 10, autoextendThreshold: 80, autoextendPercent: 20, lowWaterMarkPercent: 20, metadataLowWaterMarkPercent: 20 });
      assert.deepEqual([afterRestore.dataBlocks.used, afterRestore.needsCheck, afterRestore.mode], [m + c2.exclusive, false, "rw"]);
      assert.match((await ts(["check"], r)).stdout, /: no faults\n$/);
      assert.deepEqual(new Uint8Array((await ts(["cat", "c2:/data2.bin"], r)).bytes), data2);

      // rm (deferred deletion): children first, every key in one call. rm returns once the
      // removals are recorded; info counts them until a command that changes the store
      // (here trim) opens it and finishes them.
      const duBefore = await du(path.join(root, "data"));
      assert.ok(duBefore >= (m + c2.exclusive) * 64 * KiB, `the data file holds the layers' blocks (${duBefore} bytes)`);
      assert.equal((await ts(["rm", "c2", "v1", "img1"], r)).stdout, "c2\nv1\nimg1\n");
      const pending = Object.fromEntries(parseFields((await ts(["info"], r)).stdout));
      assert.equal(pending["Deferred Deleted Device Count"], "3");
      assert.notEqual(pending["Data Space Used"], "0 B", "the blocks are not freed yet");
      assert.deepEqual(parseTable((await ts(["ls"], r)).stdout).length, 0, "the layers are gone at once");

      // trim: the free blocks go back to the host, and du of the data file falls
      assert.match((await ts(["trim"], r)).stdout, /^Trimmed 1024 free blocks \(67\.11 MB\) in 1 ranges with (ffi|fallocate\(1\))\n$/);
      const duAfter = await du(path.join(root, "data"));
      assert.ok(duAfter < duBefore && duAfter <= 64 * KiB, `du of the data file falls: ${duBefore} -> ${duAfter}`);
      assert.match((await ts(["status"], r)).stdout, / 0\/1024 - rw discard_passdown error_if_no_space -\n$/);
      const after = Object.fromEntries(parseFields((await ts(["info"], r)).stdout));
      assert.equal(after["Deferred Deleted Device Count"], "0");
      assert.equal(after["Data Space Used"], "0 B");
      assert.equal(after["Data Space Available"], "67.11 MB");
    });
  });

  test("errors: EEXIST, min free space, shrink refused, bad sizes, rm of a layer with children", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await ts(["init", "--data-size", "4M", "--base-size", "16M", "--min-free-space", "50%", "--autoextend-threshold", "100"], r);
      fails(await thinstack(["init"], r), 1, /EEXIST/, /a store already exists/);
      await ts(["prepare", "c"], r);
      const file = path.join(dir, "f");
      await fs.writeFile(file, pattern(2 * MiB + 64 * KiB)); // 33 of 64 blocks
      await ts(["cp", file, "c:/f"], r);

      // dm.min_free_space: 31 free blocks of 64 is below 50%
      fails(await thinstack(["prepare", "d"], r), 1, /ENOSPC/, /minimum free space of 50%/, /dm\.min_free_space/);

      // shrinking below what is used is refused; a bad size is a usage error; growing works
      fails(await thinstack(["resize", "--data-size", "1M"], r), 1, /ENOSPC/, /cannot shrink/);
      fails(await thinstack(["resize", "--data-size", "12Q"], r), 2, /'12Q' is not a size/, /thinstack resize --help/);
      assert.equal((await ts(["resize", "--data-size", "8M"], r)).stdout, "Data space is now 8.389 MB\n");

      // rm of a layer with children: EBUSY, and nothing changes
      await ts(["commit", "img", "c"], r);
      await ts(["prepare", "d", "img"], r);
      fails(await thinstack(["rm", "img"], r), 1, /EBUSY/, /1 layer\(s\) are based on it/);
      const s = JSON.parse((await ts(["status", "--json"], r)).stdout);
      assert.deepEqual([s.dataBlocks.used, s.dataBlocks.total, s.devices], [33, 128, 3], "img and d are still there");
    });
  });

  test("errors: no store, bad sizes and percentages, unknown commands", async () => {
    await withDir(async (dir) => {
      const none = path.join(dir, "none");
      for (const cmd of [["ls"], ["check"]]) { // the two ways commands reach a store: open it, or read its metadata
        fails(await thinstack(cmd, { root: none }), 1, /ENOENT/, new RegExp(`no store at '${none}'`), /thinstack init/);
      }
      assert.equal(await exists(none), false, "a command on a missing store creates nothing");
      fails(await thinstack(["init", "--data-size", "12Q"], { root: none }), 2, /'12Q' is not a size/, /thinstack init --help/);
      fails(await thinstack(["init", "--min-free-space", "150%"], { root: none }), 2, /'150%' is not a percentage/);
      fails(await thinstack(["init", "--block-size", "100K"], { root: none }), 1, /EINVAL/, /block size/);
      fails(await thinstack(["init", "--data-size", "4M", "--base-size", "1K"], { root: none }), 1, /EINVAL/, /--base-size/);
      assert.equal(await exists(none), false, "a failed init leaves nothing behind");
      fails(await thinstack(["frob"], { root: none }), 2, /unknown command 'frob'/);
      // The exit codes are the process's: 2 for a usage error, 1 for a failed command.
      fails(await thinstack(["frob"], { root: none, spawn: true }), 2, /unknown command 'frob'/);
      fails(await thinstack(["ls"], { root: none, spawn: true }), 1, /ENOENT/, new RegExp(`no store at '${none}'`));
    });
  });

  test("a full pool: ENOSPC when a file is bigger than the pool, and status says out_of_data_space", async () => {
    await withDir(async (dir) => {
      const r = { root: path.join(dir, "store") };
      await ts(["init", "--data-size", "2M", "--base-size", "16M", "--min-free-space", "0", "--autoextend-threshold", "100"], r);
      await ts(["prepare", "c"], r);
      const file = path.join(dir, "big");
      await fs.writeFile(file, pattern(3 * MiB));
      fails(await thinstack(["cp", file, "c:/big"], r), 1, /ENOSPC/, /no space left on device/);
      assert.match((await ts(["status"], r)).stdout, / 32\/32 - out_of_data_space discard_passdown error_if_no_space -\n$/);
      assert.match((await ts(["check"], r)).stdout, /: no faults\n$/, "a failed write leaves consistent metadata");
    });
  });

  test("autoextend: data use past the threshold grows the data file, and the CLI says so", async () => {
    await withDir(async (dir) => {
      const r = { root: path.join(dir, "store") };
      await ts(["init", "--data-size", "4M", "--base-size", "16M", "--min-free-space", "0"], r); // 80% and 20%: the defaults
      await ts(["prepare", "c"], r);
      const file = path.join(dir, "f");
      await fs.writeFile(file, pattern(3.5 * MiB));
      const cp = await ts(["cp", file, "c:/f"], r, /./);
      assert.match(cp.stderr, /^thinstack: data space passed 80% \(\d+ of 64 blocks used\): grew the data file from 4\.194 MB to 5\.046 MB \(thin_pool_autoextend_percent 20\)\n/m);
      const s = JSON.parse((await ts(["status", "--json"], r)).stdout);
      assert.equal(s.dataBlocks.total, 64 + 13);
      assert.equal((await fs.stat(path.join(r.root, "data"))).size, 77 * 64 * KiB);
    });
  });

  test("check finds corrupted metadata; repair fixes what it can and reports each change", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await ts(["init", "--data-size", "8M", "--base-size", "16M"], r);
      await ts(["prepare", "c"], r);
      const blob = pattern(200_000, 9);
      await fs.writeFile(path.join(dir, "f"), blob);
      await ts(["cp", path.join(dir, "f"), "c:/f"], r);
      assert.match((await ts(["check"], r)).stdout, /^2 devices, 4 mapped blocks, 4 blocks in use: no faults\n$/);

      // A device file whose map height cannot address the device: derivable, so repaired.
      await editMetadata(root, "dev-1.", (d) => (d.height = 0));
      const bad = await thinstack(["check"], r);
      assert.equal(bad.code, 1);
      assert.match(bad.stdout, /^fault: device 1: map height 0 cannot address its 256 blocks$/m);
      assert.match(bad.stdout, /: 1 fault\(s\)\n$/);
      assert.match((await ts(["status"], r)).stdout, / rw discard_passdown error_if_no_space needs_check\n$/);
      const fixed = await ts(["repair"], r);
      assert.match(fixed.stdout, /device 1: map height 0/);
      assert.match(fixed.stdout, /^1 change\(s\)\n$/m);
      assert.match((await ts(["check"], r)).stdout, /: no faults\n$/);
      assert.deepEqual(new Uint8Array((await ts(["cat", "c:/f"], r)).bytes), blob, "the file's data is intact");

      // A node segment overwritten with garbage: the device's map is lost.
      const segment = (await fs.readdir(path.join(root, "metadata"))).find((n) => n.startsWith("nodes."))!;
      await fs.writeFile(path.join(root, "metadata", segment), "garbage, not CBOR");
      const broken = await thinstack(["check"], r);
      assert.equal(broken.code, 1);
      assert.match(broken.stdout, new RegExp(`^fault: node segment '${segment.replace(/\./g, "\\.")}' cannot be read`, "m"));
      assert.match(broken.stdout, /^fault: device 1: map node \d+ \(root\) is missing; its blocks are lost$/m);
      // dm-thin keeps reporting a pool whose metadata failed: read-only, needs_check
      assert.match((await ts(["status"], r)).stdout, / ro discard_passdown error_if_no_space needs_check\n$/);
      fails(await thinstack(["ls"], r), 1, /cannot open the store/, /thinstack repair/);
      const repaired = await ts(["repair"], r);
      assert.match(repaired.stdout, /^dropped: node segment '.*' cannot be read/m);
      assert.match(repaired.stdout, /^recounted blocks in use: 4 -> 0$/m);
      assert.match(repaired.stdout, /^\d+ change\(s\)\n$/m);
      // The pool's metadata is whole again: the store opens, status needs no check.
      assert.match((await ts(["status"], r)).stdout, / 0\/128 - rw discard_passdown error_if_no_space -\n$/);
      assert.deepEqual(JSON.parse((await ts(["ls", "--json"], r)).stdout).map((l: { name: string }) => l.name), ["c"]);
      // The file data whose mappings were lost cannot come back: repair drops it from the
      // file (it reads as zeros), says so, and then check passes.
      assert.match(repaired.stdout, /^c: inode \d+ \(\/f\): its data in device blocks that are not mapped is lost: dropped \d+ page\(s\) of it, which read as zeros now$/m);
      assert.match((await ts(["check"], r)).stdout, /: no faults\n$/);
      assert.deepEqual(new Uint8Array((await ts(["cat", "c:/f"], r)).bytes), new Uint8Array(blob.length));

      /** Rewrites every metadata file of layer `name` (its base and journal files) through `fn`. */
      const editLayer = async (name: string, fn: (v: Record<string, any>) => void) => {
        const meta = path.join(root, "metadata");
        const files = (await fs.readdir(meta)).filter((n) => /^layer-\d+(-j)?\./.test(n));
        let id: string | undefined;
        for (const n of files) if ((decodeMetaFile(await fs.readFile(path.join(meta, n)), "test") as { record?: { name: string } }).record?.name === name) id = /^layer-(\d+)/.exec(n)![1];
        assert.ok(id, `no metadata file holds layer '${name}'`);
        for (const n of files.filter((n) => new RegExp(`^layer-${id}(-j)?\\.`).test(n))) {
          const v = decodeMetaFile(await fs.readFile(path.join(meta, n)), "test") as Record<string, any>;
          fn(v);
          await fs.writeFile(path.join(meta, n), encodeMetaFile(v));
        }
      };

      // A layer whose parent is missing: the store does not open, check says why (exit 1),
      // repair drops the layer (its tree cannot be derived without the parent).
      await ts(["commit", "img", "c"], r);
      await ts(["prepare", "d", "img"], r);
      await editLayer("d", (v) => {
        if (v.record) v.record.parent = 99;
      });
      fails(await thinstack(["ls"], r), 1, /layer 'd' names parent 99, which is missing/, /thinstack repair/);
      const orphan = await thinstack(["check"], r);
      assert.equal(orphan.code, 1);
      assert.match(orphan.stdout, /^fault: d: names parent layer 99, which is missing$/m);
      const dropped = await ts(["repair"], r);
      assert.match(dropped.stdout, /^d: dropped the layer and its device: names parent layer 99, which is missing\n1 change\(s\)\n$/);
      assert.match((await ts(["check"], r)).stdout, /: no faults\n$/);
      assert.deepEqual(JSON.parse((await ts(["ls", "--json"], r)).stdout).map((l: { name: string }) => l.name), ["img"]);

      // What repair cannot fix (two files sharing device pages) stays a fault: repair says
      // so and exits 1, and counts only what it did change.
      await ts(["prepare", "e", "img"], r);
      await fs.writeFile(path.join(dir, "a"), pattern(8192, 3));
      await fs.writeFile(path.join(dir, "b"), pattern(8192, 4));
      await ts(["cp", path.join(dir, "a"), "e:/a"], r);
      await ts(["cp", path.join(dir, "b"), "e:/b"], r);
      let payload: number[] | undefined;
      await editLayer("e", (v) => {
        for (const [, s] of (v.inodes ?? []) as [number, unknown[] | null][]) {
          if (!s || !Array.isArray(s[10])) continue;
          if (payload === undefined) payload = s[10] as number[];
          else s[10] = [...payload];
        }
      });
      const unfixable = await thinstack(["repair"], r);
      assert.equal(unfixable.code, 1, unfixable.stdout);
      assert.match(unfixable.stdout, /^e: freed pages \d+\+\d+, which no file used$/m);
      assert.match(unfixable.stdout, /^\d+ change\(s\)\nfault: e: inodes \d+ and \d+ share device page \d+\n1 fault\(s\) remain that repair cannot fix\n$/m);
      assert.doesNotMatch(unfixable.stdout, /left alone|cannot repair/);
      const nothing = await thinstack(["repair"], r);
      assert.equal(nothing.code, 1);
      assert.match(nothing.stdout, /^no changes\nfault: e: inodes \d+ and \d+ share device page \d+\n1 fault\(s\) remain that repair cannot fix\n$/);
      assert.equal((await thinstack(["check"], r)).code, 1);
    });
  });

  test("deferred deletion: a crash after rm and before the blocks are freed finishes at the next open", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await ts(["init", "--data-size", "64M", "--base-size", "32M"], r);
      await ts(["prepare", "big"], r);
      await fs.writeFile(path.join(dir, "f"), pattern(4 * MiB, 11));
      await ts(["cp", path.join(dir, "f"), "big:/f"], r);
      assert.equal(JSON.parse((await ts(["status", "--json"], r)).stdout).dataBlocks.used, 64);

      // The crash: a child removes the layer as `rm` does and kills itself with SIGKILL
      // the moment the removal returns (see crash-rm-child.ts).
      const child = spawnScript(new URL("./crash-rm-child.ts", import.meta.url).pathname, [root, "big"]);
      let err = "";
      child.stderr!.on("data", (c) => (err += c));
      const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.on("close", (c, s) => resolve([c, s])));
      assert.deepEqual([code, signal], [null, "SIGKILL"], `the child dies of SIGKILL: ${err}`);
      // dump reads the metadata without opening the pool: the deletion is pending there.
      const pending = (await ts(["dump"], r)).stdout;
      assert.match(pending, /<device dev_id="1" [^>]*deleting="1">/, "the crash fell between the deferral and the freeing");

      // info reports it pending; the next command that changes the store finishes it:
      // nothing pending after, the blocks free, the metadata sound.
      assert.equal(Object.fromEntries(parseFields((await ts(["info"], r)).stdout))["Deferred Deleted Device Count"], "1");
      await ts(["prepare", "next"], r);
      await ts(["rm", "next"], r);
      await ts(["trim"], r);
      const info = Object.fromEntries(parseFields((await ts(["info"], r)).stdout));
      assert.equal(info["Deferred Deleted Device Count"], "0");
      assert.equal(info["Data Space Used"], "0 B");
      assert.deepEqual(JSON.parse((await ts(["ls", "--json"], r)).stdout), []);
      assert.match((await ts(["check"], r)).stdout, /^1 devices, 0 mapped blocks, 0 blocks in use: no faults\n$/);
    });
  });

  test("the store is --root, else THINSTACK_ROOT, else ./.thinstack; Available never exceeds the host's free space", async () => {
    await withDir(async (dir) => {
      const envRoot = path.join(dir, "env-store");
      const env = { THINSTACK_ROOT: envRoot };
      // A sparse data file larger than the host's free space.
      const hostFree = () => Number(statfsSync(dir).bavail) * Number(statfsSync(dir).bsize);
      const free = hostFree();
      const size = Math.max(Math.ceil(2 * free / GiB), 2);
      const init = await ts(["init", "--data-size", `${size}G`, "--base-size", "1G"], { env });
      assert.match(init.stdout, new RegExp(`^Created a store in ${envRoot}: `));
      // Others write to and delete from the same disk meanwhile: the bound is the host's free space while info ran.
      const freeBefore = hostFree();
      const info = Object.fromEntries(parseFields((await ts(["info"], { env })).stdout));
      const freeAfter = hostFree();
      assert.equal(info["Data file"], path.join(envRoot, "data"));
      assert.equal(info["Data Space Total"], formatBytes(size * GiB));
      const available = parseHuman(info["Data Space Available"]);
      assert.ok(available <= Math.max(freeBefore, freeAfter) * 1.001 + 1e6,
        `Available ${info["Data Space Available"]} is at most the host's free ${formatBytes(freeBefore)}..${formatBytes(freeAfter)}`);
      assert.ok(available < size * GiB);
      // --root wins over THINSTACK_ROOT
      fails(await thinstack(["ls"], { root: path.join(dir, "other"), env }), 1, /no store at '.*other'/);
      // neither: ./.thinstack in the working directory
      const cwd = path.join(dir, "work");
      await fs.mkdir(cwd);
      assert.match((await ts(["init", "--data-size", "8M", "--base-size", "16M"], { cwd })).stdout, new RegExp(`^Created a store in ${path.join(cwd, ".thinstack")}: `));
      assert.ok(await exists(path.join(cwd, ".thinstack", "metadata", "pool.cbor")));
    });
  });

  test("one command at a time per store: EBUSY while another holds it; a dead process's lock is taken over", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      const lock = path.join(root, "lock");
      await ts(["init", "--data-size", "8M", "--base-size", "16M"], r);
      await ts(["prepare", "c"], r);
      // `cp - KEY:/dir` holds the store while it waits for its tar stream on stdin.
      const [cmd, argv] = cliCommand(["--root", root, "cp", "-", "c:/"]);
      const holder = spawn(cmd, argv, { cwd: dir, stdio: ["pipe", "pipe", "pipe"] });
      let err = "";
      holder.stderr!.on("data", (c) => (err += c));
      const closed = new Promise<number | null>((resolve) => holder.on("close", (code) => resolve(code)));
      // The lock file is created, then its pid written: wait for both.
      const lockText = () => fs.readFile(lock, "utf8").catch(() => "");
      for (let waited = 0; (await lockText()).trim() === ""; waited += 50) {
        assert.ok(waited < 30_000, `the holder takes the lock: ${err}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal((await fs.readFile(lock, "utf8")).trim(), String(holder.pid));
      fails(await thinstack(["ls"], r), 1, /EBUSY/, new RegExp(`in use by process ${holder.pid}`));
      holder.stdin!.end(await mktar([{ name: "x", data: "x\n" }]));
      assert.equal(await closed, 0, err);
      assert.equal(await exists(lock), false, "the lock goes with its command");
      assert.equal((await ts(["cat", "c:/x"], r)).stdout, "x\n");
      // A lock left by a process that is gone (the holder's pid, now exited) is stale.
      await fs.writeFile(lock, `${holder.pid}\n`);
      assert.equal((await ts(["cat", "c:/x"], r)).stdout, "x\n");
      assert.equal(await exists(lock), false);
    });
  });

  test("--help on every command exits 0", async () => {
    const names = program().commands.map((c) => c.name());
    for (const c of COMMANDS) assert.ok(names.includes(c), `the CLI has '${c}'`);
    const runs = [["--help"], ["--version"], ...names.map((n) => [n, "--help"])];
    const queue = [...runs];
    const worker = async () => {
      for (let args = queue.shift(); args; args = queue.shift()) {
        // The two top-level ones through the bin in a process of their own, as a user runs them.
        const run = ok(await thinstack(args, { spawn: args.length === 1 }));
        if (args[0] === "--version") assert.match(run.stdout, /^\d+\.\d+\.\d+\n$/);
        else assert.match(run.stdout, new RegExp(`^Usage: thinstack${args.length > 1 ? ` ${args[0]}` : ""} `));
      }
    };
    await Promise.all([worker(), worker(), worker()]);
  });
});
