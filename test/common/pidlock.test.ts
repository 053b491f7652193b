// The pool lock between processes (src/common/pidlock.ts): many processes racing for one
// stale lock, a taker that died in the middle of a takeover, and one that is still at it.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { lockPool, LOCK_FILE } from "../../src/common/pidlock.ts";
import { runtimeCommand } from "../helpers/runtime.ts";
import { runs, withTmp } from "../helpers/tmp.ts";

const CHILD = new URL("./pidlock-child.ts", import.meta.url).pathname;

/** A pid no process has any more: one that ran and exited. */
function deadPid(): number {
  const r = spawnSync("true");
  assert.ok(r.pid && r.pid > 0);
  return r.pid;
}

/** Puts a lock file of `pid` at `file` as a new inode (as a fresh holder's would be). */
async function plant(file: string, pid: number): Promise<void> {
  await fs.writeFile(`${file}.planted`, `${pid}\n`);
  await fs.rename(`${file}.planted`, file);
}

/** A child's stdout, line by line. */
class Lines {
  #buffer = "";
  #lines: string[] = [];
  #waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  #err = "";
  #exited: Error | undefined;
  constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      this.#buffer += chunk;
      for (let i = this.#buffer.indexOf("\n"); i >= 0; i = this.#buffer.indexOf("\n")) {
        const line = this.#buffer.slice(0, i);
        this.#buffer = this.#buffer.slice(i + 1);
        const w = this.#waiting.shift();
        if (w) w.resolve(line);
        else this.#lines.push(line);
      }
    });
    child.stderr!.on("data", (c) => (this.#err += c));
    child.on("exit", (code) => {
      this.#exited = new Error(`child ${child.pid} exited with ${code}: ${this.#err}`);
      for (const w of this.#waiting.splice(0)) w.reject(this.#exited);
    });
  }
  next(): Promise<string> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.#exited) return Promise.reject(this.#exited);
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }
  send(line: string): void {
    this.child.stdin!.write(line + "\n");
  }
}

describe("the pool lock between processes", () => {
  it("16 processes racing for one stale lock: exactly one wins, every round", async () => {
    await withTmp(async (dir) => {
      const file = path.join(dir, LOCK_FILE);
      const children: Lines[] = [];
      try {
        for (let i = 0; i < 16; i++) children.push(lockChild(dir));
        for (const c of children) assert.equal(await c.next(), "ready");
        const rounds = Math.min(runs(20), 200);
        for (let round = 0; round < rounds; round++) {
          await plant(file, deadPid());
          for (const c of children) c.send("go");
          const results = await Promise.all(children.map((c) => c.next()));
          const winners = children.filter((_, i) => results[i] === "won");
          assert.equal(winners.length, 1, `round ${round}: ${winners.length} processes took the lock (${results.join(", ")})`);
          for (const r of results) assert.ok(r === "won" || r === "lost EBUSY", `round ${round}: ${r}`);
          assert.equal((await fs.readFile(file, "utf8")).trim(), String(winners[0].child.pid), `round ${round}: the lock holds the winner's pid`);
          winners[0].send("release");
          assert.equal(await winners[0].next(), "released");
          assert.deepEqual(await fs.readdir(dir), [], `round ${round}: the lock and every taker's file are gone`);
        }
      } finally {
        for (const c of children) c.child.kill("SIGKILL");
      }
    });
  });

  it("takes over a stale lock whose taker died in the middle of its takeover", async () => {
    await withTmp(async (dir) => {
      const file = path.join(dir, LOCK_FILE);
      await plant(file, deadPid());
      const { ino } = await fs.stat(file);
      await fs.writeFile(`${file}.claim.${ino}`, `${deadPid()}\n`);
      const release = await lockPool(dir);
      assert.equal((await fs.readFile(file, "utf8")).trim(), String(process.pid));
      assert.deepEqual(await fs.readdir(dir), [LOCK_FILE]);
      await release();
      assert.deepEqual(await fs.readdir(dir), []);
    });
  });

  it("removes the files of takers that died before they removed them, and nobody else's", async () => {
    await withTmp(async (dir) => {
      const file = path.join(dir, LOCK_FILE);
      const dead = deadPid();
      await fs.writeFile(`${file}.${dead}.0123456789ab`, `${dead}\n`);
      await fs.writeFile(`${file}.${dead}.0123456789ab.new`, `${dead}\n`);
      const sleeper = spawn("sleep", ["60"], { stdio: "ignore" });
      try {
        await fs.writeFile(`${file}.${sleeper.pid}.ba9876543210`, `${sleeper.pid}\n`);
        const release = await lockPool(dir);
        assert.deepEqual((await fs.readdir(dir)).sort(), [LOCK_FILE, `${LOCK_FILE}.${sleeper.pid}.ba9876543210`]);
        await release();
      } finally {
        sleeper.kill("SIGKILL");
      }
    });
  });

  it("leaves a stale lock alone while a live process holds the claim on it (EBUSY naming it)", async () => {
    await withTmp(async (dir) => {
      const file = path.join(dir, LOCK_FILE);
      const dead = deadPid();
      await plant(file, dead);
      const { ino } = await fs.stat(file);
      const sleeper = spawn("sleep", ["60"], { stdio: "ignore" });
      try {
        await fs.writeFile(`${file}.claim.${ino}`, `${sleeper.pid}\n`);
        const e = await lockPool(dir).then(() => undefined, (x) => x);
        assert.equal(e?.code, "EBUSY");
        assert.match(e.message, new RegExp(`process ${sleeper.pid} is taking over`));
        assert.equal((await fs.readFile(file, "utf8")).trim(), String(dead), "the stale lock is untouched");
      } finally {
        sleeper.kill("SIGKILL");
      }
    });
  });

  it("a live holder's lock is EBUSY and stays as it was", async () => {
    await withTmp(async (dir) => {
      const c = lockChild(dir);
      try {
        assert.equal(await c.next(), "ready");
        c.send("go");
        assert.equal(await c.next(), "won");
        const before = await fs.stat(path.join(dir, LOCK_FILE));
        await assert.rejects(lockPool(dir), (e: Error & { code?: string }) => e.code === "EBUSY" && e.message.includes(`in use by process ${c.child.pid}`));
        const after = await fs.stat(path.join(dir, LOCK_FILE));
        assert.equal(after.ino, before.ino);
        assert.deepEqual(await fs.readdir(dir), [LOCK_FILE]);
      } finally {
        c.child.kill("SIGKILL");
      }
    });
  });

  it("within a process, the lock is counted: the file goes with the last release", async () => {
    await withTmp(async (dir) => {
      const [a, b] = await Promise.all([lockPool(dir), lockPool(dir)]);
      await a();
      assert.equal((await fs.readFile(path.join(dir, LOCK_FILE), "utf8")).trim(), String(process.pid));
      await b();
      assert.deepEqual(await fs.readdir(dir), []);
    });
  });
});

/** A lock child on `dir`, stdin piped. */
function lockChild(dir: string): Lines {
  const [cmd, argv] = runtimeCommand(CHILD, [dir]);
  return new Lines(spawn(cmd, argv, { stdio: ["pipe", "pipe", "pipe"] }));
}
