/**
 * containerd's archive tests TestBreakouts and TestApplyTar (pkg/archive/tar_test.go),
 * ported: the same archives and expectations, applied to an in-memory layer. Nothing may
 * escape the layer's root, and paths resolve there the way containerd resolves them.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { applyTar } from "../../src/interchange/apply.ts";
import { cleanComponents, toPath } from "../../src/interchange/names.ts";
import { resolveInRoot } from "../../src/interchange/resolve.ts";
import { collect, type T, tarOf } from "./helpers.ts";
import { MemTree } from "./memlayers.ts";

const dir = (name: string, mode = 0o755): T => ({ name, type: "dir", mode });
const file = (name: string, data: string, mode = 0o644): T => ({ name, type: "file", data, mode });
const symlink = (target: string, name: string): T => ({ name, type: "symlink", linkname: target, mode: 0o777 });
const link = (target: string, name: string): T => ({ name, type: "link", linkname: target });

type Check = (t: MemTree) => Promise<void>;

/** The inode a path leads to, symlinks followed inside the root (continuity's RootPath + stat). */
async function statFollow(t: MemTree, p: string) {
  return await t.lstat(toPath(await resolveInRoot(t, cleanComponents(p), true)));
}

const text = async (t: MemTree, p: string) => new TextDecoder().decode(await collect(t.read(p)));
const unbroken: Check = async (t) => assert.equal(await text(t, "/etc/unbroken"), "unbroken");
const sameFile = (a: string, b: string): Check => async (t) => {
  const [x, y] = [await statFollow(t, a), await statFollow(t, b)];
  assert.ok(x && y, `${a} and ${b} exist`);
  assert.equal(x.ino, y.ino, `${a} and ${b} are the same file`);
};
const notSameFile = (a: string, b: string): Check => async (t) => {
  const [x, y] = [await statFollow(t, a), await statFollow(t, b)];
  assert.notEqual(x?.ino, y?.ino);
};
const sameSymlink = (a: string, b: string): Check => async (t) => {
  assert.equal((await t.lstat(a))?.type, "symlink");
  assert.equal(await t.readlink(a), await t.readlink(b));
};
const fileValue = (p: string, v: string): Check => async (t) => assert.equal(await text(t, p), v);
const fileNotExists = (p: string): Check => async (t) => assert.equal(await t.lstat(p), undefined);
const all = (...cs: Check[]): Check => async (t) => {
  for (const c of cs) await c(t);
};

interface Case {
  name: string;
  lower?: T[];
  w: T[];
  check?: Check;
  invalid?: boolean;
}

