/**
 * Pull and push through a fault proxy: downloads cut mid-blob (resumed with ranged GETs,
 * or from the start where ranges are ignored), 500s, slow answers, a stalled download,
 * chunk uploads cut mid-way — each still ends with the right bytes. A corrupt byte fails
 * the pull naming the digest, and a registry that goes away or a store that fills up
 * fail it too; none leaves a layer or an image behind.
 */
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { ImageStore } from "../../src/images/mod.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { describeView, hostView } from "../interchange/helpers.ts";
import { appLayer, baseLayer, config } from "./build.ts";
import { type Faults, startProxy } from "./proxy.ts";
import { needRegistry, run, startRegistry, type TestRegistry } from "./registry.ts";

const opts = { plainHttp: true, retry: { backoffMs: 5, retries: 6 } };

describe("faults between thinstack and the registry", { skip: needRegistry }, () => {
  let reg: TestRegistry;
  let dir: string;
  let maker: ImageStore;
  let tree: string[];
  let n = 0;
  before(async () => {
    dir = await tmpDir("thinstack-faults-");
    reg = await startRegistry();
    maker = await ImageStore.open(`${dir}/maker`, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
    await baseLayer(maker, "base");
    await appLayer(maker, "app", "base");
    await maker.createImage("app", "app", { config: config() });
    await maker.createImage("plain", "app", { config: { ...config(), config: { Cmd: ["plain"] } } });
    await appLayer(maker, "app2", "app", 5);
    await appLayer(maker, "app3", "app2", 9);
    await maker.createImage("four", "app3", { config: config() });
    await maker.push("app", `${reg.host}/f/app:1`, opts);
    await maker.push("plain", `${reg.host}/f/plain:1`, { ...opts, gzip: false });
    await maker.checkout("app", `${dir}/want`);
    tree = await describeView(hostView(`${dir}/want`), { mtime: true });
  });
  after(async () => {
    await maker?.close();
    await reg?.stop();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  /** Deletes the blobs pushes kept, so the next push makes every layer. */
  const dropKept = () => fsp.rm(`${dir}/maker/blobs`, { recursive: true, force: true });

  /** Pulls `ref` (a path on the registry) through a proxy with `faults` into a fresh store; checks the tree. */
  async function pullThrough(faults: Faults, repo = "f/app:1", extra: Record<string, unknown> = {}) {
    const proxy = await startProxy(reg.host, faults);
    const store = await ImageStore.open(`${dir}/pull-${n++}`, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
    try {
      const r = await store.pull(`${proxy.host}/${repo}`, { ...opts, ...extra });
      const out = `${dir}/out-${n++}`;
      await store.checkout(r.layers.at(-1)!, out);
      assert.deepEqual(await describeView(hostView(out), { mtime: true }), tree);
      return { proxy, r };
    } finally {
      await store.close();
      await proxy.stop();
    }
  }

  test("plain tar layers are their own DiffIDs, and pull back", async () => {
    const res = await fetch(`http://${reg.host}/v2/f/plain/manifests/1`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } });
    const m = await res.json() as { config: { digest: string }; layers: { mediaType: string; digest: string }[] };
    const c = await (await fetch(`http://${reg.host}/v2/f/plain/blobs/${m.config.digest}`)).json() as { rootfs: { diff_ids: string[] } };
    assert.ok(m.layers.every((l) => l.mediaType === "application/vnd.oci.image.layer.v1.tar"));
    assert.deepEqual(c.rootfs.diff_ids, m.layers.map((l) => l.digest));
    assert.deepEqual(c.rootfs.diff_ids, (await maker.image("app")).config.rootfs.diff_ids);
    await pullThrough({}, "f/plain:1");
  });

  test("downloads cut mid-blob resume with ranged GETs", async () => {
    const { proxy } = await pullThrough({ cutBlobAfter: 200_000, cutTimes: 3 });
    assert.ok(proxy.injected.cutBlob >= 3, JSON.stringify(proxy.injected));
    assert.ok(proxy.requests.some((q) => q.range && /^bytes=\d+-$/.test(q.range)), "a ranged GET");
  });

  test("a server that ignores Range sends the blob again and the start is skipped", async () => {
    const { proxy } = await pullThrough({ cutBlobAfter: 300_000, ignoreRange: true });
    assert.ok(proxy.injected.cutBlob >= 1);
  });

  test("500s on every other request (pull) and every third (push) are retried", async () => {
    const { proxy } = await pullThrough({ fail500Every: 2 });
    assert.ok(proxy.injected["500"] >= 3, JSON.stringify(proxy.injected));
    // Both ways a layer is sent: made as it goes (nothing kept), and as the push before kept it.
    for (const way of ["uploaded", "kept"] as const) {
      if (way === "uploaded") await dropKept();
      const p = await startProxy(reg.host, { fail500Every: 3 });
      try {
        const r = await maker.push("app", `${p.host}/f500-${way}/app:1`, { ...opts, chunkSize: 256 * 1024 });
        assert.deepEqual(r.layers.map((l) => l.how), [way, way]);
        assert.ok(p.injected["500"] >= 3);
        const inspect = JSON.parse(run("skopeo", ["inspect", "--tls-verify=false", `docker://${reg.host}/f500-${way}/app:1`]));
        assert.equal(inspect.Digest, r.manifestDigest);
      } finally {
        await p.stop();
      }
      await pullThrough({}, `f500-${way}/app:1`);
    }
  });

  test("slow answers and a stalled download still complete", async () => {
    await pullThrough({ delayMs: 50, bodyDelayMs: 1 });
    const { proxy } = await pullThrough({ stallBlobAfter: 100_000 }, "f/app:1", { idleTimeoutMs: 300 });
    assert.ok(proxy.injected.stall >= 1);
  });

  test("slow answers slow a push down, and it still lands", async () => {
    const p = await startProxy(reg.host, { delayMs: 40 });
    try {
      const r = await maker.push("app", `${p.host}/fslow/app:1`, { ...opts, chunkSize: 256 * 1024 });
      assert.equal(r.manifestDigest, (await maker.exportImage("app", `${dir}/export-${n++}`)).manifestDigest);
    } finally {
      await p.stop();
    }
    await pullThrough({}, "fslow/app:1");
  });

  test("layers move in parallel, never more at once than asked", async () => {
    // Slow answers hold every transfer open, so layers that may overlap do.
    const up = await startProxy(reg.host, { delayMs: 30 });
    try {
      const r = await maker.push("four", `${up.host}/fpar/four:1`, { ...opts, chunkSize: 128 * 1024, concurrency: 2 });
      // Every layer is sent (the lower two as an earlier push kept them), none found there.
      assert.ok(r.layers.every((l) => l.how === "uploaded" || l.how === "kept"), JSON.stringify(r.layers.map((l) => l.how)));
      assert.equal(up.peak.uploads, 2, JSON.stringify(up.peak));
    } finally {
      await up.stop();
    }
    for (const concurrency of [1, 3]) {
      const down = await startProxy(reg.host, { bodyDelayMs: 5 });
      const store = await ImageStore.open(`${dir}/par-${n++}`, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
      try {
        const r = await store.pull(`${down.host}/fpar/four:1`, { ...opts, concurrency });
        assert.equal(r.downloaded, 4);
        assert.equal(down.peak.blobGets, concurrency, JSON.stringify(down.peak));
      } finally {
        await store.close();
        await down.stop();
      }
    }
  });

  test("chunk uploads cut mid-way start over and push the right bytes", async () => {
    for (const way of ["uploaded", "kept"] as const) {
      if (way === "uploaded") await dropKept();
      const p = await startProxy(reg.host, { cutPatchAfter: 100_000, cutPatchTimes: 3 });
      try {
        const r = await maker.push("app", `${p.host}/fcut-${way}/app:1`, { ...opts, chunkSize: 256 * 1024 });
        assert.deepEqual(r.layers.map((l) => l.how), [way, way]);
        assert.ok(p.injected.cutPatch >= 1, JSON.stringify(p.injected));
        const want = await maker.exportImage("app", `${dir}/export-${n++}`);
        assert.equal(r.manifestDigest, want.manifestDigest);
      } finally {
        await p.stop();
      }
      await pullThrough({}, `fcut-${way}/app:1`);
    }
  });

  /** Asserts `store` holds nothing, now and after a reopen (no scratch layers left either). */
  async function assertEmpty(path: string, store: ImageStore) {
    assert.deepEqual(await store.images(), []);
    assert.deepEqual(await store.list(), []);
    await store.close();
    const again = await ImageStore.open(path);
    try {
      assert.deepEqual(await again.list(), []);
    } finally {
      await again.close();
    }
  }

  for (const [label, repo] of [["a gzipped", "f/app:1"], ["an uncompressed", "f/plain:1"]] as const) {
    test(`a corrupt byte in ${label} layer fails the pull naming the digest, and leaves nothing`, async () => {
      const proxy = await startProxy(reg.host, { corruptAt: 150_000 });
      const path = `${dir}/corrupt-${n++}`;
      const store = await ImageStore.open(path, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
      try {
        await assert.rejects(store.pull(`${proxy.host}/${repo}`, { ...opts, keepBlobs: true }), (e: Error) => {
          assert.match(e.message, /^EINVAL: .*digest mismatch: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}/);
          return true;
        });
        assert.ok(proxy.injected.corrupt >= 1);
        // Nor a kept blob: the ones streamed whole went with the failure.
        const kept = await fsp.readdir(`${path}/blobs`, { recursive: true }).catch(() => [] as string[]);
        assert.deepEqual(kept.filter((f) => /[0-9a-f]{16}$/.test(f)), []);
        await assertEmpty(path, store);
      } finally {
        await store.close().catch(() => {});
        await proxy.stop();
      }
    });
  }

  test("a registry that keeps cutting, or goes away, fails the pull and leaves nothing", async () => {
    // Cut before any byte, every time: a download that never moves gives up (one that moves keeps going).
    const proxy = await startProxy(reg.host, { cutBlobAfter: 0, cutTimes: 1000 });
    const path = `${dir}/gone-${n++}`;
    const store = await ImageStore.open(path, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
    try {
      await assert.rejects(store.pull(`${proxy.host}/f/app:1`, { ...opts, retry: { backoffMs: 1, retries: 2 } }), /ECONNRESET: .*keeps failing/);
      await assertEmpty(path, store);
    } finally {
      await store.close().catch(() => {});
      await proxy.stop();
    }
    // The proxy (the registry, as thinstack sees it) stops mid-download.
    const slow = await startProxy(reg.host, { bodyDelayMs: 20 });
    const path2 = `${dir}/gone-${n++}`;
    const store2 = await ImageStore.open(path2, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
    try {
      const pulling = store2.pull(`${slow.host}/f/app:1`, { ...opts, retry: { backoffMs: 1, retries: 2 } });
      while (slow.blobBytes < 100_000) await new Promise((r) => setTimeout(r, 10));
      await slow.stop();
      await assert.rejects(pulling, /^Error: (ECONNREFUSED|ECONNRESET): /);
      await assertEmpty(path2, store2);
    } finally {
      await store2.close().catch(() => {});
    }
  });

  test("a store that fills up fails the pull with ENOSPC and leaves nothing", async () => {
    const path = `${dir}/full-${n++}`;
    // 2 MiB of pool data: the 1.5 MB base fits, the app layer on top does not.
    const store = await ImageStore.open(path, { create: true, dataSize: 2 * 2 ** 20, baseSize: 2 ** 28 });
    try {
      await assert.rejects(store.pull(`${reg.host}/f/app:1`, opts), /ENOSPC/);
      await assertEmpty(path, store);
    } finally {
      await store.close().catch(() => {});
    }
  });
});
