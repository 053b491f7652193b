/**
 * The image commands of `thinstack` (apply, diff, import, images, rmi, export, checkout),
 * driven as a user drives them: every step runs the CLI on a store in a temporary
 * directory, in this process or, where it reads stdin, in a child process (see cli.ts).
 *
 * One scenario builds its own OCI layout, so it runs anywhere; another imports real
 * images from ../shared/images and skips, saying so, when that folder is absent (a fresh
 * clone has none).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { describe, test } from "node:test";
import { tmpDir } from "../helpers/tmp.ts";
import { tarOf } from "../interchange/helpers.ts";
import { fails, mktar, parseTable, thinstack, ts, untar } from "./cli.ts";

/** `../shared/images` beside the repository (THINSTACK_IMAGES overrides), as the interchange tests find it. */
const IMAGES = process.env.THINSTACK_IMAGES ?? fileURLToPath(new URL("../../../shared/images/", import.meta.url));
const needImages = existsSync(path.join(IMAGES, "MANIFEST.txt")) ? false : `the real images are absent: ${IMAGES} (CI places ../shared/images beside the repo)`;

const needRoot = process.getuid?.() === 0 ? false : "needs root: device nodes and setuid files (CI runs as root)";

const BUSYBOX_TOP = "sha256:0f8918d0fe4f272ce8acece89916a9ba0b240584d3c1dd1943f343f69b0d0ffb";

/** What `images --json` prints, as far as these tests look. */
interface ImageJson {
  name: string;
  layers: string[];
  top: string;
  configDigest: string;
  config: { rootfs: { diff_ids: string[] } };
}

const sha256 = (bytes: Uint8Array | string) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

/** ChainIDs of DiffIDs, as the OCI image spec defines them (the store's layer names). */
function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length ? sha256(`${out[out.length - 1]} ${d}`) : d);
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tmpDir("thinstack-cli-images-");
  try {
    await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function newStore(root: string): Promise<void> {
  await ts(["init", "--data-size", "256M", "--base-size", "64M"], { root });
}

async function images(root: string): Promise<ImageJson[]> {
  return JSON.parse((await ts(["images", "--json"], { root })).stdout) as ImageJson[];
}

/** Writes an OCI image layout at `dir` of one image, ref `ref`, with uncompressed `layers` (bottom first). */
async function ociLayout(dir: string, ref: string, layers: Uint8Array[]): Promise<{ diffIds: string[] }> {
  await fs.mkdir(path.join(dir, "blobs", "sha256"), { recursive: true });
  const blob = async (bytes: Uint8Array | string) => {
    const digest = sha256(bytes);
    await fs.writeFile(path.join(dir, "blobs", "sha256", digest.slice(7)), bytes);
    return { digest, size: Buffer.byteLength(bytes) };
  };
  const layerType = "application/vnd.oci.image.layer.v1.tar";
  const descs = [];
  for (const l of layers) descs.push({ mediaType: layerType, ...(await blob(l)) });
  const diffIds = descs.map((d) => d.digest);
  const config = JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: ["/bin/sh"] }, rootfs: { type: "layers", diff_ids: diffIds } });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...(await blob(config)) },
    layers: descs,
  });
  const index = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...(await blob(manifest)), annotations: { "org.opencontainers.image.ref.name": ref } }],
  };
  await fs.writeFile(path.join(dir, "index.json"), JSON.stringify(index));
  await fs.writeFile(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  return { diffIds };
}

/** The DiffIDs of the (one) image of an OCI layout, from its config. */
async function layoutDiffIds(dir: string): Promise<string[]> {
  const read = async (digest: string) => JSON.parse(await fs.readFile(path.join(dir, "blobs", "sha256", digest.slice(7)), "utf8"));
  const index = JSON.parse(await fs.readFile(path.join(dir, "index.json"), "utf8"));
  assert.equal(index.manifests.length, 1);
  const manifest = await read(index.manifests[0].digest);
  return (await read(manifest.config.digest)).rootfs.diff_ids;
}

