/**
 * The interchange code on the layer store under construction (src/layers), through the
 * adapters the store will be wired with (`fsTarget(store.fs(key))`, `storeHost(store)`):
 * real layers must read back exactly as the in-memory double has them, diffs must
 * rebuild them, and images must import, check out and export as with the double.
 */
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import { test } from "node:test";
import { applyTar } from "../../src/interchange/apply.ts";
import { changeset } from "../../src/interchange/changeset.ts";
import { walkChanges } from "../../src/interchange/walkdiff.ts";
import { fsTarget } from "../../src/interchange/fstarget.ts";
import type { ImageCatalog, ImageRecord } from "../../src/interchange/host.ts";
import { exportImage, importImage } from "../../src/interchange/images.ts";
import { readImage } from "../../src/interchange/imageread.ts";
import { storeHost } from "../../src/interchange/storehost.ts";
import { checkout } from "../../src/interchange/checkout.ts";
import { LayerStore } from "../../src/layers/mod.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { collect, describeView, hostView, image, needImages, tarOf } from "./helpers.ts";
import { MemStore, MemTree } from "./memlayers.ts";

async function withLayerStore(fn: (store: LayerStore) => Promise<void>): Promise<void> {
  const dir = await tmpDir("thinstack-interchange-");
  const store = await LayerStore.open(dir, { create: true, dataSize: 4 * 2 ** 30, baseSize: 2 ** 30 });
  try {
    await fn(store);
  } finally {
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** Applies `tars` as a chain of committed layers in both the store and the double; compares each. */
async function both(store: LayerStore, name: string, tars: string[]): Promise<void> {
  const mem = new MemTree();
  let parent: string | undefined;
  for (const [i, tar] of tars.entries()) {
    const key = `${name}-${i}`;
    await store.prepare(`${key}-x`, parent);
    const t = fsTarget(store.fs(`${key}-x`));
    await applyTar(t, tar);
    await applyTar(mem, tar);
    await store.commit(key, `${key}-x`);
    parent = key;
    assert.deepEqual(await describeView(fsTarget(store.fs(key)), { mtime: true }), await describeView(mem, { mtime: true }), `${name} layer ${i}`);
  }
  // Diff each committed layer by walking it beside its parent; the changesets rebuild the chain.
  const rebuilt = new MemStore();
  for (let i = 0; i < tars.length; i++) {
    const key = `${name}-${i}`;
    const src = { ...fsTarget(store.fs(key)), changes: () => walkChanges(i ? fsTarget(store.fs(`${name}-${i - 1}`)) : undefined, fsTarget(store.fs(key))) };
    await rebuilt.prepare(`${key}-x`, i ? `${name}-${i - 1}` : undefined);
    await applyTar(rebuilt.target(`${key}-x`), await collect(changeset(src)));
    await rebuilt.commit(key, `${key}-x`);
    assert.deepEqual(await describeView(rebuilt.view(key), { mtime: true }), await describeView(fsTarget(store.fs(key)), { mtime: true }), `${name} layer ${i} diffed`);
  }
}

test("real layers applied through store.fs read back as the model has them", { skip: needImages }, async () => {
  await withLayerStore(async (store) => {
    await both(store, "busybox", [image("busybox-1.38.0-musl-amd64/rootfs.tar.gz")]);
    await both(store, "alpine", [image("alpine-minirootfs-3.20.3-x86_64.tar.gz")]);
    await both(store, "regclient", [image("regclient-layer.tar"), image("regclient-layer-wh.tar")]);
    await both(store, "gotar", [image("gotar-hdr-only.tar"), image("gotar-xattrs.tar"), image("cstorage-broken.tar")]);
    const dive = await readImage(image("dive-test-docker-image.tar"));
    try {
      const dir = await tmpDir("thinstack-dive-");
      const paths: string[] = [];
      for (const [i, l] of dive.layers.entries()) {
        paths.push(`${dir}/${i}.tar`);
        await fsp.writeFile(paths[i], (await dive.files.read(l.path))!);
      }
      await both(store, "dive", paths);
      await fsp.rm(dir, { recursive: true });
    } finally {
      await dive.files.close();
    }
  });
});

function catalog(): ImageCatalog {
  const m = new Map<string, ImageRecord>();
  return {
    getImage: (n) => Promise.resolve(m.get(n)),
    putImage: (r) => Promise.resolve(void m.set(r.name, r)),
    listImages: () => Promise.resolve([...m.values()]),
  };
}

test("images import into the layer store, check out, export and re-import as with the model", { skip: needImages }, async () => {
  await withLayerStore(async (store) => {
    const host = storeHost(store);
    const images = catalog();
    const mem = new MemStore();
    for (const file of ["dive-test-docker-image.tar", "busybox-1.38.0-musl-amd64", "ggcr-whiteout_dir.tar"]) {
      const r = await importImage(host, images, image(file));
      const m = await importImage(mem, mem, image(file));
      assert.deepEqual(r.layers, m.layers);
      const top = r.layers[r.layers.length - 1];
      const want = await describeView(mem.view(top), { mtime: true });
      assert.deepEqual(await describeView(host.view(top), { mtime: true }), want, file);
      const dir = await tmpDir("thinstack-co-");
      try {
        await checkout(host.view(top), `${dir}/rootfs`);
        assert.deepEqual(await describeView(hostView(`${dir}/rootfs`), { mtime: true }), want);
        await exportImage(host, images, r.name, `${dir}/oci`);
        const again = new MemStore();
        const back = await importImage(again, again, `${dir}/oci`);
        assert.deepEqual(await describeView(again.view(back.layers[back.layers.length - 1]), { mtime: true }), want, `${file} exported`);
      } finally {
        await fsp.rm(dir, { recursive: true, force: true });
      }
    }
    // Importing again skips every layer; the store is unchanged.
    const before = (await store.list()).length;
    await importImage(host, images, image("dive-test-docker-image.tar"), { name: "again" });
    assert.equal((await store.list()).length, before);
  });
});

test("file data arriving in pieces of every size (a pipe's 64 KiB, odd cuts, ones past half a MiB) lands whole", async () => {
  await withLayerStore(async (store) => {
    // Files at, below and past the 1 MiB the target gathers pieces into, and one past 2 MiB.
    const sizes = [2 ** 20, 70_000, 2 ** 20 + 1, 3 * 2 ** 20 - 17];
    const files = sizes.map((n, i) => Uint8Array.from({ length: n }, (_, j) => (j * 31 + i * 7 + (j >> 12)) & 0xff));
    const tar = await tarOf([{ name: "d/" }, ...files.map((data, i) => ({ name: `d/f${i}`, data }))]);
    // Cuts, repeating: 64 KiB, 1 byte, 700 KiB (big enough to go alone, here arriving
    // mid-gather), 4095; then the two headers alone, so that a 600 KiB piece starts a file.
    for (const [n, cuts] of [[65536, 1, 700 * 1024, 4095], [1024, 600 * 1024]].entries()) {
      async function* pieces(): AsyncGenerator<Uint8Array> {
        for (let at = 0, i = 0; at < tar.length; i++) {
          const len = cuts[i % cuts.length];
          yield tar.slice(at, at + len);
          at += len;
        }
      }
      await store.prepare(`k${n}`);
      await applyTar(fsTarget(store.fs(`k${n}`)), pieces());
      for (const [i, data] of files.entries()) {
        const back = new Uint8Array(await store.fs(`k${n}`).readFile(`/d/f${i}`) as Uint8Array);
        assert.equal(back.length, data.length, `cuts ${n}: f${i} size`);
        assert.deepEqual(back, data, `cuts ${n}: f${i} bytes`);
      }
    }
  });
});
