/**
 * Pushing to Debian's docker-registry: images made in the store push (in chunks) with
 * the digests exportImage gives, and come back through `skopeo copy` + `umoci unpack` as
 * the tree the store checks out, and through a pull; a second push sends no layer; a
 * layer another repository holds is mounted, not uploaded (requests counted at a
 * proxy); a pulled image pushed elsewhere keeps its manifest digest; a registry without
 * chunked uploads gets POST + PUT; a multi-arch index pulls the platform asked for; a
 * push keeps the gzipped blobs it made, the next push to another registry sends them as
 * they are (a damaged one is made again), and they go with the last image naming them; a
 * pull keeps its blobs by default, so a push elsewhere keeps the manifest digest (and
 * without them it does not); a store that cannot keep blobs still pushes.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fsp from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { ImageStore } from "../../src/images/mod.ts";
import { MediaType } from "../../src/interchange/spec.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { describeView, hostView, image, needImages } from "../interchange/helpers.ts";
import { appLayer, baseLayer, config } from "./build.ts";
import { startProxy } from "./proxy.ts";
import { needTools, run, skopeo, startRegistry, type TestRegistry } from "./registry.ts";

const opts = { plainHttp: true, retry: { backoffMs: 10 } };
const CHUNK = 256 * 1024;

async function openStore(path: string): Promise<ImageStore> {
  return await ImageStore.open(path, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
}

async function failsWith(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), e.message);
    return true;
  });
}

describe("push to docker-registry", { skip: needTools }, () => {
  let reg: TestRegistry;
  let dir: string;
  let store: ImageStore;
  before(async () => {
    dir = await tmpDir("thinstack-push-");
    reg = await startRegistry();
    store = await openStore(`${dir}/store`);
    await baseLayer(store, "base");
    await appLayer(store, "app", "base");
    await store.createImage("base:1", "base", { config: config() });
    await store.createImage("app:1", "app", { config: config() });
  });
  after(async () => {
    await store?.close();
    await reg?.stop();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  test("a built image pushes in chunks, as exportImage writes it, and skopeo + umoci unpack give the store's tree", async () => {
    const proxy = await startProxy(reg.host);
    try {
      const r = await store.push("app:1", `${proxy.host}/built/app:1`, { ...opts, chunkSize: CHUNK });
      assert.deepEqual(r.layers.map((l) => l.how), ["uploaded", "uploaded"]);
      // Layers over CHUNK bytes went as PATCH chunks, with Content-Range.
      assert.ok(proxy.requests.filter((q) => q.method === "PATCH").length >= 4, "chunked");
      // The same blobs and config as an OCI export of the image.
      const exported = await store.exportImage("app:1", `${dir}/export-app`);
      assert.deepEqual(r.layers.map((l) => l.digest), exported.layers.map((l) => l.digest));
      assert.equal(r.configDigest, exported.configDigest);
      assert.equal(r.manifestDigest, exported.manifestDigest);
      assert.equal(r.configDigest, (await store.image("app:1")).configDigest);
      const inspect = JSON.parse(run("skopeo", ["inspect", "--tls-verify=false", `docker://${reg.host}/built/app:1`]));
      assert.equal(inspect.Digest, r.manifestDigest);
      assert.deepEqual(inspect.Layers, r.layers.map((l) => l.digest));
      // skopeo + umoci unpack: the tree the store checks out.
      skopeo(`docker://${reg.host}/built/app:1`, `oci:${dir}/oci-app:x`);
      run("umoci", ["unpack", "--image", `${dir}/oci-app:x`, `${dir}/bundle-app`]);
      await store.checkout("app", `${dir}/checkout-app`);
      const ours = await describeView(hostView(`${dir}/checkout-app`), { mtime: true });
      assert.deepEqual(await describeView(hostView(`${dir}/bundle-app/rootfs`), { mtime: true }), ours);
      assert.ok(ours.some((l) => l.startsWith("file /data/big.link ") && l.includes("=/data/big.bin")), "a hard link");
      assert.ok(!ours.some((l) => l.includes("/data/deep")), "a deletion");
      // And back with a pull, into a fresh store.
      const other = await openStore(`${dir}/back`);
      try {
        const back = await other.pull(`${reg.host}/built/app:1`, opts);
        await other.checkout(back.layers[1], `${dir}/checkout-back`);
        assert.deepEqual(await describeView(hostView(`${dir}/checkout-back`), { mtime: true }), ours);
        assert.equal(back.configDigest, r.configDigest);
      } finally {
        await other.close();
      }
      // The record learns the blobs and where they are.
      const rec = await store.image("app:1");
      assert.deepEqual(rec.blobs?.map((b) => b.map((x) => [x.digest, x.repositories])), r.layers.map((l) => [[l.digest, [`${proxy.host}/built/app`]]]));
      // Pushed again: every layer is there; no chunk moves.
      const before = proxy.requests.length;
      const again = await store.push("app:1", `${proxy.host}/built/app:1`, { ...opts, chunkSize: CHUNK });
      assert.deepEqual(again.layers.map((l) => l.how), ["exists", "exists"]);
      assert.equal(again.manifestDigest, r.manifestDigest);
      assert.ok(!proxy.requests.slice(before).some((q) => q.method === "PATCH" || q.method === "POST"));
    } finally {
      await proxy.stop();
    }
  });

  test("a layer another repository holds is mounted, not uploaded", async () => {
    const proxy = await startProxy(reg.host);
    try {
      const base = await store.push("base:1", `${proxy.host}/mount/base:1`, opts);
      // Sent: made, or as the first test's push kept it.
      assert.ok(["uploaded", "kept"].includes(base.layers[0].how), base.layers[0].how);
      const start = proxy.requests.length;
      const app = await store.push("app:1", `${proxy.host}/mount/app:1`, opts);
      const seen = proxy.requests.slice(start);
      const digest = base.layers[0].digest;
      assert.equal(app.layers[0].how, "mounted");
      assert.equal(app.layers[0].from, `${proxy.host}/mount/base`);
      assert.equal(app.layers[0].digest, digest);
      const mounts = seen.filter((q) => q.method === "POST" && q.url.includes(`mount=${encodeURIComponent(digest)}`));
      assert.equal(mounts.length, 1);
      assert.ok(mounts[0].url.includes(`from=${encodeURIComponent("mount/base")}`));
      assert.equal(mounts[0].status, 201);
      // Exactly one upload (the app layer; the config is small): one POST that is not a mount, PATCHes only for it.
      assert.equal(seen.filter((q) => q.method === "POST" && !q.url.includes("mount=")).length, 2, "app layer and config");
      assert.equal(app.layers[1].how, "kept", "the first test's push kept it");
      const inspect = JSON.parse(run("skopeo", ["inspect", "--tls-verify=false", `docker://${reg.host}/mount/app:1`]));
      assert.deepEqual(inspect.Layers, app.layers.map((l) => l.digest));
    } finally {
      await proxy.stop();
    }
  });

  test("a pulled image pushed to another repository is mounted whole and keeps its manifest digest", { skip: needImages }, async () => {
    skopeo(`oci:${image("busybox-1.38.0-musl-amd64")}:busybox:1.38.0-musl`, `docker://${reg.host}/lib/busybox:1.38`);
    const pulled = await store.pull(`${reg.host}/lib/busybox:1.38`, opts);
    const r = await store.push(`${reg.host}/lib/busybox:1.38`, `${reg.host}/copies/busybox:1`, opts);
    assert.deepEqual(r.layers.map((l) => l.how), ["mounted"]);
    assert.equal(r.manifestDigest, pulled.manifestDigest);
    assert.equal(r.configDigest, pulled.configDigest);
    assert.equal(r.mediaType, MediaType.ociManifest);
  });

  test("a registry without chunked uploads gets POST + one PUT", async () => {
    const proxy = await startProxy(reg.host, { noPatch: true });
    try {
      // Nothing kept: both layers are made (twice each: once for the digest, once to send) and kept.
      await fsp.rm(`${dir}/store/blobs`, { recursive: true, force: true });
      const r = await store.push("app:1", `${proxy.host}/nochunks/app:1`, { ...opts, chunkSize: CHUNK });
      assert.deepEqual(r.layers.map((l) => l.how), ["uploaded", "uploaded"]);
      assert.ok(proxy.injected.noPatch >= 1);
      for (const l of r.layers) {
        const bytes = await fsp.readFile(`${dir}/store/blobs/sha256/${l.digest.slice("sha256:".length)}`);
        assert.equal(`sha256:${createHash("sha256").update(bytes).digest("hex")}`, l.digest);
      }
      const puts = proxy.requests.filter((q) => q.method === "PUT" && q.url.includes("digest=") && q.status === 201);
      assert.ok(puts.length >= 3, "two layers and the config, each one PUT");
      const other = await openStore(`${dir}/nochunks`);
      try {
        const back = await other.pull(`${reg.host}/nochunks/app:1`, opts);
        assert.equal(back.configDigest, r.configDigest);
      } finally {
        await other.close();
      }
    } finally {
      await proxy.stop();
    }
  });

  test("a multi-arch index pulls the platform asked for, and lists the platforms when none fits", async () => {
    await store.createImage("multi:amd64", "app", { config: config("amd64") });
    await store.createImage("multi:arm64", "base", { config: config("arm64", "v8") });
    const amd = await store.push("multi:amd64", `${reg.host}/multi/img:amd64`, opts);
    const arm = await store.push("multi:arm64", `${reg.host}/multi/img:arm64`, opts);
    for (const [tag, type] of [["oci", MediaType.ociIndex], ["docker", MediaType.dockerList]] as const) {
      // The registry checks an index's entries exist; their media type must be the manifests' own.
      const index = {
        schemaVersion: 2, mediaType: type,
        manifests: [
          { mediaType: amd.mediaType, digest: amd.manifestDigest, size: amd.size, platform: { os: "linux", architecture: "amd64" } },
          { mediaType: arm.mediaType, digest: arm.manifestDigest, size: arm.size, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
        ],
      };
      const res = await fetch(`http://${reg.host}/v2/multi/img/manifests/${tag}`, { method: "PUT", headers: { "content-type": type }, body: JSON.stringify(index) });
      assert.equal(res.status, 201, await res.text());
      const other = await openStore(`${dir}/multi-${tag}`);
      try {
        const got = await other.pull(`${reg.host}/multi/img:${tag}`, { ...opts, platform: { os: "linux", architecture: "arm64" } });
        assert.equal(got.manifestDigest, arm.manifestDigest);
        assert.equal(got.layers.length, 1);
        assert.equal((await other.image(`${reg.host}/multi/img:${tag}`)).config.architecture, "arm64");
        const amd64 = await other.pull(`${reg.host}/multi/img:${tag}`, { ...opts, name: "amd", platform: { os: "linux", architecture: "amd64" } });
        assert.equal(amd64.manifestDigest, amd.manifestDigest);
        assert.equal(amd64.skipped, 1, "the base layer is shared");
        await failsWith(
          other.pull(`${reg.host}/multi/img:${tag}`, { ...opts, name: "s390x", platform: { os: "linux", architecture: "s390x" } }),
          /^ENOENT: .*no image for linux\/s390x; the index has linux\/amd64, linux\/arm64\/v8; pick one with --platform/,
        );
        await failsWith(
          other.pull(`${reg.host}/multi/img:arm64`, { ...opts, name: "x", platform: { os: "linux", architecture: "amd64" } }),
          /^ENOENT: .*no image for linux\/amd64; .* is for linux\/arm64\/v8 only/,
        );
        assert.deepEqual((await other.images()).map((i) => i.name).sort(), ["amd", `${reg.host}/multi/img:${tag}`].sort());
      } finally {
        await other.close();
      }
    }
  });

  test("a push keeps the blobs it gzipped; the next push elsewhere sends them as they are, a damaged one is made again", async () => {
    const regs = [await startRegistry(), await startRegistry(), await startRegistry()];
    const kept = (digest: string) => `${dir}/store/blobs/sha256/${digest.slice("sha256:".length)}`;
    const sha = async (file: string) => `sha256:${createHash("sha256").update(await fsp.readFile(file)).digest("hex")}`;
    try {
      await store.push("base:1", `${regs[0].host}/k/base:1`, opts);
      const first = await store.push("app:1", `${regs[0].host}/k/app:1`, opts);
      // Whatever an earlier test kept, every layer's blob is kept now, with its bytes.
      for (const l of first.layers) assert.equal(await sha(kept(l.digest)), l.digest);
      const second = await store.push("app:1", `${regs[1].host}/k/app:1`, opts);
      assert.deepEqual(second.layers.map((l) => l.how), ["kept", "kept"]);
      assert.equal(second.manifestDigest, first.manifestDigest);
      const inspect = JSON.parse(run("skopeo", ["inspect", "--tls-verify=false", `docker://${regs[1].host}/k/app:1`]));
      assert.deepEqual(inspect.Layers, first.layers.map((l) => l.digest));
      skopeo(`docker://${regs[1].host}/k/app:1`, `oci:${dir}/oci-kept:x`); // skopeo checks every blob's digest

      // One byte of the top layer's kept blob flipped: that layer is made again (the same bytes), the other sent as kept.
      const top = kept(first.layers[1].digest);
      const bytes = await fsp.readFile(top);
      bytes[bytes.length >> 1] ^= 0xff;
      await fsp.writeFile(top, bytes);
      const third = await store.push("app:1", `${regs[2].host}/k/app:1`, opts);
      assert.deepEqual(third.layers.map((l) => l.how), ["kept", "uploaded"]);
      assert.equal(third.manifestDigest, first.manifestDigest);
      assert.equal(await sha(top), first.layers[1].digest);
      skopeo(`docker://${regs[2].host}/k/app:1`, `oci:${dir}/oci-kept:y`);

      // keepBlobs: false keeps nothing new.
      await appLayer(store, "solo", "base", 9);
      await store.createImage("solo:1", "solo", { config: config() });
      const solo = await store.push("solo:1", `${regs[0].host}/k/solo:1`, { ...opts, keepBlobs: false });
      assert.equal(solo.layers[1].how, "uploaded");
      await assert.rejects(fsp.stat(kept(solo.layers[1].digest)), { code: "ENOENT" });

      // What a crash left half-written, and blobs no image names, go at the next open.
      await fsp.mkdir(`${dir}/store/blobs/tmp`, { recursive: true });
      await fsp.writeFile(`${dir}/store/blobs/tmp/0123456789abcdef`, "torn");
      await fsp.writeFile(kept(`sha256:${"0".repeat(64)}`), "nobody's");
      await store.close();
      store = await openStore(`${dir}/store`);
      assert.deepEqual(await fsp.readdir(`${dir}/store/blobs/tmp`).catch(() => []), []);
      await assert.rejects(fsp.stat(kept(`sha256:${"0".repeat(64)}`)), { code: "ENOENT" });
      await fsp.stat(kept(first.layers[1].digest));

      // Removing an image drops the blob of the layer only it names; the base layer's stays with base:1.
      await appLayer(store, "solo2", "base", 10);
      await store.createImage("solo2:1", "solo2", { config: config() });
      const solo2 = await store.push("solo2:1", `${regs[0].host}/k/solo2:1`, opts);
      assert.equal(await sha(kept(solo2.layers[1].digest)), solo2.layers[1].digest);
      await store.removeImage("solo2:1");
      await assert.rejects(fsp.stat(kept(solo2.layers[1].digest)), { code: "ENOENT" });
      assert.equal(await sha(kept(solo2.layers[0].digest)), solo2.layers[0].digest);
    } finally {
      for (const r of regs) await r.stop();
    }
  });

  test("a pull keeps its blobs by default and pushes to another registry with the registry's own bytes and manifest digest", { skip: needImages }, async () => {
    const src = await startRegistry();
    const dst = await startRegistry();
    const mirror = await openStore(`${dir}/mirror`);
    try {
      skopeo(`oci:${image("busybox-1.38.0-musl-amd64")}:busybox:1.38.0-musl`, `docker://${src.host}/lib/busybox:1.38`);
      // Pulls keep their blobs by default.
      const pulled = await mirror.pull(`${src.host}/lib/busybox:1.38`, opts);
      const r = await mirror.push(`${src.host}/lib/busybox:1.38`, `${dst.host}/lib/busybox:1.38`, opts);
      assert.deepEqual(r.layers.map((l) => l.how), ["kept"]);
      assert.equal(r.manifestDigest, pulled.manifestDigest);
      skopeo(`docker://${dst.host}/lib/busybox:1.38`, `oci:${dir}/oci-mirror:x`);
      // Without keepBlobs the layer is made and gzipped here: other bytes than busybox's own, another manifest digest.
      const plain = await openStore(`${dir}/mirror-plain`);
      try {
        await plain.pull(`${src.host}/lib/busybox:1.38`, { ...opts, keepBlobs: false });
        const again = await plain.push(`${src.host}/lib/busybox:1.38`, `${dst.host}/lib/busybox2:1.38`, opts);
        assert.deepEqual(again.layers.map((l) => l.how), ["uploaded"]);
        assert.notEqual(again.manifestDigest, pulled.manifestDigest);
      } finally {
        await plain.close();
      }
    } finally {
      await mirror.close();
      await src.stop();
      await dst.stop();
    }
  });

  test("a store that cannot keep blobs still pushes", async () => {
    await fsp.rm(`${dir}/store/blobs`, { recursive: true, force: true });
    await fsp.writeFile(`${dir}/store/blobs`, "not a directory");
    const fresh = await startRegistry();
    try {
      const r = await store.push("app:1", `${fresh.host}/nokeep/app:1`, opts);
      assert.deepEqual(r.layers.map((l) => l.how), ["uploaded", "uploaded"]);
      skopeo(`docker://${fresh.host}/nokeep/app:1`, `oci:${dir}/oci-nokeep:x`);
    } finally {
      await fsp.rm(`${dir}/store/blobs`, { force: true });
      await fresh.stop();
    }
  });

  test("bad pushes fail with one clear line", async () => {
    await failsWith(store.push("nope:1", `${reg.host}/x/y:1`, opts), /^ENOENT: .*'nope:1': no such image/);
    await failsWith(store.push("app:1", `${reg.host}/x/y@sha256:${"a".repeat(64)}`, opts), /^EINVAL: .*push to a tag/);
  });
});
