/**
 * Real programs on mounted layers (issue 11): a busybox and an alpine userland run in a
 * chroot on a container layer, GNU tar extracts a rootfs into an empty layer (compared
 * with the same extraction on ext4), and git keeps a repository in a mount across a
 * remount. Programs run in child processes; what the layers hold afterwards is read
 * back through the store, and the image layers below must be as they were.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { mount } from "../../src/mount/mod.ts";
import { describeLayer, plain } from "../layers/helpers.ts";
import { ok } from "./helpers.ts";
import { ALPINE, BUSYBOX, type ImageFixture, imageFixture, skipUnless } from "./programs-helpers.ts";

/** Imports busybox and prepares container `ctr` over it; returns the image's top layer. */
async function busybox(f: ImageFixture): Promise<string> {
  const { layers } = await f.store.importImage(BUSYBOX, { name: "busybox" });
  await f.store.prepare("ctr", layers.at(-1));
  return layers.at(-1)!;
}

/** Applies the alpine minirootfs to a layer, commits it as "alpine" and prepares `ctr` over it. */
async function alpine(f: ImageFixture): Promise<string> {
  await f.store.prepare("alpine-x");
  await f.store.apply("alpine-x", ALPINE);
  await f.store.commit("alpine", "alpine-x");
  await f.store.prepare("ctr", "alpine");
  return "alpine";
}

test("chroot into a mounted busybox container: sh scripts write, delete and list files; the image is unchanged", { skip: skipUnless("chroot") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  const top = await busybox(f);
  const before = plain(await describeLayer(f.store.fs(top)));
  const m = await mount(f.store, "ctr", await f.scratch("root"));
  try {
    const run = (script: string) => ok(`chroot ${m.path} /bin/sh -ec '${script}'`, { PATH: "/bin:/usr/bin:/sbin:/usr/sbin", TZ: "UTC" });
    assert.equal(await run("busybox | head -1 | cut -d\" \" -f1,2"), "BusyBox v1.38.0\n");
    await run([
      "echo hello > /tmp/a",
      "mkdir -p /root/work/deep/er",
      "seq 1 2000 > /root/work/numbers",
      "cp /root/work/numbers /root/work/deep/er/copy",
      "ln -s ../numbers /root/work/deep/link",
      "ln /root/work/numbers /root/work/hard",
      "sed -i s/^1000$/thousand/ /root/work/numbers", // a new file renamed over the old
      "echo appended >> /etc/passwd",
      "rm /bin/vi /etc/shadow",
      "rm -r /var/spool",
      "mv /tmp/a /tmp/b",
      "chmod 600 /tmp/b",
      "touch -d \"2001-02-03 04:05:06\" /tmp/b",
    ].join("; "));
    assert.equal(await run("ls /tmp; ls /root/work | tr \"\\n\" \" \"; echo; ls -ln /tmp/b | cut -c1-10"), "b\ndeep hard numbers \n-rw-------\n");
    assert.equal(await run("grep -c . /root/work/numbers; grep -n thousand /root/work/numbers; cat /root/work/deep/link | wc -l; wc -l < /root/work/hard"), "2000\n1000:thousand\n2000\n2000\n");
    assert.equal(await run("test ! -e /bin/vi && test ! -e /etc/shadow && test ! -e /var/spool && test -x /bin/sh && echo gone"), "gone\n");
    assert.equal(await run("ls -la /bin | grep -c \" vi$\" || true"), "0\n");
    assert.equal(await run("stat -c %h /bin/ls"), "404\n", "the hard-link group of the busybox binary lost one name");
    assert.equal(await run("find / -xdev -name numbers -o -name copy | sort"), "/root/work/deep/er/copy\n/root/work/numbers\n");
  } finally {
    await m.unmount();
  }
  const ctr = f.store.fs("ctr");
  assert.equal(await ctr.readFile("/tmp/b", "utf8"), "hello\n");
  assert.equal((await ctr.stat("/tmp/b")).mode & 0o7777, 0o600);
  assert.equal((await ctr.stat("/tmp/b")).mtimeMs, Date.UTC(2001, 1, 3, 4, 5, 6));
  const numbers = Array.from({ length: 2000 }, (_, i) => (i === 999 ? "thousand" : String(i + 1))).join("\n") + "\n";
  assert.equal(await ctr.readFile("/root/work/numbers", "utf8"), numbers);
  assert.equal(await ctr.readFile("/root/work/deep/er/copy", "utf8"), numbers.replace("thousand", "1000"));
  assert.equal(await ctr.readFile("/root/work/hard", "utf8"), numbers.replace("thousand", "1000"), "sed -i replaced the name, not the linked file");
  assert.equal(await ctr.readlink("/root/work/deep/link"), "../numbers");
  assert.match(String(await ctr.readFile("/etc/passwd", "utf8")), /^root:.*\nappended\n$/s);
  await assert.rejects(ctr.stat("/bin/vi"), { code: "ENOENT" });
  await assert.rejects(ctr.stat("/var/spool"), { code: "ENOENT" });
  assert.equal((await ctr.stat("/bin/ls")).nlink, 404);
  const changes: string[] = [];
  for await (const c of f.store.changes("ctr")) changes.push(`${c.kind} ${c.path}`);
  assert.ok(changes.includes("deleted /bin/vi") && changes.includes("deleted /var/spool") && changes.includes("added /tmp/b"), changes.join("\n"));
  assert.deepEqual(plain(await describeLayer(f.store.fs(top))), before, "the image layer is unchanged");
  assert.deepEqual(await f.store.check(), []);
});

