/**
 * An overlayfs upper directory, as containerd's unpacker writes one (0/0 character
 * devices for deletions, `trusted.overlay.opaque` for opaque directories), read back
 * with GNU tar and applied in overlay form: the same tree as the OCI layer it stands for.
 * Needs root (mknod, trusted.* xattrs) and python3 (to set xattrs: no xattr call in node:fs).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fsp from "node:fs/promises";
import { test } from "node:test";
import { applyTar } from "../../src/interchange/apply.ts";
import { tarOf as tarOfDir } from "../../src/daemon/staging.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { describeView, type T, tarOf } from "./helpers.ts";
import { MemTree } from "./memlayers.ts";

const isRoot = process.getuid?.() === 0;
const hasPython = spawnSync("python3", ["-c", "import os; os.setxattr"], { stdio: "ignore" }).status === 0;
const skip = !isRoot ? "needs root (mknod of whiteouts, trusted.* xattrs)" : !hasPython ? "needs python3 (to set xattrs)" : false;

function py(code: string): void {
  const r = spawnSync("python3", ["-c", code], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
}

test("an overlay upper applies as the OCI layer it stands for: whiteouts, opaque directories, xattrs, links", { skip }, async () => {
  const dir = await tmpDir("thinstack-overlay-");
  try {
    const lower: T[] = [
      { name: "etc/", mode: 0o750 }, { name: "etc/gone", data: "x" }, { name: "etc/keep", data: "k" },
      { name: "d/", mode: 0o700 }, { name: "d/old", data: "o" }, { name: "d/sub/deep", data: "p" },
    ];
    const upper = `${dir}/upper`;
    await fsp.mkdir(upper);
    py(`
import os
u = ${JSON.stringify(upper)}
os.mknod(u + "/top", 0o020000, 0)                     # whiteout of a file the lower does not have: still a whiteout
os.mkdir(u + "/etc", 0o750)
os.mknod(u + "/etc/gone", 0o020000 | 0o600, 0)        # overlayfs whiteout: char 0/0
os.mkdir(u + "/d", 0o711)
os.setxattr(u + "/d", "trusted.overlay.opaque", b"y")  # opaque: the lower's d/* is hidden
with open(u + "/d/new", "w") as f: f.write("n")
with open(u + "/bin", "wb") as f: f.write(b"\\x7fELF")
os.setxattr(u + "/bin", "security.capability", bytes([1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
os.setxattr(u + "/bin", "user.note", b"kept")
os.setxattr(u + "/bin", "trusted.overlay.origin", b"drop")
os.link(u + "/bin", u + "/bin2")
os.symlink("bin", u + "/link")
os.chown(u + "/d/new", 1000, 1001)
os.mkfifo(u + "/fifo")
`);
    const t = new MemTree();
    await applyTar(t, await tarOf(lower));
    const r = await applyTar(t, tarOfDir(upper), { whiteouts: "overlay" });
    assert.ok(r.entries > 0);
    const tree = await describeView(t);
    const names = tree.map((l) => l.split(" ").slice(0, 2).join(" "));
    assert.deepEqual(names, [
      "file /bin", "file /bin2", "dir /d", "file /d/new", "dir /etc", "file /etc/keep", "fifo /fifo", "symlink /link",
    ]);
    assert.ok(t.opaque.has("/d"), "d is opaque in the layer");
    const xattrs = await t.xattrs("/bin");
    assert.deepEqual([...xattrs!.keys()].sort(), ["security.capability", "user.note"], "overlayfs's own attributes are dropped");
    assert.deepEqual([...xattrs!.get("security.capability")!], [1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal((await t.xattrs("/d"))?.has("trusted.overlay.opaque") ?? false, false);
    assert.equal((await t.lstat("/bin"))!.ino, (await t.lstat("/bin2"))!.ino, "a hard link stays one inode");
    assert.equal((await t.lstat("/d/new"))!.uid, 1000);
    assert.equal((await t.lstat("/d"))!.mode & 0o7777, 0o711);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("a tar of a directory that is not there fails with tar's own words", async () => {
  await assert.rejects(async () => {
    for await (const _ of tarOfDir("/nonexistent/thinstack-upper")) { /* drain */ }
  }, (e: Error) => {
    assert.match(e.message, /^EIO: .*tar of the unpacked layer failed \(exit code 2\): (\S*\/)?tar: .*nonexistent.*Cannot open/);
    return true;
  });
});
