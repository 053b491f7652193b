/**
 * Pulling from Debian's docker-registry: the real images of ../shared/images, put there
 * by `skopeo copy` (OCI manifests from the OCI layout, Docker schema 2 from the
 * docker-save archives), pull into the layer store as the same layers (ChainIDs) and
 * trees their import from the files gives; the image is recorded with repository, tag,
 * manifest digest and blobs; a second pull moves nothing; bad references fail with one
 * clear line.
 */
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { fsTarget } from "../../src/interchange/fstarget.ts";
import { importImage } from "../../src/interchange/images.ts";
import { ImageStore } from "../../src/images/mod.ts";
import { pull } from "../../src/registry/pull.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { describeView, image, needImages } from "../interchange/helpers.ts";
import { MemStore } from "../interchange/memlayers.ts";
import { freePort, needTools, run, skopeo, startRegistry, type TestRegistry } from "./registry.ts";
import { startProxy } from "./proxy.ts";

const REAL = [
  "busybox-1.38.0-musl-amd64", "dive-test-docker-image.tar", "dive-test-kaniko-image.tar", "ggcr-whiteout_dir.tar",
  "ggcr-whiteout_image.tar", "ggcr-overwritten_file.tar", "ggcr-hello-world-v25.tar",
];
const slug = (file: string) => file.replace(/\.tar$/, "").toLowerCase().replace(/[^a-z0-9]+/g, "-");
const source = (file: string) => file.endsWith(".tar") ? `docker-archive:${image(file)}` : `oci:${image(file)}:busybox:1.38.0-musl`;
const opts = { plainHttp: true, retry: { backoffMs: 10 } };

