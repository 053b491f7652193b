/**
 * Interop with real tools from Debian (`umoci`, `skopeo`; CI's .ci/run installs them):
 *
 * - an image built with umoci, with deletions and hard links across layers, imports into
 *   thinstack and checks out to exactly the tree `umoci unpack` gives;
 * - an image exported by thinstack unpacks with umoci to thinstack's own checkout and
 *   passes `skopeo inspect`, in both formats;
 * - the real docker-save images, converted by skopeo and unpacked by umoci, give the
 *   trees thinstack's import and checkout give.
 *
 * Everything goes through the real layer store's own methods (importImage, checkout,
 * exportImage).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fsp from "node:fs/promises";
import process from "node:process";
import { test } from "node:test";
import { ImageStore } from "../../src/images/mod.ts";
import { withTmp } from "../helpers/tmp.ts";
import { describeView, hostView, image, needImages } from "./helpers.ts";

const has = (cmd: string) => spawnSync(cmd, ["--version"], { stdio: "ignore" }).status === 0;
const root = process.getuid?.() === 0;
const needUmoci = !has("umoci") ? "umoci is not installed (apt-get install umoci; .ci/run does)" : !root ? "umoci unpack keeps owners and makes devices only as root" : false;
const needBoth = needUmoci || (!has("skopeo") ? "skopeo is not installed (apt-get install skopeo; .ci/run does)" : false);

function sh(script: string, cwd: string): string {
  const r = spawnSync("sh", ["-ec", script], { cwd, encoding: "utf8" });
  assert.equal(r.status, 0, `${script}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** umoci's view of an image: `umoci unpack` into `dir/bundle`, then the tree. */
async function umociTree(layoutAndTag: string, dir: string): Promise<string[]> {
  sh(`umoci unpack --image ${layoutAndTag} bundle >/dev/null`, dir);
  return await describeView(hostView(`${dir}/bundle/rootfs`), { mtime: true });
}

/** thinstack's view: checkout of the image's top layer, with devices and setuid bits as umoci makes them. */
async function ourTree(store: ImageStore, top: string, dir: string): Promise<string[]> {
  await store.checkout(top, `${dir}/checkout`, { devices: true, keepSetid: true });
  return await describeView(hostView(`${dir}/checkout`), { mtime: true });
}

