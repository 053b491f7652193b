/**
 * `thinstack events`, `configure` and `delta` as a user drives them: events logged by one
 * command show in another process, `--follow` included, while that command runs.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { withTmp } from "../helpers/tmp.ts";
import { cliCommand, fails, pattern, thinstack, ts } from "./cli.ts";

const MiB = 1024 * 1024;

/** Waits until `cond()` holds, checking every 50 ms; fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  for (const end = Date.now() + ms; !cond();) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("events: what one command logs, another process prints, and --follow prints it as it happens", async () => {
  await withTmp(async (dir) => {
    const r = { root: path.join(dir, "store") };
    await ts(["init", "--data-size", "4M", "--base-size", "16M", "--min-free-space", "0", "--autoextend-threshold", "100", "--low-water-mark", "50"], r);
    assert.equal((await ts(["events"], r)).stdout, "", "nothing happened yet");
    await ts(["prepare", "c"], r);
    const file = path.join(dir, "f");
    await fs.writeFile(file, pattern(2.5 * MiB));
    // Processes of their own (the events name the process that logged them): 40 of 64 blocks, under 50% free.
    await ts(["cp", file, "c:/f"], { ...r, spawn: true });

    const [cmd, argv] = cliCommand(["--root", r.root, "events", "--follow"]);
    const follower = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    let stderr = "";
    follower.stdout!.on("data", (c: Buffer) => text += c.toString());
    follower.stderr!.on("data", (c: Buffer) => stderr += c.toString());
    const exited = new Promise<number | null>((resolve) => follower.on("close", (code) => resolve(code)));
    try {
      const lines = () => text.split("\n").filter(Boolean).map((l) => JSON.parse(l));
      await until(() => lines().length >= 1, "the logged event");
      const [below] = lines();
      assert.equal(below.type, "lowWater");
      assert.equal(below.space, "data");
      assert.equal(below.crossed, "below");
      assert.equal(below.markPercent, 50);
      assert.notEqual(below.pid, follower.pid, "logged by the cp, not by the reader");
      // Another process moves the mark under the free space: back over it.
      await ts(["configure", "--low-water-mark", "10"], { ...r, spawn: true });
      await until(() => lines().length >= 2, "the event of the configure, followed");
      assert.equal(lines()[1].crossed, "above");
      assert.equal(lines()[1].markPercent, 10);
      assert.notEqual(lines()[1].pid, below.pid);
    } finally {
      // process.kill, not follower.kill: Deno's child_process reports a child it signalled
      // itself as killed even when the child handled the signal and exited 0.
      process.kill(follower.pid!, "SIGTERM");
    }
    assert.equal(await exited, 0, `the follower stops cleanly on SIGTERM (stderr: ${stderr})`);

    const all = (await ts(["events"], r)).stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(all.map((e) => e.crossed), ["below", "above"]);
    assert.equal((await ts(["events", "--type", "autoextend"], r)).stdout, "");
    fails(await thinstack(["events", "--type", "frob"], r), 1, /EINVAL/, /--type 'frob' is not an event type; use one of lowWater, autoextend/);
    fails(await thinstack(["events"], { root: path.join(dir, "none") }), 1, /ENOENT: no store/);
  });
});

test("configure shows and changes the settings, kept with the store; init takes the low water marks", async () => {
  await withTmp(async (dir) => {
    const r = { root: path.join(dir, "store") };
    await ts(["init", "--data-size", "4M", "--base-size", "16M", "--metadata-low-water-mark", "5"], r);
    assert.equal((await ts(["configure"], r)).stdout,
      "Minimum free space: 10%\nAutoextend threshold: 80%\nAutoextend percent: 20%\nLow water mark: 20%\nMetadata low water mark: 5%\n");
    await ts(["configure", "--low-water-mark", "30%", "--autoextend-threshold", "90"], r);
    assert.deepEqual(JSON.parse((await ts(["configure", "--json"], r)).stdout), {
      minFreeSpacePercent: 10, autoextendThreshold: 90, autoextendPercent: 20, lowWaterMarkPercent: 30, metadataLowWaterMarkPercent: 5,
    });
    assert.equal(JSON.parse((await ts(["status", "--json"], r)).stdout).settings.lowWaterMarkPercent, 30);
    fails(await thinstack(["configure", "--low-water-mark", "120"], r), 2, /'120' is not a percentage from 0 to 100/);
    fails(await thinstack(["configure", "--min-free-space", "100"], r), 1, /EINVAL/, /minimum free space '100' must be a percentage from 0 to 99/);
  });
});

test("delta: the block ranges two layers or devices differ in, as thin_delta prints them and as JSON", async () => {
  await withTmp(async (dir) => {
    const r = { root: path.join(dir, "store") };
    await ts(["init", "--data-size", "64M", "--base-size", "32M"], r);
    await ts(["prepare", "b"], r);
    const file = path.join(dir, "f");
    await fs.writeFile(file, pattern(MiB));
    await ts(["cp", file, "b:/f"], r);
    await ts(["commit", "img", "b"], r);
    await ts(["prepare", "c", "img"], r);
    const none = JSON.parse((await ts(["delta", "img", "c", "--json"], r)).stdout);
    assert.deepEqual(none.ranges, [], "a fresh container is its image");
    assert.equal(none.blockSize, 64 * 1024);
    const same = JSON.parse((await ts(["delta", "img", "c", "--json", "--same"], r)).stdout);
    assert.ok(same.ranges.length > 0 && same.ranges.every((x: { kind: string }) => x.kind === "same"));
    const image = same.ranges.reduce((n: number, x: { length: number }) => n + x.length, 0);
    assert.ok(image >= 16, `the image's megabyte is in ${image} shared blocks`);

    await fs.writeFile(path.join(dir, "g"), pattern(3 * 64 * 1024, 2));
    await ts(["cp", path.join(dir, "g"), "c:/g"], r);
    const d = JSON.parse((await ts(["delta", "img", "c", "--json"], r)).stdout);
    assert.equal(d.left.layer, "img");
    assert.equal(d.right.layer, "c");
    const added = d.ranges.filter((x: { kind: string }) => x.kind === "right_only").reduce((n: number, x: { length: number }) => n + x.length, 0);
    assert.ok(added >= 3, `the new file's blocks are c's alone (${JSON.stringify(d.ranges)})`);
    assert.ok(d.ranges.every((x: { kind: string }) => x.kind === "right_only" || x.kind === "different"), JSON.stringify(d.ranges));

    const xml = (await ts(["delta", "img", "c"], r)).stdout;
    const lines = xml.trimEnd().split("\n");
    assert.match(lines[0], /^<superblock uuid="" time="0" transaction="\d+" data_block_size="128" nr_data_blocks="1024">$/);
    assert.equal(lines[1], `  <diff left="${d.left.device}" left_layer="img" right="${d.right.device}" right_layer="c">`);
    assert.deepEqual(lines.slice(2, -2), d.ranges.map((x: { kind: string; begin: number; length: number }) => `    <${x.kind} begin="${x.begin}" length="${x.length}"/>`));
    assert.deepEqual(lines.slice(-2), ["  </diff>", "</superblock>"]);

    // Device ids work too: the base device against the image's.
    const byId = JSON.parse((await ts(["delta", "0", String(d.left.device), "--json"], r)).stdout);
    assert.equal(byId.left.layer, undefined);
    assert.ok(byId.ranges.length > 0 && byId.ranges.every((x: { kind: string }) => x.kind === "right_only"));
    fails(await thinstack(["delta", "img", "nope"], r), 1, /ENOENT/, /no layer has this key or name, and no thin device this id/);
    fails(await thinstack(["delta", "img", "4242"], r), 1, /ENOENT/);
  });
});