describe("pull from docker-registry", { skip: needTools || needImages }, () => {
  let reg: TestRegistry;
  let dir: string;
  before(async () => {
    dir = await tmpDir("thinstack-pull-");
    reg = await startRegistry();
    for (const file of REAL) skopeo(source(file), `docker://${reg.host}/real/${slug(file)}:t`);
  });
  after(async () => {
    await reg?.stop();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  for (const file of REAL) {
    test(`${file}: pulls into the layers and tree its import gives, recorded with where it came from`, async () => {
      const store = await ImageStore.open(`${dir}/${slug(file)}`, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
      try {
        const ref = `${reg.host}/real/${slug(file)}:t`;
        const events: string[] = [];
        const r = await store.pull(ref, { ...opts, onProgress: (e) => events.push(`${e.index}:${e.state}`) });
        const mem = new MemStore();
        const want = await importImage(mem, mem, image(file));
        assert.deepEqual(r.layers, want.layers, "ChainIDs");
        const top = r.layers[r.layers.length - 1];
        assert.deepEqual(await describeView(fsTarget(store.fs(top)), { mtime: true }), await describeView(mem.view(top), { mtime: true }));
        // The record names the repository, tag and manifest the registry serves.
        const inspect = JSON.parse(run("skopeo", ["inspect", "--tls-verify=false", `docker://${ref}`]));
        const rec = await store.image(ref);
        assert.equal(rec.repository, `${reg.host}/real/${slug(file)}`);
        assert.equal(rec.tag, "t");
        assert.equal(rec.manifestDigest, inspect.Digest);
        assert.equal(r.manifestDigest, inspect.Digest);
        assert.deepEqual(rec.blobs?.map((b) => b.map((x) => x.digest)), inspect.Layers.map((d: string) => [d]));
        assert.equal(rec.top, top);
        assert.equal(r.downloaded + r.skipped, r.layers.length);
        for (let i = 0; i < r.layers.length; i++) assert.ok(events.includes(`${i}:done`) || events.includes(`${i}:exists`), `layer ${i} reported`);
        // Again: every layer is there, nothing is downloaded.
        const again = await store.pull(ref, { ...opts, name: "again" });
        assert.equal(again.downloaded, 0);
        assert.equal(again.bytes, 0);
        assert.deepEqual(again.layers, r.layers);
      } finally {
        await store.close();
      }
    });
  }

  test("a second image sharing the base moves only its own layers (bytes counted at a proxy)", async () => {
    // An app image on busybox, made and pushed by thinstack.
    const busybox = `${reg.host}/real/${slug("busybox-1.38.0-musl-amd64")}:t`;
    const maker = await ImageStore.open(`${dir}/maker`, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
    try {
      const base = await maker.pull(busybox, opts);
      await maker.prepare("app-x", base.layers.at(-1));
      await maker.fs("app-x").writeFile("/app.bin", new Uint8Array(300_000).map((_, i) => (i * 7919) % 251));
      await maker.commit("app", "app-x");
      await maker.createImage("app", "app", { config: { config: { Cmd: ["/app.bin"] } } });
      await maker.push("app", `${reg.host}/apps/app:1`, opts);
    } finally {
      await maker.close();
    }
    const proxy = await startProxy(reg.host);
    const store = await ImageStore.open(`${dir}/shared-base`, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
    try {
      const first = await store.pull(busybox.replace(reg.host, proxy.host), opts);
      const sizes = await blobSizes(reg.host, "apps/app", "1");
      const before = proxy.blobBytes;
      const second = await store.pull(`${proxy.host}/apps/app:1`, opts);
      assert.deepEqual(second.layers.slice(0, 1), first.layers);
      assert.equal(second.skipped, 1);
      assert.equal(second.downloaded, 1);
      // Over the wire: the config and the app's own layer, not busybox's.
      assert.equal(proxy.blobBytes - before, sizes.config + sizes.layers[1]);
      assert.ok(sizes.layers[0] > 800_000);
    } finally {
      await store.close();
      await proxy.stop();
    }
  });

  test("pull into the in-memory double gives what ImageStore gets (the LayerHost/ImageCatalog contract)", async () => {
    const mem = new MemStore();
    const r = await pull(mem, mem, `${reg.host}/real/${slug("ggcr-whiteout_dir.tar")}:t`, opts);
    const want = new MemStore();
    const w = await importImage(want, want, image("ggcr-whiteout_dir.tar"));
    assert.deepEqual(r.layers, w.layers);
    assert.deepEqual(await describeView(mem.view(r.layers.at(-1)!)), await describeView(want.view(w.layers.at(-1)!)));
  });

  test("bad references fail with one clear line, and leave nothing", async () => {
    const store = await ImageStore.open(`${dir}/bad`, { create: true, dataSize: 2 ** 28, baseSize: 2 ** 26 });
    try {
      await failsWith(store.pull(`${reg.host}/real/${slug("ggcr-whiteout_dir.tar")}:nope`, opts), /^ENOENT: .*no tag 'nope' in '127\.0\.0\.1:\d+\/real\/ggcr-whiteout-dir'/);
      await failsWith(store.pull(`${reg.host}/nothing/here:t`, opts), /^ENOENT: .*(no repository|no tag)/);
      await failsWith(store.pull(`${reg.host}/Bad_Name:t`, opts), /^EINVAL: .*reference/);
      await failsWith(store.pull(`127.0.0.1:${await freePort()}/x:t`, { ...opts, retry: { retries: 0 } }), /^ECONNREFUSED: .*is the registry running/);
      // TLS spoken to a plain-HTTP registry.
      await failsWith(store.pull(`${reg.host}/real/x:t`, { retry: { retries: 0 } }), /^EPROTO: .*--plain-http/);
      assert.deepEqual(await store.images(), []);
      assert.deepEqual((await store.list()).length, 0);
    } finally {
      await store.close();
    }
  });

  test("something that is not a registry fails as such", async () => {
    const { default: http } = await import("node:http");
    const server = http.createServer((_req, res) => {
      res.writeHead(404, { "content-type": "text/html" });
      res.end("<html>no such page</html>");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const mem = new MemStore();
    try {
      await failsWith(pull(mem, mem, `127.0.0.1:${port}/x:t`, opts), /^EPROTO: .*not an OCI registry: http:\/\/127\.0\.0\.1:\d+\/v2\/ answered HTTP 404/);
    } finally {
      server.close();
    }
  });
});

/** Asserts `p` fails with a one-line message matching `re`. */
async function failsWith(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), e.message);
    return true;
  });
}

/** Sizes of an image's layer blobs and config, from its manifest. */
async function blobSizes(host: string, repo: string, tag = "t"): Promise<{ layers: number[]; config: number }> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" },
  });
  const m = await res.json() as { config: { size: number }; layers: { size: number }[] };
  return { layers: m.layers.map((l) => l.size), config: m.config.size };
}
