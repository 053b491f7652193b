/**
 * `thinstack cp KEY:/path HOSTPATH` writes nothing outside the destination, whatever the
 * layer holds and whatever the destination already holds: the cases of node-tar's
 * advisories, as they arise when a tree is copied onto the host.
 *
 * - CVE-2021-32803, CVE-2021-37701: a symlink, then a directory of the same name (here:
 *   a symlink already in the destination, by an earlier copy or anyone, where the copy
 *   makes a directory; and, on a case-folding file system, `A` then `a`).
 * - CVE-2021-32804: absolute paths (absolute symlinks in the layer stay symlinks, and
 *   nothing is written through them).
 * - CVE-2021-37712, CVE-2021-37713: unicode and case folding, `..`, `C:..`, backslashes:
 *   on Linux these are ordinary names and stay inside; where a directory folds case (ext4
 *   casefold, when the kernel has it) the collision is refused.
 * - A symlink or a hard link already in the destination, pointing outside, where the
 *   copy writes a file: it is replaced, never written through.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { describe, test } from "node:test";
import { tmpDir } from "../helpers/tmp.ts";
import { tarOf } from "../interchange/helpers.ts";
import { fails, thinstack, ts } from "./cli.ts";

const NFC = "\u00e9";
const NFD = "e\u0301";

const casefold = process.getuid?.() !== 0
  ? "needs root (a loop-mounted ext4)"
  : !fs.existsSync("/sys/fs/ext4/features/casefold")
  ? "this kernel's ext4 has no casefold support (CONFIG_UNICODE)"
  : spawnSync("mkfs.ext4", ["-V"], { stdio: "ignore" }).status !== 0
  ? "mkfs.ext4 is not installed (e2fsprogs)"
  : false;
if (casefold) console.warn(`cp case-folding test: ${casefold}; skipping it`);

interface World {
  dir: string;
  r: { root: string };
  /** A host directory outside every destination, holding `victim`. */
  outside: string;
}