/** Exports image `name` both ways and imports each into a fresh store; returns their records and that store. */
async function exportAndReimport(root: string, name: string, dir: string): Promise<{ oci: ImageJson; docker: ImageJson; fresh: string; ociDir: string }> {
  const ociDir = path.join(dir, "export-oci");
  const dockerTar = path.join(dir, "export-docker.tar");
  const o = await ts(["export", name, ociDir, "--format", "oci", "--ref", "again:oci"], { root });
  assert.match(o.stdout, /^.+: \d+ layers? written to .+ \(oci\), config sha256:[0-9a-f]{64}\n$/);
  const d = await ts(["export", name, dockerTar, "--format", "docker", "--ref", "again:docker"], { root });
  assert.match(d.stdout, /\(docker\), config sha256:[0-9a-f]{64}\n$/);
  assert.ok((await fs.stat(dockerTar)).isFile());
  // The ref written is --ref's.
  const index = JSON.parse(await fs.readFile(path.join(ociDir, "index.json"), "utf8"));
  assert.equal(index.manifests[0].annotations["org.opencontainers.image.ref.name"], "again:oci");
  assert.ok((await untar(await fs.readFile(dockerTar))).some((e) => e.name === "manifest.json"), "a docker-save tar has manifest.json");

  const fresh = path.join(dir, "fresh");
  await newStore(fresh);
  await ts(["import", ociDir], { root: fresh });
  await ts(["import", dockerTar], { root: fresh });
  const got = await images(fresh);
  assert.deepEqual(got.map((i) => i.name), ["again:docker", "again:oci"], "names from the refs written");
  const [docker, oci] = got;
  return { oci, docker, fresh, ociDir };
}

