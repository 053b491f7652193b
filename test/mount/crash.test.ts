/**
 * SIGKILL of the serving process in the middle of a `tar -x` into the mount (issue 11),
 * 20 trials on one store (MOUNT_CRASH_TRIALS, or FUZZ_RUNS under `npm run fuzz`, sets
 * more). Each trial serves a new container layer with `thinstack mount` in its own
 * process, extracts the alpine rootfs into it while a second writer makes small files
 * and fsyncs each, and kills the server after a random number of tar's entries (in
 * some trials it also fsyncs its directory now and then, `sync DIR`), so store commits
 * land amid tar's writes.
 * Then: the dead mount is cleared (`thinstack umount`, the next command that opens the
 * store, or the next `thinstack mount` on that directory), the store reopens, the pool's
 * and the layers' checks are clean (`thinstack check` after every trial),
 * the pool's used blocks are exactly those the layers' files account for (no leak), and
 * every file whose fsync returned is there with its bytes. Every few trials a layer is
 * committed (the next trial's container goes over it) or an earlier one removed, so
 * frozen layers and freed blocks are part of what must stay consistent.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { mountTable } from "../../src/mount/mod.ts";
import { thinstack, ts } from "../cli/cli.ts";
import { runs } from "../helpers/tmp.ts";
import { ALPINE, cliMount, imageFixture, killServer, skipUnless } from "./programs-helpers.ts";

const TRIALS = Number(process.env.MOUNT_CRASH_TRIALS ?? "") || runs(20);
/** Entries of the alpine minirootfs (tar -tzf | wc -l). */
const ENTRIES = 518;

/** What the fsynced writer wrote into file `i`: a few KiB that differ by file. */
function content(i: number): string {
  return Array.from({ length: 40 * (1 + (i % 7)) }, (_, j) => `${i}:${j}`).join("\n") + "\n";
}

/** A small deterministic random source, so a failing trial can be told by its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

test(`SIGKILL of the server in the middle of tar -x into the mount, ${TRIALS} trials: the store reopens, check is clean, no block leaks, fsynced files are there`, { skip: skipUnless("gnutar") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  const seed = Number(process.env.MOUNT_CRASH_SEED ?? "") || Date.now() % 1_000_000;
  const random = rng(seed);
  const durable: Map<string, number[]> = new Map();
  const mnt = await f.scratch("mnt");
  let midTar = 0;
  for (let trial = 0; trial < TRIALS; trial++) {
    const key = `t${trial}`;
    const at = `trial ${trial} (MOUNT_CRASH_SEED=${seed})`;
    // Layers come and go between trials: a container over the previous trial's layer, a
    // removal of an older one (its blocks go back to the pool).
    if (trial % 4 === 3) {
      const parent = `t${trial - 1}`;
      await f.store.commit(`img${trial}`, parent);
      durable.set(`img${trial}`, durable.get(parent) ?? []);
      durable.delete(parent);
      await f.store.prepare(key, `img${trial}`);
    } else await f.store.prepare(key);
    if (trial % 5 === 4 && durable.has(`t${trial - 2}`)) {
      await f.store.remove(`t${trial - 2}`);
      durable.delete(`t${trial - 2}`);
    }
    await f.close();

    const server = await cliMount(f, key, mnt);
    const M = server.path;
    const log = path.join(f.dir, `fsynced-${trial}`);
    const syncs = trial % 2 === 1;
    const killAfter = 1 + Math.floor(random() * (ENTRIES - 1));
    // tar prints each entry's name as it begins it; the writer logs a file once its fsync returned.
    const tar = spawn("tar", ["-xzvf", ALPINE, "-C", M, "--numeric-owner"], { stdio: ["ignore", "pipe", "pipe"] });
    f.track(tar);
    const writer = spawn("sh", ["-c", `mkdir -p ${M}/w; i=0; while :; do i=$((i+1))
      awk -v i=$i 'BEGIN { n = 40 * (1 + i % 7); for (j = 0; j < n; j++) print i ":" j }' | dd of=${M}/w/f$i conv=fsync status=none || exit 0
      echo $i >> ${log}
      ${syncs ? `[ $((i % 5)) -ne 0 ] || sync ${M}/w || exit 0` : ":"}
    done`], { stdio: "ignore" });
    f.track(writer);
    let lines = 0;
    let tarDone = false;
    tar.stdout!.on("data", (c: Buffer) => (lines += c.toString().split("\n").length - 1));
    tar.stderr!.on("data", () => {});
    const tarExit = new Promise((r) => tar.on("exit", (code) => r((tarDone = code === 0))));
    const deadline = Date.now() + 120_000;
    while (lines < killAfter && !tarDone) {
      assert.ok(Date.now() < deadline, `${at}: tar made no progress (${lines} entries)`);
      await new Promise((r) => setTimeout(r, 5));
    }
    if (!tarDone) midTar++;
    await killServer(server);
    await tarExit;
    await new Promise((r) => (writer.exitCode !== null || writer.signalCode !== null ? r(null) : (writer.kill("SIGKILL"), writer.on("exit", r))));

    // The dead mount is cleared by `thinstack umount`, by the next command that opens the
    // store, or (left in place) by the next trial's `thinstack mount` on the same directory.
    const how = trial % 2 === 0 ? "umount" : trial % 6 === 5 ? "open" : "next mount";
    if (how === "umount") assert.match((await ts(["umount", M])).stdout, /^cleared /, at);
    if (how === "open") await ts(["ls"], { root: f.root });
    assert.equal((await mountTable()).some((m) => m.mountPoint === M), how === "next mount", `${at}: the dead mount is ${how === "next mount" ? "left for the next mount" : "gone"}`);
    // thin_check of the pool, then the layers' check: `thinstack check` (run in this
    // process, see ../cli/cli.ts: the store is closed here, and its server is another process).
    const check = await thinstack(["check"], { root: f.root });
    assert.equal(check.code, 0, `${at}: thinstack check after the kill:\n${check.stdout}\n${check.stderr}`);
    assert.match(check.stdout, /no faults\n$/, at);

    const store = await f.reopen();
    const report = await store.fsck();
    assert.deepEqual(report.problems, [], at);
    assert.equal(report.usedBlocks, report.expectedBlocks, `${at}: pool blocks used = blocks the layers' files account for`);
    const logged = (await fs.readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean).map(Number);
    durable.set(key, logged);
    for (const [layer, files] of durable) {
      for (const i of files) {
        assert.equal(await store.fs(layer).readFile(`/w/f${i}`, "utf8"), content(i), `${at}: ${layer}:/w/f${i} was fsynced`);
      }
    }
  }
  // Most trials must have killed the server while tar was still extracting.
  assert.ok(midTar >= TRIALS / 2, `only ${midTar} of ${TRIALS} kills came before tar finished`);
  await f.close();
  await ts(["check"], { root: f.root });
});