const cases: Case[] = [
  { name: "SymlinkAbsolute", w: [dir("etc"), symlink("/etc", "localetc"), file("/localetc/unbroken", "unbroken")], check: unbroken },
  { name: "SymlinkUpAndOut", w: [dir("etc"), dir("dummy"), symlink("/dummy/../etc", "localetc"), file("/localetc/unbroken", "unbroken")], check: unbroken },
  {
    name: "SymlinkMultipleAbsolute",
    w: [dir("etc"), dir("dummy"), symlink("/etc", "/dummy/etc"), symlink("/dummy/etc", "localetc"), file("/dummy/etc/unbroken", "unbroken")],
    check: unbroken,
  },
  {
    name: "SymlinkMultipleRelative",
    w: [dir("etc"), dir("dummy"), symlink("/etc", "/dummy/etc"), symlink("./dummy/etc", "localetc"), file("/dummy/etc/unbroken", "unbroken")],
    check: unbroken,
  },
  {
    name: "SymlinkEmptyFile",
    w: [dir("etc"), file("etc/emptied", "notempty"), symlink("/etc", "localetc"), file("/localetc/emptied", "")],
    check: fileValue("/etc/emptied", ""),
  },
  {
    name: "HardlinkRelative",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), dir("breakouts"), symlink("../../etc", "breakouts/d1"), link("/breakouts/d1/passwd", "breakouts/mypasswd")],
    check: sameFile("/breakouts/mypasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkDownAndOut",
    w: [
      dir("etc", 0o770), file("/etc/passwd", "inside"), dir("breakouts"), dir("downandout"),
      symlink("../downandout/../../etc", "breakouts/d1"), link("/breakouts/d1/passwd", "breakouts/mypasswd"),
    ],
    check: sameFile("/breakouts/mypasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkAbsolute",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), symlink("/etc", "localetc"), link("/localetc/passwd", "localpasswd")],
    check: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkRelativeLong",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), symlink("../../../../../../../etc", "localetc"), link("/localetc/passwd", "localpasswd")],
    check: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkRelativeUpAndOut",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), symlink("upandout/../../../etc", "localetc"), link("/localetc/passwd", "localpasswd")],
    check: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkDirectRelative",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), link("../../../../../etc/passwd", "localpasswd")],
    check: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkDirectAbsolute",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), link("/etc/passwd", "localpasswd")],
    check: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkParentDirectory",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), symlink("/etc/", ".."), link("/etc/passwd", "localpasswd")],
    check: sameFile("/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkEmptyFilename",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), symlink("/etc/", ""), link("/etc/passwd", "localpasswd")],
    check: sameFile("/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkParentRelative",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), symlink("/etc/", "localetc/sub/.."), link("/etc/passwd", "/localetc/localpasswd")],
    check: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkSlashEnded",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), dir("localetc/", 0o770), link("/etc/passwd", "/localetc/localpasswd")],
    check: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkOverrideDirectory",
    lower: [dir("etc"), file("etc/passwd", "inside"), dir("localetc")],
    w: [symlink("/etc", "localetc"), link("/etc/passwd", "/localetc/localpasswd")],
    check: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkOverrideDirectoryRelative",
    lower: [dir("etc"), file("etc/passwd", "inside"), dir("localetc")],
    w: [symlink("../../etc", "localetc"), link("/etc/passwd", "/localetc/localpasswd")],
    check: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "DirectoryOverrideSymlink",
    lower: [dir("etc"), file("etc/passwd", "inside"), symlink("/etc", "localetc")],
    w: [dir("/localetc/"), link("/etc/passwd", "/localetc/localpasswd")],
    check: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "DirectoryOverrideSymlinkAndHardlink",
    lower: [dir("etc"), file("etc/passwd", "inside"), symlink("etc", "localetc"), link("/etc/passwd", "/localetc/localpasswd")],
    w: [dir("/localetc/"), file("/localetc/localpasswd", "different")],
    check: notSameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  { name: "WhiteoutRootParent", lower: [dir("etc"), file("etc/passwd", "inside")], w: [file(".wh...", "")], invalid: true },
  { name: "WhiteoutParent", lower: [dir("etc"), file("etc/passwd", "inside")], w: [file("etc/.wh...", "")], invalid: true },
  { name: "WhiteoutRoot", lower: [dir("etc"), file("etc/passwd", "inside")], w: [file(".wh..", "")], invalid: true },
  { name: "WhiteoutCurrentDirectory", lower: [dir("etc"), file("etc/passwd", "inside")], w: [file("etc/.wh..", "")], invalid: true },
  { name: "WhiteoutEmptyName", lower: [dir("etc"), file("etc/passwd", "inside")], w: [file("etc/.wh.", "")], invalid: true },
  {
    name: "WhiteoutSymlink",
    lower: [dir("etc"), file("etc/passwd", "all users"), symlink("/etc", "localetc")],
    w: [file(".wh.localetc", "")],
    check: all(fileValue("/etc/passwd", "all users"), fileNotExists("/localetc")),
  },
  {
    name: "WhiteoutSymlinkPath",
    lower: [dir("etc"), file("etc/passwd", "all users"), file("etc/whitedout", "ahhhh whiteout"), symlink("/etc", "localetc")],
    w: [file("localetc/.wh.whitedout", "")],
    check: all(fileValue("/etc/passwd", "all users"), fileNotExists("/etc/whitedout")),
  },
  {
    name: "WhiteoutDirectoryName",
    lower: [dir("etc"), file("etc/passwd", "all users"), file("etc/whitedout", "ahhhh whiteout"), symlink("/etc", "localetc")],
    w: [file(".wh.etc/somefile", "non-empty")],
    check: all(fileValue("/etc/passwd", "all users"), fileValue("/.wh.etc/somefile", "non-empty")),
  },
  {
    name: "WhiteoutDeadSymlinkParent",
    lower: [dir("etc"), file("etc/passwd", "all users"), symlink("/dne", "localetc")],
    w: [file("localetc/.wh.etc", "")],
    check: fileValue("/etc/passwd", "all users"),
  },
  {
    name: "WhiteoutRelativePath",
    lower: [dir("etc"), file("etc/passwd", "all users"), symlink("/dne", "localetc")],
    w: [file("dne/../.wh.etc", "")],
    check: fileNotExists("/etc/passwd"),
  },
  {
    name: "HardlinkSymlinkBeforeCreateTarget",
    w: [dir("etc", 0o770), symlink("/etc/passwd", "localpasswd"), link("localpasswd", "localpasswd-dup"), file("/etc/passwd", "after")],
    check: sameFile("localpasswd-dup", "/etc/passwd"),
  },
  {
    name: "HardlinkSymlinkRelative",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), symlink("../../../../../etc/passwd", "passwdlink"), link("/passwdlink", "localpasswd")],
    check: all(sameSymlink("/localpasswd", "/passwdlink"), sameFile("/localpasswd", "/etc/passwd")),
  },
  {
    name: "HardlinkSymlinkAbsolute",
    w: [dir("etc", 0o770), file("/etc/passwd", "inside"), symlink("/etc/passwd", "passwdlink"), link("/passwdlink", "localpasswd")],
    check: all(sameSymlink("/localpasswd", "/passwdlink"), sameFile("/localpasswd", "/etc/passwd")),
  },
  {
    // Host paths inside an archive stay inside the layer: the link is to the symlink itself.
    name: "HardlinkSymlinkChmod",
    w: [symlink("/tmp/td/perm400", "/tmp/td/also-exists-outside-root"), link("/tmp/td/also-exists-outside-root", "sketchylink")],
    check: all(sameSymlink("/sketchylink", "/tmp/td/also-exists-outside-root"), async (t) => assert.equal(await t.lstat("/tmp/td/perm400"), undefined)),
  },
  {
    name: "DirectoryCreation (TestApplyTar)",
    lower: [dir("etc")],
    w: [dir("/etc/subdir"), dir("/etc/subdir2/"), dir("/etc/subdir2/more"), dir("/other/noparent-1/1"), dir("/other/noparent-2/2/")],
    check: async (t) => {
      for (const d of ["etc/subdir", "etc/subdir2", "etc/subdir2/more", "other/noparent-1/1", "other/noparent-2/2"]) {
        assert.equal((await statFollow(t, d))?.type, "dir", d);
      }
    },
  },
];

for (const c of cases) {
  test(`TestBreakouts/${c.name}`, async () => {
    const t = new MemTree();
    if (c.lower) await applyTar(t, await tarOf(c.lower));
    const w = await tarOf(c.w);
    if (c.invalid) {
      await assert.rejects(applyTar(t, w), (e: NodeJS.ErrnoException) => e.code === "EINVAL" && /invalid whiteout/.test(e.message));
      return;
    }
    await applyTar(t, w);
    await c.check!(t);
  });
}

test("symlink loops fail with ELOOP instead of spinning", async () => {
  const t = new MemTree();
  await assert.rejects(applyTar(t, await tarOf([symlink("b", "a"), symlink("a", "b"), file("a/x", "1")])), { code: "ELOOP" });
});

test("an entry under a file fails with ENOTDIR", async () => {
  const t = new MemTree();
  await assert.rejects(applyTar(t, await tarOf([file("f", "1"), file("f/x", "1")])), { code: "ENOTDIR" });
});