test("chroot into a mounted alpine container: dynamically linked programs, apk's database, scripts that write and delete", { skip: skipUnless("chroot") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  const img = await alpine(f);
  const before = plain(await describeLayer(f.store.fs(img)));
  const m = await mount(f.store, "ctr", await f.scratch("root"));
  try {
    const run = (script: string) => ok(`chroot ${m.path} /bin/sh -ec '${script}'`, { PATH: "/bin:/usr/bin:/sbin:/usr/sbin", TZ: "UTC" });
    assert.match(await run(". /etc/os-release; echo $ID $VERSION_ID"), /^alpine 3\.20\.3\n$/);
    // apk is linked against musl, libapk, libcrypto and libz, all mapped from the mount.
    const pkgs = (await run("apk info 2>&1")).trim().split("\n");
    assert.ok(pkgs.includes("musl") && pkgs.includes("busybox") && pkgs.includes("alpine-baselayout"), pkgs.join(" "));
    await run([
      "mkdir /srv/data",
      "for i in $(seq 1 300); do echo line $i > /srv/data/f$i; done",
      "rm /srv/data/f1*",
      "tar -czf /srv/etc.tgz -C / etc",
      "mkdir /srv/unpacked; tar -xzf /srv/etc.tgz -C /srv/unpacked",
      "(cd /etc; find . -type f -exec md5sum {} + | sort) > /srv/sums",
      "(cd /srv/unpacked/etc; find . -type f -exec md5sum {} + | sort | cmp - /srv/sums)",
      "rm -rf /usr/share/apk /lib/apk/db/triggers",
      "echo nameserver 10.0.0.1 > /etc/resolv.conf",
      "adduser -D -s /bin/sh -u 1234 -h /home/app app",
      "su app -c \"echo mine > /home/app/file\"",
    ].join("; "));
    assert.equal(await run("ls /srv/data | wc -l; ls /srv/data | grep -c ^f1 || true"), `${300 - 111}\n0\n`);
    assert.equal(await run("stat -c \"%U %u %a\" /home/app/file; grep ^app: /etc/passwd | cut -d: -f1,3"), "app 1234 644\napp:1234\n");
    assert.equal(await run("ls /usr/share"), "man\nmisc\nudhcpc\n", "only what the layer removed is gone");
  } finally {
    await m.unmount();
  }
  const ctr = f.store.fs("ctr");
  assert.equal((await ctr.readdir("/srv/data")).length, 189);
  assert.equal(await ctr.readFile("/srv/data/f200", "utf8"), "line 200\n");
  assert.equal(await ctr.readFile("/home/app/file", "utf8"), "mine\n");
  assert.equal((await ctr.stat("/home/app/file")).uid, 1234);
  assert.equal(await ctr.readFile("/etc/resolv.conf", "utf8"), "nameserver 10.0.0.1\n");
  await assert.rejects(ctr.stat("/usr/share/apk"), { code: "ENOENT" });
  assert.deepEqual(plain(await describeLayer(f.store.fs(img))), before, "the image layer is unchanged");
  assert.deepEqual(await f.store.check(), []);
});

/**
 * Every entry of the tree below the working directory: path, type, mode, owner, size (not
 * of directories, whose size is the file system's own), link count, target and mtime.
 */
const LISTING = `find . -printf '%p %y %m %U:%G %s %n %l %T@\\n' | awk '$2 == "d" { $5 = "-" } { print }' | LC_ALL=C sort`;

