/**
 * `thinstack pull` and `thinstack push` as a user runs them (a child process per step,
 * see test/cli/cli.ts), against Debian's docker-registry: the demo image imported,
 * pushed, pulled into another store under a name, pushed again (nothing sent), and the
 * failures a user meets as one line each with exit 1 (or 2 for a bad option).
 */
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { tmpDir } from "../helpers/tmp.ts";
import { spawn, spawnSync } from "node:child_process";
import { cliCommand, fails, thinstack, ts } from "../cli/cli.ts";
import { needRegistry, startRegistry, type TestRegistry } from "./registry.ts";

const hasScript = spawnSync("script", ["--version"]).status === 0;
const DEMO = fileURLToPath(new URL("../../fixtures/demo-image", import.meta.url));

describe("thinstack pull and push", { skip: needRegistry }, () => {
  let reg: TestRegistry;
  let dir: string;
  before(async () => {
    dir = await tmpDir("thinstack-cli-registry-");
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  test("push an imported image, pull it into another store, push it again", async () => {
    const a = `${dir}/a`;
    const b = `${dir}/b`;
    for (const root of [a, b]) await ts(["init", "--data-size", "256M", "--base-size", "64M"], { root });
    await ts(["import", DEMO, "--name", "demo"], { root: a });
    const pushed = await ts(["push", "demo", `${reg.host}/demo/webapp:1.0`, "--plain-http"], { root: a });
    assert.match(pushed.stdout, /^127\.0\.0\.1:\d+\/demo\/webapp:1\.0: digest sha256:[0-9a-f]{64} size \d+ \(3 layers: 3 uploaded, 0 sent as kept, 0 mounted, 0 already there\)\n$/);
    const digest = /digest (sha256:[0-9a-f]{64})/.exec(pushed.stdout)![1];
    const pulled = await ts(["pull", `${reg.host}/demo/webapp:1.0`, "--plain-http", "--name", "web", "--platform", "linux/amd64"], { root: b });
    assert.match(pulled.stdout, new RegExp(`^web: 3 layers \\(3 downloaded, 0 already in the store\\), linux/amd64, digest ${digest}, top sha256:[0-9a-f]{64}\\n$`));
    const images = JSON.parse((await ts(["images", "--json"], { root: b })).stdout) as { name: string; repository: string; tag: string; manifestDigest: string }[];
    assert.deepEqual(images.map((i) => [i.name, i.repository, i.tag, i.manifestDigest]), [["web", `${reg.host}/demo/webapp`, "1.0", digest]]);
    const again = await ts(["push", "web", `${reg.host}/demo/webapp:1.0`, "--plain-http"], { root: b });
    assert.match(again.stdout, new RegExp(`digest ${digest} .*0 uploaded, 0 sent as kept, 0 mounted, 3 already there`));
    const other = await ts(["push", "web", `${reg.host}/elsewhere/webapp:2`, "--plain-http"], { root: b });
    assert.match(other.stdout, new RegExp(`digest ${digest} .*0 uploaded, 0 sent as kept, 3 mounted, 0 already there`));
  });

  test("on a terminal, a progress bar per layer", { skip: hasScript ? false : "util-linux script(1) is not installed (it gives the CLI a terminal)" }, async () => {
    const a = `${dir}/tty-a`;
    const b = `${dir}/tty-b`;
    for (const root of [a, b]) await ts(["init", "--data-size", "256M", "--base-size", "64M"], { root });
    await ts(["import", DEMO, "--name", "demo"], { root: a });
    for (const [verb, root, args] of [["push", a, ["push", "demo", `${reg.host}/tty/webapp:1`]], ["pull", b, ["pull", `${reg.host}/tty/webapp:1`]]] as const) {
      const screen = await onTerminal(["--root", root, ...args, "--plain-http"]);
      // Each layer's bar, redrawn in place, ends full and done; the summary follows on stdout.
      for (const i of [1, 2, 3]) {
        assert.match(screen, new RegExp(`${verb} layer ${i}/3 [0-9a-f]{12} \\[\u2588{20}\\] [^\n]* done`), screen);
      }
      assert.match(screen, verb === "push" ? /3 uploaded/ : /3 downloaded/);
    }
  });

  test("failures are one line", async () => {
    const root = `${dir}/c`;
    await ts(["init", "--data-size", "256M", "--base-size", "64M"], { root });
    fails(await thinstack(["pull", `${reg.host}/demo/webapp:nope`, "--plain-http"], { root }), 1, /ENOENT: .*no tag 'nope'/);
    fails(await thinstack(["pull", `${reg.host}/demo/webapp:1.0`], { root }), 1, /EPROTO: .*--plain-http/);
    fails(await thinstack(["push", "absent", `${reg.host}/x/y:1`, "--plain-http"], { root }), 1, /ENOENT: .*no such image/);
    fails(await thinstack(["pull", "Not A Ref", "--plain-http"], { root }), 1, /EINVAL: .*reference/);
    fails(await thinstack(["pull", `${reg.host}/demo/webapp:1.0`, "--platform", "linux"], { root }), 2, /os\/architecture/);
    fails(await thinstack(["pull", `${reg.host}/demo/webapp:1.0`, "--plain-http", "--platform", "linux/arm64"], { root }), 1, /no image for linux\/arm64; .* is for linux\/amd64 only/);
    assert.equal(JSON.parse((await ts(["images", "--json"], { root })).stdout).length, 0);
  });
});

/** Runs thinstack under script(1), on a pseudo-terminal; what the terminal showed, control sequences taken out. */
async function onTerminal(args: string[]): Promise<string> {
  const [cmd, argv] = cliCommand(args);
  const line = [cmd, ...argv].map((w) => `'${w.replaceAll("'", "'\\''")}'`).join(" ");
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "THINSTACK_ROOT") env[k] = v;
  const child = spawn("script", ["-qec", line, "/dev/null"], { env: { ...env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  child.stdout!.on("data", (c: Buffer) => out.push(c));
  child.stderr!.on("data", (c: Buffer) => out.push(c));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  // deno-lint-ignore no-control-regex
  const text = Buffer.concat(out).toString("utf8").replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replaceAll("\r", "\n");
  assert.equal(code, 0, text);
  return text;
}
