/**
 * fixtures/demo-image, the OCI layout `npm start` imports, is exactly what
 * scripts/make-fixtures.ts makes of fixtures/demo-image.json (so the committed fixture
 * cannot drift from the code that makes it); it imports with the expected files; and the
 * demo runs on it, twice in one store.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { ImageStore } from "../../src/images/mod.ts";
import { isDeno, runtimeCommand } from "../helpers/runtime.ts";
import { tmpDir } from "../helpers/tmp.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURE = path.join(ROOT, "fixtures", "demo-image");
const NAME = "demo/webapp:1.0";
const CREATED = Date.parse("2026-01-01T00:00:00Z");

/** Runs a TypeScript file of the repo under this runtime. */
function run(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, argv] = runtimeCommand(path.join(ROOT, script), args);
  const child = spawn(cmd, argv, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (c) => (stdout += c));
  child.stderr!.on("data", (c) => (stderr += c));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every file under `dir`, by relative path. */
async function readTree(dir: string, under = ""): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const e of (await fsp.readdir(path.join(dir, under), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rel = under ? `${under}/${e.name}` : e.name;
    if (e.isDirectory()) for (const [k, v] of await readTree(dir, rel)) out.set(k, v);
    else out.set(rel, new Uint8Array(await fsp.readFile(path.join(dir, rel))));
  }
  return out;
}

const hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const digests = (files: Map<string, Uint8Array>) => Object.fromEntries([...files].map(([k, v]) => [k, hex(v)]));

/**
 * What a layout holds whatever deflate made its blobs: index entry, config bytes, and
 * each layer's media type and uncompressed tar.
 */
function content(files: Map<string, Uint8Array>) {
  const json = (digest: string) => {
    const bytes = files.get(`blobs/sha256/${digest.slice(7)}`);
    assert.ok(bytes, `blob ${digest} is in the layout`);
    return { bytes, value: JSON.parse(new TextDecoder().decode(bytes)) };
  };
  const index = JSON.parse(new TextDecoder().decode(files.get("index.json")));
  assert.equal(index.manifests.length, 1);
  const { digest, ...entry } = index.manifests[0];
  delete entry.size;
  const manifest = json(digest).value;
  const config = json(manifest.config.digest);
  const layers = manifest.layers.map((l: { mediaType: string; digest: string }) => ({
    mediaType: l.mediaType,
    tar: `sha256:${hex(zlib.gunzipSync(files.get(`blobs/sha256/${l.digest.slice(7)}`)!))}`,
  }));
  return {
    ociLayout: new TextDecoder().decode(files.get("oci-layout")),
    entry,
    configDigest: manifest.config.digest,
    config: config.value,
    configHash: `sha256:${hex(config.bytes)}`,
    layers,
    blobs: [...files.keys()].filter((k) => k.startsWith("blobs/")).length,
  };
}