test("GNU tar -x of the alpine rootfs into an empty mounted layer matches tar -x to ext4 (diff -r, modes, owners, times)", { skip: skipUnless("gnutar", "diff") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  await f.store.prepare("empty");
  const ext4 = await f.scratch("ext4");
  const m = await mount(f.store, "empty", await f.scratch("mnt"));
  let listing: string;
  try {
    await ok(`tar -xzf ${ALPINE} -C ${ext4} --numeric-owner`);
    await ok(`tar -xzf ${ALPINE} -C ${m.path} --numeric-owner`);
    await ok(`diff -r --no-dereference ${ext4} ${m.path}`);
    listing = await ok(`cd ${ext4}; ${LISTING}`);
    assert.equal(await ok(`cd ${m.path}; ${LISTING}`), listing);
    assert.ok(listing.split("\n").length > 500, "the whole rootfs is listed");
    // What tar sees of its own extraction: nothing differs from the archive.
    await ok(`cd ${m.path}; tar -dzf ${ALPINE} --numeric-owner`);
  } finally {
    await m.unmount();
  }
  // Mounted again (a new connection, nothing cached), the tree is the same.
  const again = await mount(f.store, "empty", await f.scratch("mnt2"), { readOnly: true });
  try {
    assert.equal(await ok(`cd ${again.path}; ${LISTING}`), listing);
    await ok(`diff -r --no-dereference ${ext4} ${again.path}`);
  } finally {
    await again.unmount();
  }
  assert.equal(await f.store.fs("empty").readlink("/bin/ls"), "/bin/busybox");
  assert.deepEqual(await f.store.check(), []);
});

test("git init, add and commit of a tree inside a mount; git fsck is clean, and so is the repository after a remount", { skip: skipUnless("git") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  await alpine(f);
  const home = await f.scratch("home");
  const env = {
    HOME: home, GIT_CONFIG_NOSYSTEM: "1", GIT_AUTHOR_NAME: "T", GIT_AUTHOR_EMAIL: "t@example.com",
    GIT_COMMITTER_NAME: "T", GIT_COMMITTER_EMAIL: "t@example.com", GIT_AUTHOR_DATE: "2020-01-01T00:00:00Z", GIT_COMMITTER_DATE: "2020-01-01T00:00:00Z",
  };
  const git = (dir: string, script: string) => ok(`cd ${dir}; ${script}`, env);
  let head: string;
  let files: string;
  const m = await mount(f.store, "ctr", await f.scratch("mnt"));
  try {
    // The tree: the alpine rootfs's /etc and /lib (symlinks, shared objects) plus generated files.
    await git(m.path, [
      "mkdir repo; cd repo; git init -q -b main",
      "cp -a ../etc ../lib .",
      "for i in $(seq 1 200); do mkdir -p gen/d$((i % 10)); seq $i $((i * 50)) > gen/d$((i % 10))/f$i; done",
      "git add -A; git commit -q -m first",
      "seq 1 100000 > gen/big; git rm -q -r lib/apk; git mv etc/motd MOTD; git add -A; git commit -q -m second",
      "git gc -q", // packs the objects, rewrites refs and removes the loose files
      "git fsck --full --strict",
    ].join("; "));
    head = await git(`${m.path}/repo`, "git rev-parse HEAD");
    files = await git(`${m.path}/repo`, "git ls-files -s | sha256sum");
    assert.equal(await git(`${m.path}/repo`, "git status --porcelain"), "");
  } finally {
    await m.unmount();
  }
  const again = await mount(f.store, "ctr", await f.scratch("mnt2"));
  try {
    const repo = `${again.path}/repo`;
    await git(repo, "git fsck --full --strict");
    assert.equal(await git(repo, "git rev-parse HEAD"), head);
    assert.equal(await git(repo, "git ls-files -s | sha256sum"), files);
    assert.equal(await git(repo, "git status --porcelain"), "", "the work tree matches the index");
    assert.equal(await git(repo, "git log --format=%s | tr \"\\n\" \" \""), "second first ");
    assert.equal(await git(repo, "git show HEAD:gen/big | wc -l"), "100000\n");
    // A clone out of the mount to ext4 checks the objects once more.
    await git(home, `git clone -q ${repo} clone; cd clone; git fsck --full; test "$(git rev-parse HEAD)" = ${head.trim()}`);
  } finally {
    await again.unmount();
  }
  assert.equal(await f.store.fs("ctr").readFile("/repo/.git/HEAD", "utf8"), "ref: refs/heads/main\n");
  assert.deepEqual(await f.store.check(), []);
});