/** A store with layer `a` holding `/tree`: everything a hostile layer might use to escape. */
async function withWorld(fn: (w: World) => Promise<void>): Promise<void> {
  const dir = await tmpDir("thinstack-cphost-");
  try {
    const r = { root: path.join(dir, "store") };
    const outside = path.join(dir, "outside");
    await fsp.mkdir(outside);
    await fsp.writeFile(path.join(outside, "victim"), "host\n");
    await ts(["init", "--data-size", "64M", "--base-size", "32M"], r);
    await ts(["prepare", "a"], r);
    const layer = path.join(dir, "layer.tar");
    await fsp.writeFile(layer, await tarOf([
      { name: "tree/", mode: 0o755 },
      { name: "tree/file", data: "layer file\n" },
      { name: "tree/hl", type: "link", linkname: "tree/file" },
      { name: "tree/sh", data: "#!/bin/sh\n", mode: 0o4755 },
      { name: "tree/abs", type: "symlink", linkname: outside },
      { name: "tree/up", type: "symlink", linkname: "../../outside" },
      { name: "tree/sub/", mode: 0o750 },
      { name: "tree/sub/x", data: "x\n" },
      { name: "tree/C:..", data: "drive-relative on Windows, a name here\n" },
      { name: "tree/..\\..\\bs", data: "backslashes are a name here\n" },
      { name: "tree/A", type: "symlink", linkname: outside },
      { name: "tree/a/", mode: 0o755 },
      { name: "tree/a/f", data: "under a\n" },
      { name: `tree/${NFC}`, type: "symlink", linkname: outside },
      { name: `tree/${NFD}/`, mode: 0o755 },
      { name: `tree/${NFD}/f`, data: "under NFD\n" },
    ]));
    await ts(["apply", "a", layer], r);
    await fn({ dir, r, outside });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** The host directory outside holds exactly its one file, unchanged, linked once. */
async function untouched(outside: string): Promise<void> {
  assert.deepEqual(await fsp.readdir(outside), ["victim"]);
  assert.equal(await fsp.readFile(path.join(outside, "victim"), "utf8"), "host\n");
  assert.equal((await fsp.stat(path.join(outside, "victim"))).nlink, 1);
}

async function newDir(dir: string, name: string): Promise<string> {
  const p = path.join(dir, name);
  await fsp.mkdir(p);
  return p;
}

describe("cp to the host writes nothing outside the destination", () => {
  test("a hostile tree lands inside, symlinks kept as symlinks, names taken literally; setuid dropped unless --keep-setid", async () => {
    await withWorld(async ({ dir, r, outside }) => {
      const dest = await newDir(dir, "dest");
      const run = await ts(["cp", "a:/tree", dest], r, /./);
      assert.equal(run.stderr, "thinstack: /tree/sh: setuid bit not kept (mode 0755; keepSetid, --keep-setid keeps them)\n");
      const t = path.join(dest, "tree");
      assert.deepEqual((await fsp.readdir(t)).sort(), ["..\\..\\bs", "A", "C:..", "a", "abs", "file", "hl", "sh", "sub", "up", NFD, NFC].sort());
      assert.equal(await fsp.readlink(path.join(t, "abs")), outside);
      assert.equal(await fsp.readlink(path.join(t, "up")), "../../outside");
      assert.equal(await fsp.readlink(path.join(t, "A")), outside);
      assert.equal(await fsp.readlink(path.join(t, NFC)), outside);
      assert.equal(await fsp.readFile(path.join(t, "a", "f"), "utf8"), "under a\n");
      assert.equal(await fsp.readFile(path.join(t, NFD, "f"), "utf8"), "under NFD\n");
      assert.equal(await fsp.readFile(path.join(t, "C:.."), "utf8"), "drive-relative on Windows, a name here\n");
      assert.equal(fs.lstatSync(path.join(t, "hl")).ino, fs.lstatSync(path.join(t, "file")).ino, "hard links stay linked");
      assert.equal(fs.lstatSync(path.join(t, "sh")).mode & 0o7777, 0o755);
      assert.equal(fs.lstatSync(path.join(t, "sub")).mode & 0o7777, 0o750);
      await untouched(outside);

      const kept = await newDir(dir, "kept");
      await ts(["cp", "--keep-setid", "a:/tree/sh", kept], r);
      assert.equal(fs.lstatSync(path.join(kept, "sh")).mode & 0o7777, 0o4755);
    });
  });

  test("a symlink or hard link in the destination where a file goes is replaced, not written through (dangling ones included)", async () => {
    await withWorld(async ({ dir, r, outside }) => {
      // A file onto a symlink to a host file, named directly and as a member of a tree.
      const d1 = await newDir(dir, "d1");
      await fsp.symlink(path.join(outside, "victim"), path.join(d1, "file"));
      await ts(["cp", "a:/tree/file", d1 + "/"], r);
      assert.equal(await fsp.readFile(path.join(d1, "file"), "utf8"), "layer file\n");
      assert.ok(fs.lstatSync(path.join(d1, "file")).isFile());
      await untouched(outside);

      const d2 = await newDir(dir, "d2");
      await fsp.mkdir(path.join(d2, "tree"));
      await fsp.symlink(path.join(outside, "victim"), path.join(d2, "tree", "file"));
      await fsp.symlink(path.join(outside, "planted"), path.join(d2, "tree", "sh")); // dangling: following it would make a file outside
      await fsp.link(path.join(outside, "victim"), path.join(d2, "tree", "hl")); // a hard link to the host file
      assert.equal((await fsp.stat(path.join(outside, "victim"))).nlink, 2);
      await ts(["cp", "a:/tree", d2], r, /setuid/);
      assert.equal(await fsp.readFile(path.join(d2, "tree", "file"), "utf8"), "layer file\n");
      assert.equal(fs.lstatSync(path.join(d2, "tree", "hl")).ino, fs.lstatSync(path.join(d2, "tree", "file")).ino);
      assert.ok(fs.lstatSync(path.join(d2, "tree", "sh")).isFile());
      await untouched(outside);

      // The destination named itself is a dangling symlink: replaced by the file.
      const d3 = await newDir(dir, "d3");
      await fsp.symlink(path.join(outside, "new"), path.join(d3, "f"));
      await ts(["cp", "a:/tree/file", path.join(d3, "f")], r);
      assert.equal(await fsp.readFile(path.join(d3, "f"), "utf8"), "layer file\n");
      await untouched(outside);
    });
  });

  test("a symlink where a directory goes (an earlier copy's, or anyone's) is refused, and nothing is written through it", async () => {
    await withWorld(async ({ dir, r, outside }) => {
      // The tree's own name, in a destination directory.
      const d1 = await newDir(dir, "d1");
      await fsp.symlink(outside, path.join(d1, "tree"));
      fails(await thinstack(["cp", "a:/tree", d1 + "/"], r), 1, /^thinstack: ENOTDIR: /, /a symlink this copy did not make is where a directory goes/);
      await untouched(outside);

      // A directory deep in the tree: an earlier copy planted `sub` as a symlink (its
      // layer had one), this copy has a directory there.
      const d2 = await newDir(dir, "d2");
      await ts(["cp", "a:/tree/abs", path.join(d2, "sub")], r);
      assert.equal(await fsp.readlink(path.join(d2, "sub")), outside);
      fails(await thinstack(["cp", "a:/tree/sub", d2 + "/"], r), 1, /ENOTDIR/, /'[^']*\/d2\/sub'/);
      await fsp.mkdir(path.join(d2, "tree"));
      await fsp.symlink(outside, path.join(d2, "tree", "sub"));
      fails(await thinstack(["cp", "a:/tree", d2], r), 1, /ENOTDIR/, /'[^']*\/d2\/tree\/sub'/);
      await untouched(outside);

      // A directory onto a file, and a file onto a directory inside the tree: refused too.
      const d3 = await newDir(dir, "d3");
      await fsp.writeFile(path.join(d3, "tree"), "a file\n");
      fails(await thinstack(["cp", "a:/tree", d3], r), 1, /ENOTDIR/, /a non-directory this copy did not make/);
      const d4 = await newDir(dir, "d4");
      await fsp.mkdir(path.join(d4, "tree", "file"), { recursive: true });
      fails(await thinstack(["cp", "a:/tree", d4], r), 1, /^thinstack: EISDIR: /, /'[^']*\/d4\/tree\/file'/);
      await untouched(outside);
    });
  });

  test("on a case-folding directory, A then a and NFC then NFD collide: refused, nothing written through", { skip: casefold }, async () => {
    await withWorld(async ({ dir, r, outside }) => {
      const img = path.join(dir, "cf.img");
      const mnt = await newDir(dir, "mnt");
      const sh = (cmd: string, ...args: string[]) => {
        const p = spawnSync(cmd, args, { encoding: "utf8" });
        assert.equal(p.status, 0, `${cmd} ${args.join(" ")}: ${p.stderr}`);
      };
      await fsp.writeFile(img, "");
      await fsp.truncate(img, 32 * 2 ** 20);
      sh("mkfs.ext4", "-q", "-O", "casefold", img);
      sh("mount", "-o", "loop", img, mnt);
      try {
        const cf = path.join(mnt, "cf");
        await fsp.mkdir(cf);
        sh("chattr", "+F", cf);
        fails(await thinstack(["cp", "a:/tree", cf], r), 1, /ENOTDIR|EISDIR/);
        await untouched(outside);
      } finally {
        sh("umount", mnt);
      }
    });
  });
});