/** A store in `dir/store` for `fn`, closed after. */
async function withStore<T>(dir: string, fn: (s: ImageStore) => Promise<T>): Promise<T> {
  const s = await ImageStore.open(`${dir}/store`, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** Three layers made with umoci: files, a hard link, a FIFO, a device, setuid; then deletions, a replaced directory and a new link to a lower file. */
const BUILD = `
umoci init --layout L >/dev/null
umoci new --image L:v1 >/dev/null
umoci unpack --image L:v1 B >/dev/null
mkdir -p B/rootfs/etc B/rootfs/data/sub B/rootfs/data/tree/deep
echo hello > B/rootfs/data/file
ln B/rootfs/data/file B/rootfs/data/hard
echo gone > B/rootfs/data/gone
echo deep > B/rootfs/data/tree/deep/f
ln -s /data/file B/rootfs/abs
ln -s ../data/file B/rootfs/etc/rel
mkfifo B/rootfs/data/fifo
mknod B/rootfs/data/null c 1 3
chown 1000:1000 B/rootfs/data/sub
chmod 4755 B/rootfs/data/file
touch -d 2001-02-03T04:05:06Z B/rootfs/data/gone B/rootfs/etc
umoci repack --image L:v2 B >/dev/null
rm -rf B
umoci unpack --image L:v2 B >/dev/null
rm B/rootfs/data/gone
rm -rf B/rootfs/data/tree
rm -rf B/rootfs/data/sub && mkdir B/rootfs/data/sub && echo new > B/rootfs/data/sub/x
ln B/rootfs/data/file B/rootfs/data/hard2
chmod 700 B/rootfs/etc
echo replaced > B/rootfs/abs.tmp && rm B/rootfs/abs && mv B/rootfs/abs.tmp B/rootfs/abs
umoci repack --image L:v3 B >/dev/null
rm -rf B
`;

test("an image built with umoci imports and checks out to exactly what umoci unpack gives", { skip: needUmoci }, async () => {
  await withTmp(async (dir) => {
    sh(BUILD, dir);
    await withStore(dir, async (s) => {
    await assert.rejects(s.importImage(`${dir}/L`), /several images \(v1.*v2.*v3.*\); name one/);
    const { layers } = await s.importImage(`${dir}/L`, { ref: "v3", name: "built" });
    assert.equal(layers.length, 2);
    const ours = await ourTree(s, layers[1], dir);
    assert.deepEqual(ours, await umociTree("L:v3", dir));
    // The details the layers were built to exercise, as umoci and thinstack both have them.
    assert.ok(ours.some((l) => /^file \/data\/hard2 .*=\/data\/file/.test(l)), "a hard link across layers");
    assert.ok(ours.some((l) => l.startsWith("char /data/null ")));
    assert.ok(!ours.some((l) => l.includes("/data/gone") || l.includes("/data/tree")), "deletions");
    assert.ok(ours.includes("dir /data/sub 755 0:0") || ours.some((l) => l.startsWith("dir /data/sub 755 0:0 ")));
    });
  });
});

test("an image exported by thinstack unpacks with umoci to thinstack's checkout and passes skopeo inspect", { skip: needBoth }, async () => {
  await withTmp(async (dir) => {
    sh(BUILD, dir);
    await withStore(dir, async (s) => {
    const { name, layers } = await s.importImage(`${dir}/L`, { ref: "v3", name: "built" });
    const ours = await ourTree(s, layers[1], dir);
    const oci = await s.exportImage(name, `${dir}/E`, { ref: "thin" });
    assert.deepEqual(await umociTree("E:thin", dir), ours);
    const inspect = JSON.parse(sh(`skopeo inspect oci:E:thin`, dir));
    assert.deepEqual(inspect.Layers, oci.layers.map((l) => l.digest));
    assert.equal(inspect.Digest, oci.manifestDigest);
    // docker-save: skopeo reads it, converts it, and umoci unpacks the same tree.
    const docker = await s.exportImage(name, `${dir}/e.tar`, { format: "docker", ref: "thin:1" });
    // Looking the image up by its tag proves manifest.json's RepoTags.
    const di = JSON.parse(sh(`skopeo inspect docker-archive:e.tar:thin:1`, dir));
    assert.equal(di.Name, "docker.io/library/thin");
    assert.equal(di.Layers.length, 2);
    assert.deepEqual(di.Layers, docker.layers.map((l) => l.digest));
    await fsp.rm(`${dir}/bundle`, { recursive: true });
    sh(`skopeo copy -q docker-archive:e.tar oci:D:d`, dir);
    assert.deepEqual(await umociTree("D:d", dir), ours);
    });
  });
});

const REAL = [
  "dive-test-docker-image.tar", "dive-test-kaniko-image.tar", "ggcr-whiteout_dir.tar", "ggcr-whiteout_image.tar",
  "ggcr-overwritten_file.tar", "ggcr-hello-world-v25.tar", "busybox-1.38.0-musl-amd64",
];

for (const file of REAL) {
  test(`${file}: skopeo + umoci unpack give the tree thinstack's import + checkout give`, { skip: needImages || needBoth }, async () => {
    await withTmp(async (dir) => {
      const src = file.endsWith(".tar") ? `docker-archive:${image(file)}` : `oci:${image(file)}:busybox:1.38.0-musl`;
      sh(`skopeo copy -q ${src} oci:R:r`, dir);
      await withStore(dir, async (s) => {
      const { layers } = await s.importImage(image(file));
      assert.deepEqual(await ourTree(s, layers[layers.length - 1], dir), await umociTree("R:r", dir));
      });
    });
  });
}
