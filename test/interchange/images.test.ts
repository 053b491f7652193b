/**
 * Images: reading OCI layouts and docker-save archives (both formats), ChainIDs, import
 * with streaming digest checks and all-or-nothing semantics, shared bases, export in both
 * formats and re-import.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fsp from "node:fs/promises";
import nodePath from "node:path";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { chainIds } from "../../src/interchange/chain.ts";
import { sha256 } from "../../src/interchange/digest.ts";
import { writeDockerArchive } from "../../src/interchange/dockerwrite.ts";
import { exportImage, importImage } from "../../src/interchange/images.ts";
import { readImage } from "../../src/interchange/imageread.ts";
import { writeOciLayout } from "../../src/interchange/ociwrite.ts";
import { MediaType, REF_NAME } from "../../src/interchange/spec.ts";
import { withTmp } from "../helpers/tmp.ts";
import { describeView, image, needImages, tarOf } from "./helpers.ts";
import { MemStore } from "./memlayers.ts";

const BUSYBOX = "busybox-1.38.0-musl-amd64";
const hex = (s: string) => createHash("sha256").update(s).digest("hex");

test("ChainID: DiffID of the bottom, then sha256 of 'parent-chain diff'", () => {
  const d = ["sha256:" + "a".repeat(64), "sha256:" + "b".repeat(64), "sha256:" + "c".repeat(64)];
  const c1 = `sha256:${hex(`${d[0]} ${d[1]}`)}`;
  assert.deepEqual(chainIds(d), [d[0], c1, `sha256:${hex(`${c1} ${d[2]}`)}`]);
  assert.throws(() => chainIds(["md5:abc"]), { code: "EINVAL" });
});

test("every real image reads: format, name, layers, DiffIDs", { skip: needImages }, async () => {
  const want: [string, string, string | undefined, number][] = [
    [BUSYBOX, "oci", "busybox:1.38.0-musl", 1],
    ["dive-test-docker-image.tar", "docker", "dive-test:latest", 14],
    ["dive-test-kaniko-image.tar", "docker", "dive-test:kaniko-latest", 14],
    ["ggcr-hello-world-v25.tar", "docker", undefined, 1],
    ["ggcr-whiteout_dir.tar", "docker", "localhost:5000/whiteout:latest", 4],
    ["ggcr-whiteout_image.tar", "docker", "bazel/pkg/v1/mutate:whiteout_image", 3],
    ["ggcr-overwritten_file.tar", "docker", "bazel/pkg/v1/mutate:overwritten_file", 3],
    ["moby-emptyLayer.tar", "docker-legacy", "matthughes/library-centos:6-2015.03.20", 3],
  ];
  for (const [file, format, name, n] of want) {
    const img = await readImage(image(file));
    try {
      assert.deepEqual([img.format, img.name, img.layers.length], [format, name, n], file);
      assert.equal(img.config.rootfs.diff_ids.length, n);
    } finally {
      await img.files.close();
    }
  }
  const bb = await readImage(image(BUSYBOX));
  await bb.files.close();
  assert.equal(bb.configDigest, "sha256:654fc8fd836e35f4a64586bddf8f59b9029b48cf80f520834c6c98ca8ab5def9");
  assert.equal(bb.layers[0].digest, "sha256:5c3b447848a98e48dce106cb3e6acbd4fb6f9b26ee778798137349ce01f4d3c1");
  assert.equal(bb.layers[0].diffId, "sha256:0f8918d0fe4f272ce8acece89916a9ba0b240584d3c1dd1943f343f69b0d0ffb");
  // The old format records no DiffIDs: the 0-byte layer hashes as empty.
  const legacy = await readImage(image("moby-emptyLayer.tar"));
  await legacy.files.close();
  assert.equal(legacy.layers[1].diffId, sha256(""));
});

test("importing the real images gives the trees their MANIFEST describes", { skip: needImages }, async () => {
  const s = new MemStore();
  const top = async (file: string) => {
    const r = await importImage(s, s, image(file));
    assert.deepEqual(r.layers, chainIds((await s.getImage(r.name))!.config.rootfs.diff_ids));
    return (await describeView(s.view(r.layers[r.layers.length - 1]))).map((l) => l.split(" ").slice(0, 2).join(" "));
  };
  assert.deepEqual(await top("ggcr-whiteout_dir.tar"), ["dir /a", "file /a/baz", "dir /b", "file /b/bar"]);
  assert.deepEqual(await top("ggcr-whiteout_image.tar"), ["file /bar.txt"]);
  assert.deepEqual(await top("ggcr-overwritten_file.tar"), ["file /bar.txt", "symlink /foo.txt"]);
  assert.deepEqual(await top("moby-emptyLayer.tar"), ["dir /tmp", "file /tmp/foo"]);
  assert.deepEqual(await top("ggcr-hello-world-v25.tar"), ["file /hello"]);
  // dive's 14-layer image: file and directory whiteouts, a mode-only change, a sticky /tmp.
  for (const file of ["dive-test-docker-image.tar", "dive-test-kaniko-image.tar"]) {
    const tree = await top(file);
    assert.deepEqual(tree.filter((l) => !l.includes(" /bin/") && !l.includes(" /etc/")), [
      "dir /bin", "dir /dev", "dir /etc", "dir /home", "dir /root", "dir /root/.data", "file /root/.data/saved.again2.txt", "file /root/.data/tag.sh",
      file.includes("kaniko") ? "file /root/.data/test-coverage.sh" : "file /root/.data/test.sh",
      "file /root/.saved.txt", "file /root/saved.txt", "file /somefile.txt", "dir /tmp", "file /tmp/saved.again1.txt", "dir /usr", "dir /usr/sbin",
      "dir /var", "dir /var/spool", "dir /var/spool/mail", "dir /var/www",
    ], file);
    const r = (await s.listImages()).find((i) => i.name.startsWith("dive-test") && i.name.includes(file.includes("kaniko") ? "kaniko" : "test:latest"))!;
    const v = s.view(r.top);
    assert.equal((await v.lstat("/root/saved.txt"))!.mode, 0o755, "chmod +x reached the last layer");
    assert.equal((await v.lstat("/tmp"))!.mode, 0o1777);
    assert.equal(await v.lstat("/root/example"), undefined);
  }
  assert.deepEqual((await s.listImages()).map((i) => i.name).sort(), [
    "bazel/pkg/v1/mutate:overwritten_file", "bazel/pkg/v1/mutate:whiteout_image", "dive-test:kaniko-latest", "dive-test:latest",
    "localhost:5000/whiteout:latest", "matthughes/library-centos:6-2015.03.20",
    "sha256:ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44",
  ]);
});

test("images sharing a base share its layers; an import skips layers already present", { skip: needImages }, async () => {
  await withTmp(async (dir) => {
    const base = new Uint8Array(gunzipSync(await fsp.readFile(image(`${BUSYBOX}/rootfs.tar.gz`))));
    const cfg = (await readImage(image(BUSYBOX))).config;
    const child = await tarOf([{ name: "app/", mode: 0o755 }, { name: "app/run", data: "#!/bin/sh\n", mode: 0o755 }]);
    await writeDockerArchive(`${dir}/child.tar`, { name: "child:1", config: cfg, layers: [() => [base][Symbol.iterator]() as never, () => [child][Symbol.iterator]() as never] });
    const s = new MemStore();
    const prepared: string[] = [];
    const prepare = s.prepare.bind(s);
    s.prepare = (key, parent) => (prepared.push(key), prepare(key, parent));
    const bb = await importImage(s, s, image(BUSYBOX));
    const ch = await importImage(s, s, `${dir}/child.tar`);
    assert.equal(prepared.length, 2, "the base layer was not applied twice");
    assert.equal(ch.layers[0], bb.layers[0]);
    assert.equal(ch.name, "child:1");
    assert.equal((await s.getImage("child:1"))!.top, ch.layers[1]);
    const again = await importImage(s, s, `${dir}/child.tar`, { name: "child-again" });
    assert.deepEqual(again.layers, ch.layers);
    assert.equal(prepared.length, 2);
  });
});

test("a digest mismatch fails the import and leaves nothing behind", { skip: needImages }, async () => {
  await withTmp(async (dir) => {
    // 1. A flipped byte in a gzipped OCI blob.
    await fsp.cp(image(BUSYBOX), `${dir}/bb`, { recursive: true });
    const blob = `${dir}/bb/blobs/sha256/5c3b447848a98e48dce106cb3e6acbd4fb6f9b26ee778798137349ce01f4d3c1`;
    await fsp.chmod(blob, 0o644);
    const bytes = await fsp.readFile(blob);
    bytes[bytes.length - 100] ^= 0xff;
    await fsp.writeFile(blob, bytes);
    const s = new MemStore();
    await assert.rejects(importImage(s, s, `${dir}/bb`), (e: NodeJS.ErrnoException) => e.code === "EINVAL" && /mismatch|gzip|malformed/.test(e.message));
    assert.deepEqual([s.layers.size, s.images.size], [0, 0]);
    // 1b. Intact data under a manifest that promises another digest.
    const m = JSON.parse(await fsp.readFile(image(`${BUSYBOX}/image-manifest.json`), "utf8"));
    m.layers[0].digest = `sha256:${"0".repeat(64)}`;
    const mb = new TextEncoder().encode(JSON.stringify(m));
    await fsp.writeFile(`${dir}/bb/blobs/sha256/${sha256(mb).slice(7)}`, mb);
    await fsp.copyFile(image(`${BUSYBOX}/rootfs.tar.gz`), `${dir}/bb/blobs/sha256/${"0".repeat(64)}`);
    await fsp.chmod(`${dir}/bb/index.json`, 0o644);
    await fsp.writeFile(`${dir}/bb/index.json`, JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaType.ociManifest, digest: sha256(mb), size: mb.length }] }));
    await assert.rejects(importImage(s, s, `${dir}/bb`), /digest mismatch: expected sha256:0000/);
    assert.deepEqual([s.layers.size, s.images.size], [0, 0]);
    // 2. A docker archive whose second layer's data was altered: the first layer, committed
    //    by this import, is removed again.
    const l0 = await tarOf([{ name: "base", data: "base layer" }]);
    const l1 = await tarOf([{ name: "top", data: "UNIQUE-PAYLOAD" }]);
    await writeDockerArchive(`${dir}/two.tar`, { name: "two:1", config: { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }, layers: [() => [l0][Symbol.iterator]() as never, () => [l1][Symbol.iterator]() as never] });
    const tar = await fsp.readFile(`${dir}/two.tar`);
    const at = tar.indexOf("UNIQUE-PAYLOAD");
    tar[at] = 0x75;
    await fsp.writeFile(`${dir}/two.tar`, tar);
    await assert.rejects(importImage(s, s, `${dir}/two.tar`), /digest mismatch/);
    assert.deepEqual([s.layers.size, s.images.size], [0, 0]);
  });
});

test("export as OCI layout and as docker-save, then re-import: same trees, valid digests", { skip: needImages }, async () => {
  await withTmp(async (dir) => {
    const s = new MemStore();
    const dive = await importImage(s, s, image("dive-test-docker-image.tar"));
    const want = await describeView(s.view(dive.layers[dive.layers.length - 1]), { mtime: true });
    const oci = await exportImage(s, s, dive.name, `${dir}/oci`, { format: "oci" });
    const docker = await exportImage(s, s, dive.name, `${dir}/dive.tar`, { format: "docker" });
    assert.deepEqual(oci.layers.map((l) => l.diffId), docker.layers.map((l) => l.diffId), "both formats carry the same diffs");
    for (const [path, format] of [[`${dir}/oci`, "oci"], [`${dir}/dive.tar`, "docker"]]) {
      const img = await readImage(path);
      assert.equal(img.format, format);
      assert.equal(img.name, dive.name);
      await img.files.close();
      const t = new MemStore();
      const r = await importImage(t, t, path);
      assert.deepEqual(await describeView(t.view(r.layers[r.layers.length - 1]), { mtime: true }), want, format);
    }
    // The OCI layout: config digest and sizes as its index and manifest say.
    const index = JSON.parse(await fsp.readFile(`${dir}/oci/index.json`, "utf8"));
    assert.equal(index.manifests[0].annotations[REF_NAME], dive.name);
    assert.deepEqual(index.manifests[0].platform, { os: "linux", architecture: "amd64" });
    const manifest = JSON.parse(await fsp.readFile(`${dir}/oci/blobs/sha256/${oci.manifestDigest!.slice(7)}`, "utf8"));
    assert.equal(manifest.layers[0].mediaType, MediaType.ociLayerGzip);
    for (const d of [manifest.config, ...manifest.layers]) {
      const b = await fsp.readFile(nodePath.join(dir, "oci", "blobs", "sha256", d.digest.slice(7)));
      assert.deepEqual([sha256(b), b.length], [d.digest, d.size]);
    }
    // Exporting twice gives the same digests.
    const again = await exportImage(s, s, dive.name, `${dir}/oci2`, { format: "oci" });
    assert.equal(again.manifestDigest, oci.manifestDigest);
  });
});

test("an index with several platforms, nested: linux/amd64 by default, or as asked", async () => {
  await withTmp(async (dir) => {
    const layer = await tarOf([{ name: "arch", data: "x" }]);
    const mk = (architecture: string, name: string) =>
      writeOciLayout(`${dir}/src-${architecture}`, { name, config: { architecture, os: "linux", rootfs: { type: "layers", diff_ids: [] } }, layers: [() => [layer][Symbol.iterator]() as never] });
    const arm = await mk("arm64", "multi");
    const amd = await mk("amd64", "multi");
    // One layout: both images' blobs, and an index.json pointing to a nested index of both.
    await fsp.cp(`${dir}/src-arm64`, `${dir}/multi`, { recursive: true });
    await fsp.cp(`${dir}/src-amd64/blobs`, `${dir}/multi/blobs`, { recursive: true });
    const desc = async (from: string, digest: string, architecture: string) => ({
      mediaType: MediaType.ociManifest, digest, size: (await fsp.stat(`${dir}/${from}/blobs/sha256/${digest.slice(7)}`)).size, platform: { os: "linux", architecture },
    });
    const nested = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [await desc("src-arm64", arm.manifestDigest!, "arm64"), await desc("src-amd64", amd.manifestDigest!, "amd64")],
    }));
    await fsp.writeFile(`${dir}/multi/blobs/sha256/${sha256(nested).slice(7)}`, nested);
    await fsp.writeFile(`${dir}/multi/index.json`, JSON.stringify({
      schemaVersion: 2, manifests: [{ mediaType: MediaType.ociIndex, digest: sha256(nested), size: nested.length, annotations: { [REF_NAME]: "multi" } }],
    }));
    const def = await readImage(`${dir}/multi`);
    assert.deepEqual([def.config.architecture, def.name, def.manifestDigest], ["amd64", "multi", amd.manifestDigest]);
    await def.files.close();
    const a = await readImage(`${dir}/multi`, { platform: { os: "linux", architecture: "arm64" } });
    assert.equal(a.config.architecture, "arm64");
    await a.files.close();
    await assert.rejects(readImage(`${dir}/multi`, { platform: { os: "linux", architecture: "s390x" } }), /no manifest for linux\/s390x/);
    await assert.rejects(readImage(`${dir}/multi`, { name: "other" }), /no image named 'other'/);
  });
});
