/**
 * Checking out a hostile image as root: a block device of the host's first disk, a
 * setuid shell, symlinks that lead out of the root (`..` and absolute) with files
 * written through them, and hard links whose names lead out. The checkout must plant
 * nothing outside its directory, make no device or setuid file unless asked, and keep
 * its root 0700 until it is done.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { makedev } from "../../src/interchange/devices.ts";
import { ImageStore } from "../../src/images/mod.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { tarOf } from "./helpers.ts";

const MiB = 2 ** 20;
const needRoot = process.getuid?.() === 0 ? false : "needs root: owners, device nodes and setuid files are what is tested (CI runs as root)";
if (needRoot) console.warn(`hostile checkout tests: ${needRoot}; skipping`);

interface World {
  store: ImageStore;
  /** A host directory the image's links point into, holding `secret`. */
  outside: string;
  /** Where checkouts go. */
  dir: string;
}

async function withWorld(fn: (w: World) => Promise<void>): Promise<void> {
  const dir = await tmpDir("thinstack-hostile-");
  const outside = path.join(dir, "outside");
  await fsp.mkdir(outside);
  await fsp.writeFile(path.join(outside, "secret"), "host secret\n");
  const store = await ImageStore.open(path.join(dir, "store"), { create: true, dataSize: 128 * MiB, baseSize: 64 * MiB });
  try {
    await hostileImage(store, outside);
    await fn({ store, outside, dir });
  } finally {
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** The image "evil": every entry is something a checkout as root must not do blindly. */
async function hostileImage(store: ImageStore, outside: string): Promise<void> {
  await store.prepare("evil-x");
  await store.apply("evil-x", await tarOf([
    { name: "dev/", mode: 0o755 },
    { name: "dev/sda", type: "block", devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
    { name: "dev/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 },
    { name: "bin/", mode: 0o755 },
    { name: "bin/sh", data: "#!/bin/sh\n", mode: 0o4755 },
    { name: "bin/sg", data: "sg\n", mode: 0o2755, gid: 42 },
    { name: "tmp/", mode: 0o1777 },
    // A relative symlink out of the root on the host (rootfs/up -> DIR/outside), then a file through it.
    { name: "up", type: "symlink", linkname: "../outside" },
    { name: "up/escaped", data: "through ..\n" },
    // An absolute symlink to the host's directory, then files through it.
    { name: "abs", type: "symlink", linkname: outside },
    { name: "abs/planted", data: "through an absolute symlink\n" },
    { name: "abs/secret", data: "the image's secret\n" },
    // Hard links named by paths that exist on the host.
    { name: "hl", type: "link", linkname: path.join(outside, "secret") },
    { name: "hl2", type: "link", linkname: "../../../../bin/sh" },
  ]));
  await store.fs("evil-x").chmod("/", 0o751);
  await store.commit("evil", "evil-x");
}

const mode = (p: string) => fs.lstatSync(p).mode & 0o7777;

/** Nothing was written outside: the host directory holds its one file, unchanged and unlinked. */
async function outsideUntouched(outside: string): Promise<void> {
  assert.deepEqual(await fsp.readdir(outside), ["secret"]);
  assert.equal(await fsp.readFile(path.join(outside, "secret"), "utf8"), "host secret\n");
  assert.equal((await fsp.stat(path.join(outside, "secret"))).nlink, 1);
}

/** What any checkout of "evil" must hold, whatever its options. */
async function sameTree(rootfs: string, outside: string): Promise<void> {
  assert.equal(await fsp.readlink(path.join(rootfs, "up")), "../outside");
  assert.equal(await fsp.readlink(path.join(rootfs, "abs")), outside);
  // Files "through" the symlinks are where the layer put them: inside the root.
  assert.equal(await fsp.readFile(path.join(rootfs, "outside/escaped"), "utf8"), "through ..\n");
  const inner = path.join(rootfs, outside);
  assert.equal(await fsp.readFile(path.join(inner, "planted"), "utf8"), "through an absolute symlink\n");
  assert.equal(await fsp.readFile(path.join(inner, "secret"), "utf8"), "the image's secret\n");
  // Hard links link the checkout's own files.
  assert.equal(fs.lstatSync(path.join(rootfs, "hl")).ino, fs.lstatSync(path.join(inner, "secret")).ino);
  assert.notEqual(fs.lstatSync(path.join(rootfs, "hl")).ino, fs.lstatSync(path.join(outside, "secret")).ino);
  assert.equal(fs.lstatSync(path.join(rootfs, "hl2")).ino, fs.lstatSync(path.join(rootfs, "bin/sh")).ino);
  assert.equal(mode(path.join(rootfs, "tmp")), 0o1777, "a sticky directory stays sticky");
  assert.equal(fs.lstatSync(path.join(rootfs, "bin/sg")).gid, 42);
  await outsideUntouched(outside);
}

describe("checkout of a hostile image, as root", { skip: needRoot }, () => {
  it("makes no device and no setuid or setgid file unless asked, says so, and keeps the root 0700 until done", async () => {
    await withWorld(async ({ store, outside, dir }) => {
      const rootfs = path.join(dir, "rootfs");
      const seen = new Set<string>();
      const report = await store.checkout("evil", rootfs, {
        onProgress: () => {
          const st = fs.lstatSync(rootfs);
          seen.add(`${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
        },
      });
      assert.deepEqual([...seen], ["700 0:0"], "while files are written the root is 0700 and root's");
      assert.equal(mode(rootfs), 0o751, "then it has the layer root's mode");

      assert.equal(fs.existsSync(path.join(rootfs, "dev/sda")), false);
      assert.equal(fs.existsSync(path.join(rootfs, "dev/null")), false);
      assert.equal(mode(path.join(rootfs, "bin/sh")), 0o755);
      assert.equal(mode(path.join(rootfs, "bin/sg")), 0o755);
      const skipped = report.skipped.join("\n");
      assert.match(skipped, /^\/dev\/sda: block device 8,0 not made \(device nodes are made only when asked for/m);
      assert.match(skipped, /^\/dev\/null: char device 1,3 not made/m);
      assert.match(skipped, /^\/bin\/sh: setuid bit not kept \(mode 0755; keepSetid, --keep-setid keeps them\)$/m);
      assert.match(skipped, /^\/bin\/sg: setgid bit not kept/m);
      assert.doesNotMatch(skipped, /^\/hl2:/m, "a hard link to the setuid file is the same file: reported once, under its first name");
      assert.equal(report.skipped.length, 4, skipped);
      await sameTree(rootfs, outside);
    });
  });

  it("with devices and keepSetid, makes them as the image has them", async () => {
    await withWorld(async ({ store, outside, dir }) => {
      const rootfs = path.join(dir, "rootfs");
      const report = await store.checkout("evil", rootfs, { devices: true, keepSetid: true });
      assert.deepEqual(report.skipped, []);
      const sda = fs.lstatSync(path.join(rootfs, "dev/sda"));
      assert.ok(sda.isBlockDevice());
      assert.equal(sda.rdev, makedev(8, 0));
      assert.equal([sda.mode & 0o7777, sda.gid].join(), [0o660, 6].join());
      assert.ok(fs.lstatSync(path.join(rootfs, "dev/null")).isCharacterDevice());
      assert.equal(mode(path.join(rootfs, "bin/sh")), 0o4755);
      assert.equal(mode(path.join(rootfs, "bin/sg")), 0o2755);
      assert.equal(mode(rootfs), 0o751);
      await sameTree(rootfs, outside);
    });
  });

  it("into an existing empty directory open to all: it is 0700 and root's while written; a checkout cut short leaves it so", async () => {
    await withWorld(async ({ store, outside, dir }) => {
      const rootfs = path.join(dir, "rootfs");
      await fsp.mkdir(rootfs);
      await fsp.chown(rootfs, 1000, 1000);
      await fsp.chmod(rootfs, 0o777);
      const modes: number[] = [];
      await store.checkout("evil", rootfs, { onProgress: () => void modes.push(mode(rootfs)) });
      assert.ok(modes.length > 0 && modes.every((m) => m === 0o700), modes.map((m) => m.toString(8)).join());
      assert.equal(mode(rootfs), 0o751);

      const cut = path.join(dir, "cut");
      await assert.rejects(store.checkout("evil", cut, { onProgress: () => { throw new Error("stop here"); } }), /stop here/);
      assert.equal(mode(cut), 0o700);
      await outsideUntouched(outside);
    });
  });
});