/** The layout the script makes now, in memory (made once). */
let made: Promise<Map<string, Uint8Array>> | undefined;
function regenerate(): Promise<Map<string, Uint8Array>> {
  return made ??= (async () => {
    const dir = await tmpDir("thinstack-fixtures-");
    try {
      const r = await run("scripts/make-fixtures.ts", [path.join(dir, "demo-image")]);
      assert.equal(r.code, 0, `make-fixtures failed:\n${r.stderr}`);
      return await readTree(path.join(dir, "demo-image"));
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  })();
}

test("fixtures/demo-image holds what scripts/make-fixtures.ts makes of the spec: same config, same layer tars", async () => {
  const want = content(await readTree(FIXTURE));
  assert.deepEqual(content(await regenerate()), want);
  assert.equal(want.configHash, want.configDigest);
  assert.deepEqual(want.config.rootfs.diff_ids, want.layers.map((l: { tar: string }) => l.tar), "DiffIDs are the tars' digests");
  assert.equal(want.entry.annotations["org.opencontainers.image.ref.name"], NAME);
  assert.equal(want.config.created, "2026-01-01T00:00:00Z");
  assert.equal(want.blobs, 5, "three layers, a config, a manifest");
});

test("fixtures/demo-image is what scripts/make-fixtures.ts makes, byte for byte, and stays small", {
  skip: isDeno ? "Deno's node:zlib deflates into other (valid) bytes; the fixture is made under Node (npm run fixtures)" : false,
}, async () => {
  const committed = await readTree(FIXTURE);
  assert.deepEqual(digests(await regenerate()), digests(committed), "regenerate with `npm run fixtures` and commit fixtures/demo-image");
  const total = [...committed.values()].reduce((n, b) => n + b.length, 0);
  assert.ok(total < 64 * 1024, `the fixture is ${total} bytes`);
});

test("importing fixtures/demo-image gives the spec's layers and files; exporting them again gives the same image", async () => {
  const dir = await tmpDir("thinstack-fixtures-");
  const store = await ImageStore.open(path.join(dir, "store"), { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
  try {
    const { name, layers } = await store.importImage(FIXTURE, { name: NAME });
    assert.equal(name, NAME);
    assert.equal(layers.length, 3);
    const image = await store.image(NAME);
    const [base, app, top] = layers.map((l) => store.fs(l));
    assert.equal(image.top, layers[2]);

    assert.equal(await top.readFile("/etc/hostname", "utf8"), "web-1\n");
    assert.equal(await base.readFile("/etc/hostname", "utf8"), "demo\n");
    await assert.rejects(top.stat("/usr/share/doc/README"), { code: "ENOENT" });
    await assert.rejects(app.stat("/usr/share/doc/README"), { code: "ENOENT" });
    assert.equal(await base.readFile("/usr/share/doc/README", "utf8"), "This rootfs was built by thinstack's demo.\n");
    assert.equal(await top.readFile("/etc/webapp.conf", "utf8"), "listen 8080\nroot /srv/www\n");
    await assert.rejects(app.stat("/etc/webapp.conf"), { code: "ENOENT" });
    assert.equal(await top.readFile("/srv/www/index.html", "utf8"), "<h1>hello from a thin snapshot</h1>\n");
    assert.equal(await top.readlink("/bin/sh"), "/bin/busybox");
    assert.equal((await top.stat("/tmp")).mode & 0o7777, 0o1777);
    assert.equal((await top.stat("/etc/os-release")).mode & 0o7777, 0o644);
    assert.equal((await top.stat("/srv/www")).mode & 0o7777, 0o755);
    const blob = await top.readFile("/usr/lib/blob.bin");
    assert.equal(blob.length, 8 * 2 ** 20);
    assert.deepEqual([blob[0], blob[1], blob[5 * 4096], blob[300 * 4096], blob[300 * 4096 + 1]], [0, 0, 5, 300 & 0xff, 0]);
    for (const p of ["/etc", "/etc/hostname", "/etc/webapp.conf", "/usr/lib/blob.bin", "/tmp"]) {
      assert.equal((await top.lstat(p)).mtimeMs, CREATED, `mtime of ${p}`);
    }

    // The imported layers diff into the same tars, so the image comes out the same.
    const again = await store.exportImage(NAME, path.join(dir, "out"), { format: "oci", ref: NAME });
    assert.equal(again.configDigest, image.configDigest);
    const [fixture, exported] = [await readTree(FIXTURE), await readTree(path.join(dir, "out"))];
    assert.deepEqual(content(exported), content(fixture));
    if (!isDeno) assert.deepEqual(digests(exported), digests(fixture));
    // And createImage over the imported layers records that same image ID.
    const { rootfs: _, ...config } = image.config;
    const made = await store.createImage("again", image.top, { config });
    assert.deepEqual(made.layers, layers);
    assert.equal(made.configDigest, image.configDigest);
    await assert.rejects(store.createImage("nope", "missing"), { code: "ENOENT" });
  } finally {
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("the npm start demo imports the fixture once and runs twice in one store", async () => {
  const dir = await tmpDir("thinstack-demo-");
  try {
    const env = { THINSTACK_ROOT: path.join(dir, "store") };
    const first = await run("src/cli/demo.ts", [], env);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`imported ${NAME} from `));
    const second = await run("src/cli/demo.ts", [], env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, new RegExp(`image ${NAME} is already here`));
    for (const out of [first.stdout, second.stdout]) {
      assert.match(out, /changed 32 KiB in the middle of the 8 MiB \/usr\/lib\/blob\.bin: 1 new pool block\(s\)/);
      assert.match(out, /\/etc\/webapp\.conf in the container: ENOENT; in sha256:[0-9a-f]{12}: present/);
      assert.match(out, /Storage Driver: thinstack/);
      assert.match(out, /Layer tree:\n└── sha256:[0-9a-f]{12} \(committed\)\n/);
    }
    assert.equal(second.stdout.match(/-snapshot \(committed\)/g)?.length, 2, "the second run's tree has both containers");
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
