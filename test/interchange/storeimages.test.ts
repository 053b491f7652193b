/**
 * Every real image in ../shared/images through the store's own methods: importImage,
 * checkout, diff (read off the layers' own tables) and exportImage, each checked
 * against the in-memory double importing the same archive.
 */
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import { test } from "node:test";
import { applyTar } from "../../src/interchange/apply.ts";
import { importImage } from "../../src/interchange/images.ts";
import { ImageStore } from "../../src/images/mod.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { collect, describeView, hostView, image, needImages } from "./helpers.ts";
import { MemStore } from "./memlayers.ts";
import { fsTarget } from "../../src/interchange/fstarget.ts";

const IMAGES = [
  "busybox-1.38.0-musl-amd64", "dive-test-docker-image.tar", "dive-test-kaniko-image.tar", "ggcr-hello-world-v25.tar",
  "ggcr-overwritten_file.tar", "ggcr-whiteout_dir.tar", "ggcr-whiteout_image.tar", "moby-emptyLayer.tar",
];

for (const file of IMAGES) {
  test(`${file}: import, checkout, diff and export through the store`, { skip: needImages }, async () => {
    const dir = await tmpDir("thinstack-storeimages-");
    const store = await ImageStore.open(`${dir}/store`, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
    try {
      const mem = new MemStore();
      const want = await importImage(mem, mem, image(file));
      const got = await store.importImage(image(file), { name: "img" });
      assert.deepEqual(got.layers, want.layers, "ChainIDs");
      const top = got.layers[got.layers.length - 1];
      const tree = await describeView(mem.view(top), { mtime: true });
      assert.deepEqual(await describeView(fsTarget(store.fs(top)), { mtime: true }), tree, "merged top layer");
      assert.equal((await store.image("img")).top, top);

      await store.checkout(top, `${dir}/rootfs`);
      assert.deepEqual(await describeView(hostView(`${dir}/rootfs`), { mtime: true }), tree, "checkout");

      // Each layer's diff, applied in order, rebuilds every layer of the chain.
      const rebuilt = new MemStore();
      for (const [i, name] of got.layers.entries()) {
        const tar = await collect(store.diff(name));
        await rebuilt.prepare(`${i}-x`, i ? String(i - 1) : undefined);
        await applyTar(rebuilt.target(`${i}-x`), tar);
        await rebuilt.commit(String(i), `${i}-x`);
        assert.deepEqual(
          await describeView(rebuilt.view(String(i)), { mtime: true }),
          await describeView(mem.view(name), { mtime: true }),
          `layer ${i} rebuilt from its diff`,
        );
      }

      for (const format of ["oci", "docker"] as const) {
        const out = `${dir}/export-${format}${format === "docker" ? ".tar" : ""}`;
        await store.exportImage("img", out, { format });
        const again = new MemStore();
        const back = await importImage(again, again, out);
        assert.deepEqual(await describeView(again.view(back.layers[back.layers.length - 1]), { mtime: true }), tree, `${format} export`);
      }
    } finally {
      await store.close();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
}
