/**
 * A database on a mounted layer survives the death of the server (issue 11): sqlite3
 * writes 10,000 rows in ten transactions into a layer served by `thinstack mount` in its
 * own process, then starts an eleventh that spills into the database file without
 * committing, and the server is killed with SIGKILL. The dead mount is cleared, the
 * layer mounted again: `PRAGMA integrity_check` says ok, every committed row is there
 * with its bytes, and nothing of the unfinished transaction is. Run with the rollback
 * journal and with WAL (whose -shm file is mapped shared through the mount).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { test } from "node:test";
import { thinstack, ts } from "../cli/cli.ts";
import { cliMount, type ImageFixture, imageFixture, killServer, skipUnless } from "./programs-helpers.ts";

const TXNS = 10;
const ROWS = 1000;

/** The statements of transaction `k`: ROWS rows of about 120 bytes. */
function txn(k: number): string {
  return `BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${ROWS})
    INSERT INTO t(txn, v) SELECT ${k}, printf('%d-%d-%s', ${k}, x, hex(randomblob(50))) FROM c; COMMIT;`;
}

/** A digest of every row, computed by sqlite itself. */
const DIGEST = "SELECT count(*), count(DISTINCT txn), max(txn), sum(length(v)), sum(id * length(v)), min(v), max(v) FROM t;";

/**
 * One sqlite3 shell kept open, driven through its stdin: `run(sql)` sends statements and
 * resolves with what they printed (a marker line ends each batch).
 */
class Shell {
  readonly #child: ChildProcess;
  #out = "";
  #err = "";
  #n = 0;

  constructor(f: ImageFixture, db: string) {
    this.#child = spawn("sqlite3", ["-batch", db], { stdio: ["pipe", "pipe", "pipe"] });
    f.track(this.#child);
    this.#child.stdout!.on("data", (c) => (this.#out += c));
    this.#child.stderr!.on("data", (c) => (this.#err += c));
    this.#child.stdin!.on("error", () => {});
  }

  async run(sql: string): Promise<string> {
    const marker = `-- done ${++this.#n} --`;
    this.#child.stdin!.write(`${sql}\nSELECT '${marker}';\n`);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const i = this.#out.indexOf(marker + "\n");
      if (i >= 0) {
        const said = this.#out.slice(0, i);
        this.#out = this.#out.slice(i + marker.length + 1);
        assert.equal(this.#err, "", `sqlite3 said on stderr after: ${sql.slice(0, 200)}`);
        return said;
      }
      assert.ok(this.#child.exitCode === null, `sqlite3 exited: ${this.#err}`);
      assert.ok(Date.now() < deadline, `sqlite3 did not finish: ${sql.slice(0, 200)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Closes stdin and waits for the shell to exit (it fails once its mount is dead). */
  async end(): Promise<void> {
    this.#child.stdin!.end();
    const c = this.#child;
    await new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.on("exit", r)));
  }
}

/**
 * One shell writes every transaction, so after the first the journal (kept open: PERSIST
 * with exclusive locking) or the WAL exists and no directory is synced again: each COMMIT is made durable by the
 * fsync of a file alone, which must commit the store.
 */
async function crashAndRecover(f: ImageFixture, journal: "persist" | "wal"): Promise<void> {
  await f.store.prepare("db");
  await f.close();
  let server = await cliMount(f, "db", await f.scratch("mnt"));
  const db = `${server.path}/data.sqlite`;
  const shell = new Shell(f, db);
  // A rollback journal reopened for each transaction is created anew with a directory
  // sync every time; in exclusive locking mode it stays open, as the WAL does.
  if (journal === "persist") assert.equal(await shell.run("PRAGMA locking_mode=EXCLUSIVE;"), "exclusive\n");
  assert.equal(await shell.run(`PRAGMA journal_mode=${journal};`), `${journal}\n`);
  await shell.run("PRAGMA synchronous=FULL; CREATE TABLE t(id INTEGER PRIMARY KEY, txn INT NOT NULL, v TEXT NOT NULL);");
  for (let k = 1; k <= TXNS; k++) await shell.run(txn(k));
  const committed = await shell.run(DIGEST);
  assert.match(committed, new RegExp(`^${TXNS * ROWS}\\|${TXNS}\\|${TXNS}\\|`));
  // An unfinished transaction, big enough (with a tiny page cache) to spill into the
  // database file or the WAL before its COMMIT, which never comes.
  await shell.run(`PRAGMA cache_size=5; BEGIN; DELETE FROM t WHERE txn = 3; UPDATE t SET v = 'changed' WHERE txn = 5;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) INSERT INTO t(txn, v) SELECT 99, hex(randomblob(100)) FROM c;`);
  await killServer(server);
  await shell.end();

  // The mount is dead; `thinstack umount` clears it.
  const cleared = await ts(["umount", server.path]);
  assert.match(cleared.stdout, /^cleared .*its server had died/);
  const check = await thinstack(["check"], { root: f.root });
  assert.equal(check.code, 0, `thinstack check after the kill:\n${check.stdout}\n${check.stderr}`);

  server = await cliMount(f, "db", server.path);
  const sqlite = (sql: string) => runSql(db, sql);
  assert.equal(await sqlite("PRAGMA integrity_check;"), "ok\n");
  assert.equal(await sqlite(DIGEST), committed, "every committed row, and nothing of the unfinished transaction");
  assert.equal(await sqlite("SELECT count(*) FROM t WHERE txn = 3 OR txn = 99 OR v = 'changed';"), `${ROWS}\n`);
  // And the database takes writes again.
  await sqlite(txn(TXNS + 1));
  assert.equal(await sqlite("SELECT count(*) FROM t; PRAGMA integrity_check;"), `${(TXNS + 1) * ROWS}\nok\n`);
  await ts(["umount", server.path]);
  assert.equal((await server.exited).code, 0, `the server exits cleanly after umount: ${server.output().stderr}`);
  await ts(["check"], { root: f.root });
}

/** Runs `sql` with a new sqlite3 shell on `db` in a child process; returns its output. */
function runSql(db: string, sql: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("sqlite3", ["-batch", "-bail", db], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout!.on("data", (c) => (out += c));
    child.stderr!.on("data", (c) => (err += c));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 && err === "" ? resolve(out) : reject(new Error(`sqlite3 ${db} failed (${code}): ${err}\n${sql.slice(0, 300)}`))));
    child.stdin!.end(sql);
  });
}

test("sqlite3 (rollback journal kept open): 10,000 rows in 10 transactions, SIGKILL of the server mid-transaction, remount: integrity ok, every committed row there", { skip: skipUnless("sqlite3") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  await crashAndRecover(f, "persist");
});

test("sqlite3 (WAL, -shm mapped through the mount): the same", { skip: skipUnless("sqlite3") }, async (t) => {
  const f = await imageFixture();
  t.after(f.cleanup);
  await crashAndRecover(f, "wal");
});