describe("thinstack image commands", () => {
  test("checkout of an image with a device node and a setuid shell: neither unless --devices and --keep-setid, each said on stderr", { skip: needRoot }, async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await newStore(root);
      const layer = path.join(dir, "evil.tar");
      await fs.writeFile(layer, await tarOf([
        { name: "dev/", mode: 0o755 },
        { name: "dev/sda", type: "block", devmajor: 8, devminor: 0, mode: 0o660 },
        { name: "bin/", mode: 0o755 },
        { name: "bin/sh", data: "#!/bin/sh\n", mode: 0o4755 },
      ]));
      await ts(["prepare", "x"], r);
      await ts(["apply", "x", layer], r);
      await ts(["commit", "evil", "x"], r);

      const plain = path.join(dir, "plain");
      const run = await ts(["checkout", "evil", plain], r, /./);
      assert.equal(run.stdout, `evil: 3 entries written to ${plain}\n`);
      assert.equal(run.stderr,
        "thinstack: /bin/sh: setuid bit not kept (mode 0755; keepSetid, --keep-setid keeps them)\n" +
        "thinstack: /dev/sda: block device 8,0 not made (device nodes are made only when asked for: devices, --devices)\n");
      assert.equal(existsSync(path.join(plain, "dev/sda")), false);
      assert.equal((await fs.stat(path.join(plain, "bin/sh"))).mode & 0o7777, 0o755);

      const full = path.join(dir, "full");
      assert.equal((await ts(["checkout", "evil", full, "--devices", "--keep-setid"], r)).stdout, `evil: 4 entries written to ${full}\n`);
      const sda = await fs.lstat(path.join(full, "dev/sda"));
      assert.ok(sda.isBlockDevice());
      assert.equal(sda.rdev, 0x800);
      assert.equal((await fs.stat(path.join(full, "bin/sh"))).mode & 0o7777, 0o4755);
    });
  });

  test("an image built here: import, images, checkout, apply with a whiteout, diff, export both ways, re-import, rmi", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await newStore(root);
      const mtime = new Date("2024-01-02T03:04:05Z");
      const base = await mktar([
        { name: "bin/", type: "directory", mode: 0o755, mtime },
        { name: "bin/sh", data: "#!shell\n", mode: 0o755, mtime },
        { name: "bin/ash", type: "link", linkname: "bin/sh", mtime },
        { name: "etc/", type: "directory", mode: 0o755, mtime },
        { name: "etc/passwd", data: "root:x:0:0:root:/root:/bin/sh\n", mode: 0o644, mtime },
        { name: "etc/shadow", data: "root:*:1::::::\n", mode: 0o600, mtime },
        { name: "etc/motd", type: "symlink", linkname: "../usr/share/motd", mtime },
        { name: "tmp/", type: "directory", mode: 0o1777, mtime },
      ]);
      const app = await mktar([
        { name: "usr/", type: "directory", mode: 0o755, mtime },
        { name: "usr/share/", type: "directory", mode: 0o755, mtime },
        { name: "usr/share/motd", data: "welcome\n", mode: 0o644, mtime },
        { name: "etc/", type: "directory", mode: 0o755, mtime },
        { name: "etc/.wh.passwd-", data: "", mtime }, // a whiteout of nothing: allowed
      ]);
      const layout = path.join(dir, "layout");
      const { diffIds } = await ociLayout(layout, "built:1", [base, app]);
      const chain = chainIds(diffIds);

      // import names the image after the layout's ref and says how many layers and the top.
      const imp = await ts(["import", layout], r);
      assert.equal(imp.stdout, `built:1: 2 layers, top ${chain[1]}\n`);
      // --name renames; the same layers are not made again.
      assert.equal((await ts(["import", layout, "--name", "built:copy"], r)).stdout, `built:copy: 2 layers, top ${chain[1]}\n`);

      const list = await images(root);
      assert.deepEqual(list.map((i) => [i.name, i.layers, i.top]), [["built:1", chain, chain[1]], ["built:copy", chain, chain[1]]]);
      assert.deepEqual(list[0].config.rootfs.diff_ids, diffIds);
      const rows = parseTable((await ts(["images"], r)).stdout);
      assert.deepEqual(rows.map((row) => [row.NAME, row.LAYERS, row.TOP]), [["built:1", "2", chain[1]], ["built:copy", "2", chain[1]]]);
      assert.equal(rows[0]["IMAGE ID"], list[0].configDigest.slice(7, 19));
      assert.deepEqual(JSON.parse((await ts(["ls", "--json"], r)).stdout).map((l: { name: string }) => l.name).sort(), [...chain].sort(), "only the two layers");

      // checkout writes the merged tree.
      const rootfs = path.join(dir, "rootfs");
      assert.equal((await ts(["checkout", chain[1], rootfs], r)).stdout, `${chain[1]}: 11 entries written to ${rootfs}\n`);
      assert.equal(await fs.readFile(path.join(rootfs, "etc/passwd"), "utf8"), "root:x:0:0:root:/root:/bin/sh\n");
      assert.equal((await fs.stat(path.join(rootfs, "etc/shadow"))).mode & 0o7777, 0o600);
      assert.equal((await fs.stat(path.join(rootfs, "tmp"))).mode & 0o7777, 0o1777);
      assert.equal(await fs.readlink(path.join(rootfs, "etc/motd")), "../usr/share/motd");
      assert.equal(await fs.readFile(path.join(rootfs, "etc/motd"), "utf8"), "welcome\n", "the symlink resolves into the upper layer");
      const [sh, ash] = [await fs.stat(path.join(rootfs, "bin/sh")), await fs.stat(path.join(rootfs, "bin/ash"))];
      assert.equal(sh.ino, ash.ino, "hard links stay linked");
      assert.equal((await fs.stat(path.join(rootfs, "bin/sh"))).mtime.getTime(), mtime.getTime());
      // A second checkout into the same (now full) directory is refused.
      fails(await thinstack(["checkout", chain[1], rootfs], r), 1, /ENOTEMPTY/, /rootfs/);

      // A container over the top layer; a changeset with a whiteout, from a file.
      await ts(["prepare", "ctr", chain[1]], r);
      const change = path.join(dir, "change.tar");
      await fs.writeFile(change, await mktar([
        { name: "app/", type: "directory", mode: 0o755, mtime },
        { name: "app/new.txt", data: "added\n", mode: 0o644, mtime },
        { name: "etc/.wh.shadow", data: "", mtime },
      ]));
      assert.equal((await ts(["apply", "ctr", change], r)).stdout, "ctr: 3 entries applied (1 whiteout, 6 B of file data)\n");
      assert.equal((await ts(["cat", "ctr:/app/new.txt"], r)).stdout, "added\n");
      fails(await thinstack(["cat", "ctr:/etc/shadow"], r), 1, /ENOENT/);
      // Gzipped, from stdin.
      const more = zlib.gzipSync(await mktar([{ name: "app/more.txt", data: "more\n", mtime }]));
      assert.equal((await ts(["apply", "ctr", "-"], { ...r, input: more })).stdout, "ctr: 1 entry applied (0 whiteouts, 5 B of file data)\n");

      // diff -o writes the changeset: the added files with their parent, and the whiteout.
      const out = path.join(dir, "out.tar");
      const d = await ts(["diff", "ctr", "-o", out], r);
      assert.equal(d.stdout, "");
      const tarBytes = await fs.readFile(out);
      const entries = await untar(tarBytes);
      const byName = new Map(entries.map((e) => [e.name.replace(/\/$/, ""), e]));
      assert.equal(byName.get("app/new.txt")?.data.toString(), "added\n");
      assert.equal(byName.get("app/more.txt")?.data.toString(), "more\n");
      assert.equal(byName.get("app")?.type, "directory");
      assert.ok(byName.has("etc/.wh.shadow"), `the whiteout is in the diff: ${[...byName.keys()].join(", ")}`);
      assert.equal(byName.has("etc/passwd"), false, "unchanged files stay out");
      // To stdout: the same bytes, and nothing else.
      const piped = await ts(["diff", "ctr"], r);
      assert.ok(piped.bytes.equals(tarBytes), "diff to stdout is the same tar as -o");
      // The diff applies: a second container over the same image gets the same changes.
      await ts(["prepare", "ctr2", chain[1]], r);
      await ts(["apply", "ctr2", "-"], { ...r, input: piped.bytes });
      assert.ok((await ts(["diff", "ctr2"], r)).bytes.equals(tarBytes), "applying a diff reproduces it");

      // export both ways; each re-imports into a fresh store with the same layers.
      const { oci, docker, fresh, ociDir } = await exportAndReimport(root, "built:1", dir);
      assert.equal(oci.layers.length, 2);
      assert.deepEqual(docker.layers, oci.layers, "the docker and oci exports give the same layers");
      assert.deepEqual(oci.layers, chainIds(await layoutDiffIds(ociDir)), "layers named by the exported DiffIDs");
      assert.equal(docker.configDigest, oci.configDigest);
      assert.equal((await ts(["cat", `${oci.top}:/etc/motd`], { root: fresh })).stdout, "welcome\n");
      assert.equal((await ts(["cat", `${docker.top}:/bin/ash`], { root: fresh })).stdout, "#!shell\n");

      // rmi forgets the image, not its layers.
      assert.equal((await ts(["rmi", "built:copy"], r)).stdout, "built:copy\n");
      assert.deepEqual((await images(root)).map((i) => i.name), ["built:1"]);
      fails(await thinstack(["rmi", "built:copy"], r), 1, /ENOENT/, /'built:copy'/, /no such image/);
      await ts(["inspect", chain[1]], r);
    });
  });

  test("real images from ../shared/images: busybox (OCI layout, checked out, exported both ways) and dive (docker save)", { skip: needImages }, async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await newStore(root);
      const busybox = path.join(IMAGES, "busybox-1.38.0-musl-amd64");
      assert.equal((await ts(["import", busybox], r)).stdout, `busybox:1.38.0-musl: 1 layer, top ${BUSYBOX_TOP}\n`);
      const dive = await ts(["import", path.join(IMAGES, "dive-test-docker-image.tar"), "--name", "dive"], r);
      assert.match(dive.stdout, /^dive: 14 layers, top sha256:[0-9a-f]{64}\n$/);
      const list = await images(root);
      assert.deepEqual(list.map((i) => [i.name, i.layers.length]), [["busybox:1.38.0-musl", 1], ["dive", 14]]);
      assert.deepEqual(list[0].layers, [BUSYBOX_TOP], "the ChainID of one layer is its DiffID");

      // checkout matches the layer tarball, file by file.
      const rootfs = path.join(dir, "rootfs");
      assert.match((await ts(["checkout", BUSYBOX_TOP, rootfs], r)).stdout, /^sha256:\S+: \d+ entries written to /);
      const layer = await untar(zlib.gunzipSync(await fs.readFile(path.join(busybox, "rootfs.tar.gz"))));
      const files = layer.filter((e) => e.type === "file");
      assert.equal(files.length, 6);
      for (const f of files) {
        const p = path.join(rootfs, f.name);
        const got = await fs.readFile(p);
        const at = got.findIndex((b, i) => b !== f.data[i]);
        assert.ok(got.equals(f.data), `${f.name}: ${got.length} bytes checked out, ${f.data.length} in the layer, first difference at ${at}`);
        assert.equal((await fs.stat(p)).mode & 0o7777, f.mode, `${f.name}: mode`);
      }
      assert.equal(await fs.readlink(path.join(rootfs, "usr/bin/env")), "../../bin/env");
      assert.equal((await fs.stat(path.join(rootfs, "tmp"))).mode & 0o7777, 0o1777);
      assert.equal((await fs.stat(path.join(rootfs, "bin/ls"))).ino, (await fs.stat(path.join(rootfs, "bin/["))).ino, "applets are hard links");

      // dive's whiteouts: /root/example was removed, /root/saved.txt moved there.
      const diveTop = list[1].top;
      fails(await thinstack(["cat", `${diveTop}:/root/example/somefile1.txt`], r), 1, /ENOENT/);
      await ts(["cat", `${diveTop}:/root/saved.txt`], r);

      const { oci, docker, fresh } = await exportAndReimport(root, "busybox:1.38.0-musl", dir);
      assert.equal(oci.layers.length, 1);
      assert.deepEqual(docker.layers, oci.layers);
      const passwd = files.find((f) => f.name === "etc/passwd")!;
      assert.ok((await ts(["cat", `${docker.top}:/etc/passwd`], { root: fresh })).bytes.equals(passwd.data), "exported and imported again");

      await ts(["rmi", "dive"], r);
      await ts(["rmi", "busybox:1.38.0-musl"], r);
      assert.deepEqual(await images(root), []);
    });
  });

  test("errors: one line, exit 1 for failures and 2 for usage", async () => {
    await withDir(async (dir) => {
      const root = path.join(dir, "store");
      const r = { root };
      await newStore(root);
      const layer = path.join(dir, "layer.tar");
      await fs.writeFile(layer, await mktar([{ name: "a.txt", data: "a\n" }]));
      await ts(["prepare", "work"], r);
      await ts(["apply", "work", layer], r);
      await ts(["commit", "base", "work"], r);

      // Only active layers change.
      fails(await thinstack(["apply", "base", layer], r), 1, /'base' is committed; only active layers change/);
      fails(await thinstack(["apply", "nope", layer], r), 1, /ENOENT/, /'nope'/);
      await ts(["prepare", "ctr", "base"], r);
      fails(await thinstack(["apply", "ctr", path.join(dir, "missing.tar")], r), 1, /ENOENT/, /missing\.tar/);
      // A bad archive changes nothing (all or nothing).
      const bad = Buffer.concat([await mktar([{ name: "b.txt", data: "b\n" }])]).subarray(0, 700);
      fails(await thinstack(["apply", "ctr", "-"], { ...r, input: bad }), 1);
      assert.equal((await ts(["diff", "ctr"], r)).bytes.length, 1024, "an empty changeset: only the end-of-archive blocks");

      // import of a missing path names it.
      fails(await thinstack(["import", path.join(dir, "no-such-image")], r), 1, /ENOENT/, /no-such-image/);
      assert.deepEqual(await images(root), []);
      // diff of an unknown layer makes no file.
      const out = path.join(dir, "d.tar");
      fails(await thinstack(["diff", "nope", "-o", out], r), 1, /ENOENT/, /'nope'/);
      assert.equal(existsSync(out), false);
      fails(await thinstack(["export", "nope", path.join(dir, "x")], r), 1, /ENOENT/, /'nope'/);
      fails(await thinstack(["checkout", "nope", path.join(dir, "x")], r), 1, /ENOENT/, /'nope'/);
      fails(await thinstack(["rmi", "nope"], r), 1, /ENOENT/, /'nope'/);

      // Usage errors: exit 2, naming the value and the help to read.
      fails(await thinstack(["export", "img", path.join(dir, "x"), "--format", "zip"], r), 2, /EINVAL/, /'zip' is not an export format; use oci or docker/, /thinstack export --help/);
      fails(await thinstack(["import", path.join(dir, "x"), "--platform", "linux"], r), 2, /'linux' is not a platform/, /thinstack import --help/);
      fails(await thinstack(["apply", "ctr"], r), 2, /missing required argument 'tarball'/);
      fails(await thinstack(["images", "--bogus"], r), 2, /unknown option '--bogus'/);
    });
  });
});
