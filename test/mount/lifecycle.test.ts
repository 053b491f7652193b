/**
 * A mounted layer's lifecycle: holds (commit, remove, transaction refused while mounted),
 * the deferred remove that waits for the last user, the CLI's foreground mount and
 * umount, and a serving process killed with SIGKILL: the dead mount is cleared by the
 * next mount or store open, and the store reopens consistent with every fsynced file.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type ChildProcess, spawn } from "node:child_process";
import { test } from "node:test";
import { ImageStore } from "../../src/images/mod.ts";
import { LayerStore } from "../../src/layers/mod.ts";
import { isDead, mount, mountTable } from "../../src/mount/mod.ts";
import { cliCommand } from "../cli/cli.ts";
import { fixture, ok, pattern, skipFuse } from "./helpers.ts";

/** Starts `thinstack mount KEY DIR` and waits until it says it is mounted. */
async function cliMount(root: string, key: string, dir: string): Promise<{ child: ChildProcess; exited: Promise<number | null>; output: () => string }> {
  const [cmd, argv] = cliCommand(["--root", root, "mount", key, dir]);
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (c) => (out += c));
  child.stderr!.on("data", (c) => (out += c));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no 'mounted' line: ${out}`)), 60_000);
    child.stdout!.on("data", () => {
      if (out.includes("mounted ")) {
        clearTimeout(timer);
        resolve();
      }
    });
    exited.then((code) => reject(new Error(`thinstack mount exited with ${code}: ${out}`)));
  });
  return { child, exited, output: () => out };
}

const mounted = async (dir: string) => (await mountTable()).some((m) => m.mountPoint === dir);

test("commit, remove and transaction of a mounted layer are EBUSY saying to unmount first", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  await f.store.prepare("ctr");
  const m = await mount(f.store, "ctr", await f.mountPoint());
  try {
    await ok(`echo x > ${m.path}/x`);
    for (const call of [() => f.store.commit("img", "ctr"), () => f.store.remove("ctr"), () => f.store.transaction("ctr", async () => {})]) {
      await assert.rejects(call(), (e: Error & { code?: string }) => {
        assert.equal(e.code, "EBUSY");
        assert.match(e.message, new RegExp(`mounted at '${m.path}'.*unmount it first`));
        return true;
      });
    }
  } finally {
    await m.unmount();
  }
  await f.store.commit("img", "ctr");
  assert.equal(await f.store.fs("img").readFile("/x", "utf8"), "x\n");
});

test("a deferred remove of a mounted layer unmounts lazily and removes the layer when its last user goes", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  await f.store.prepare("ctr");
  const m = await mount(f.store, "ctr", await f.mountPoint());
  await ok(`mkdir ${m.path}/work; echo data > ${m.path}/work/file`);
  // A user: a process whose working directory is in the mount and that holds a file open.
  // It changes directory itself: spawn's cwd would chdir in the forked child while this
  // process, which serves the mount, waits for the exec (a deadlock).
  const user = spawn("sh", ["-c", `cd '${m.path}/work' && exec 3< file && exec sleep 60`], { stdio: "ignore" });
  const gone = new Promise((r) => user.on("exit", r));
  try {
    await new Promise((r) => setTimeout(r, 300));
    await assert.rejects(m.unmount(), { code: "EBUSY" });
    await f.store.remove("ctr", { deferred: true });
    // The holder detaches the mount (a lazy unmount in a child process) without waiting for its users.
    for (let i = 0; i < 100 && (await mounted(m.path)); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await mounted(m.path), false, "detached while still in use");
    assert.ok((await f.store.list()).some((l) => l.name === "ctr"), "the layer stays while it is in use");
    assert.equal(await ok(`cat /proc/${user.pid}/cwd/file`), "data\n", "its user still reads it");
  } finally {
    user.kill("SIGKILL");
    await gone;
  }
  await m.closed;
  for (let i = 0; i < 100 && (await f.store.list()).some((l) => l.name === "ctr"); i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual((await f.store.list()).map((l) => l.name), []);
  assert.deepEqual(await f.store.check(), []);
});

test("thinstack mount serves in the foreground; umount from another process and SIGTERM end it cleanly", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  await f.store.prepare("ctr");
  const root = f.store.pool.dir;
  await f.store.close();
  const dir = await f.mountPoint();
  let s = await cliMount(root, "ctr", dir);
  try {
    await ok(`echo one > ${dir}/one`);
    const [cmd, argv] = cliCommand(["umount", dir]);
    assert.match(await ok(`'${cmd}' ${argv.map((a) => `'${a}'`).join(" ")}`), /^unmounted /);
    assert.equal(await s.exited, 0, s.output());
    assert.equal(await mounted(dir), false);
    s = await cliMount(root, "ctr", dir);
    await ok(`echo two > ${dir}/two`);
    // process.kill, not child.kill: Deno's child_process reports a child it signalled as
    // killed by the signal (code null) even when the child handled it and exited 0.
    process.kill(s.child.pid!, "SIGTERM");
    assert.equal(await s.exited, 0, s.output());
    assert.match(s.output(), /unmounted /);
    assert.equal(await mounted(dir), false);
  } finally {
    s.child.kill("SIGKILL");
    await s.exited;
  }
  const store = await LayerStore.open(root);
  try {
    assert.deepEqual(await store.fs("ctr").readdir("/"), ["one", "two"]);
    assert.deepEqual(await store.check(), []);
  } finally {
    await store.close();
  }
});

test("after SIGKILL of the serving process every fsynced file is there, the store checks clean, and the dead mount is cleared", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  await f.store.prepare("base-x");
  await f.store.fs("base-x").writeFile("/lower", "lower\n");
  await f.store.commit("base", "base-x");
  await f.store.prepare("ctr", "base");
  const root = f.store.pool.dir;
  await f.store.close();
  const dir = await f.mountPoint();
  const big = Buffer.from(pattern(8 << 20, 9));
  const s = await cliMount(root, "ctr", dir);
  try {
    await ok(`cd ${dir}; echo synced > f1; sync f1; mkdir -p d/e; echo in-dir > d/e/f; sync d/e/f`);
    const w = spawn("sh", ["-c", `cat > ${dir}/big && sync ${dir}/big`], { stdio: ["pipe", "ignore", "ignore"] });
    w.stdin!.end(big);
    await new Promise((r) => w.on("exit", r));
    await ok(`cd ${dir}; echo x >> lower; sync ${dir}`); // fsync of the mount's root directory commits everything
    await ok(`cd ${dir}; echo never-synced > f3`);
  } finally {
    s.child.kill("SIGKILL");
    await s.exited;
  }
  assert.equal(await isDead(dir), true, "Transport endpoint is not connected");
  const store = await LayerStore.open(root);
  try {
    assert.deepEqual(await store.check(), []);
    const ctr = store.fs("ctr");
    assert.equal(await ctr.readFile("/f1", "utf8"), "synced\n");
    assert.equal(await ctr.readFile("/d/e/f", "utf8"), "in-dir\n");
    assert.ok(Buffer.from(await ctr.readFile("/big")).equals(big), "the fsynced 8 MiB file, every byte");
    assert.equal(await ctr.readFile("/lower", "utf8"), "lower\nx\n");
    assert.equal(await store.fs("base").readFile("/lower", "utf8"), "lower\n");
    // The next mount at the same place clears the dead one.
    const m = await mount(store, "ctr", dir);
    try {
      assert.equal(await ok(`cat ${dir}/f1`), "synced\n");
    } finally {
      await m.unmount();
    }
    assert.equal(await mounted(dir), false);
  } finally {
    await store.close();
  }
});

test("a dead mount (its server killed) is cleared by thinstack umount, and by the next open of the store", { skip: skipFuse }, async (t) => {
  const f = await fixture();
  t.after(f.cleanup);
  await f.store.prepare("a");
  const root = f.store.pool.dir;
  await f.store.close();
  const dir = await f.mountPoint();
  const killed = async () => {
    const s = await cliMount(root, "a", dir);
    s.child.kill("SIGKILL");
    await s.exited;
    assert.equal(await isDead(dir), true, `${dir}: Transport endpoint is not connected`);
  };
  await killed();
  const [cmd, argv] = cliCommand(["umount", dir]);
  assert.match(await ok(`'${cmd}' ${argv.map((a) => `'${a}'`).join(" ")}`), /^cleared .*its server had died/);
  assert.equal(await mounted(dir), false);
  await killed();
  const store = await ImageStore.open(root);
  try {
    assert.equal(await mounted(dir), false, "cleared by the open");
    assert.deepEqual(await store.check(), []);
  } finally {
    await store.close();
  }
});
