// Child process of crash.test.ts: random writes, discards and snapshots with frequent
// commits, until it is killed. Before each commit it prints the transaction id it is
// about to commit with the SHA-256 of every device's bytes and the used block count its
// own model predicts, so the parent can check the reopened pool against it; after the
// commit returned, "committed N". With a third argument P, the commit of transaction P
// stops in its window (the data file and every new metadata file synced, the root not yet
// renamed), prints "window P" and waits there to be killed.
import { createHash } from "node:crypto";
import { writeSync } from "node:fs";
import { Pool } from "../../src/pool/pool.ts";
import { beforeRename } from "../../src/pool/fileops.ts";

const [dir, seedText, pauseText] = process.argv.slice(2);
// Written synchronously: a line the parent reads has happened.
const say = (line: string) => writeSync(1, line + "\n");
let seed = Number(seedText) >>> 0 || 1;
const rand = (n: number) => {
  seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
  return seed % n;
};
const BS = 64 * 1024;
const SIZE = 16 * BS;

const pool = await Pool.open(dir);
if (pauseText !== undefined) {
  const pauseAt = Number(pauseText);
  beforeRename(async (_from, to) => {
    if (!to.endsWith("pool.cbor") || pool.status().transactionId + 1 !== pauseAt) return;
    say(`window ${pauseAt}`);
    await new Promise((r) => setTimeout(r, 60_000));
  });
}
const devices = new Map<number, { bytes: Uint8Array; tokens: (number | undefined)[] }>();
for (const d of pool.devices()) {
  devices.set(d.id, { bytes: await pool.device(d.id).read(0, d.size), tokens: new Array(SIZE / BS).fill(undefined) });
}
let token = 1;
// The parent made device 1 empty; nothing is mapped yet.
const digest = () => {
  const h = createHash("sha256");
  for (const id of [...devices.keys()].sort((a, b) => a - b)) h.update(`${id}:`).update(devices.get(id)!.bytes);
  return h.digest("hex");
};
const used = () => {
  const live = new Set<number>();
  for (const d of devices.values()) for (const t of d.tokens) if (t !== undefined) live.add(t);
  return live.size;
};
say("ready");
for (let step = 0; ; step++) {
  const ids = [...devices.keys()];
  const id = ids[rand(ids.length)];
  const d = devices.get(id)!;
  const op = rand(10);
  if (op < 6) {
    const at = rand(SIZE);
    const len = Math.min(SIZE - at, 1 + rand(3 * BS));
    const data = new Uint8Array(len).fill(1 + rand(255));
    try {
      await pool.device(id).write(at, data);
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOSPC") throw e;
      continue;
    }
    d.bytes.set(data, at);
    for (let b = Math.floor(at / BS); b <= Math.floor((at + len - 1) / BS); b++) d.tokens[b] = token++;
  } else if (op < 8) {
    const b = rand(SIZE / BS);
    await pool.device(id).discard(b * BS, BS);
    d.bytes.fill(0, b * BS, (b + 1) * BS);
    d.tokens[b] = undefined;
  } else if (op < 9 && devices.size < 6) {
    const nid = Math.max(...ids) + 1;
    await pool.createSnapshot(nid, id);
    devices.set(nid, { bytes: d.bytes.slice(), tokens: d.tokens.slice() });
  } else if (devices.size > 1) {
    await pool.deleteDevice(id);
    devices.delete(id);
  }
  if (rand(3) === 0) {
    const tx = pool.status().transactionId + 1;
    say(`committing ${tx} ${digest()} ${used()}`);
    await pool.commit();
    say(`committed ${tx}`);
  }
}
