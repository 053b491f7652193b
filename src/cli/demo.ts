/**
 * `npm start`: a short tour on the embedded default store (./.thinstack, or
 * $THINSTACK_ROOT). It imports the OCI image in fixtures/demo-image (once; the image is
 * made by scripts/make-fixtures.ts), prepares a container layer over its top layer,
 * changes and deletes files there, commits it, and prints `info`, the block usage and
 * the layer tree.
 *
 * @module
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { formatIec, GiB, KiB } from "../common/units.ts";
import { ImageStore } from "../images/mod.ts";
import type { LayerInfo } from "../layers/mod.ts";
import { layerTree } from "./commands/layers.ts";
import { infoFields } from "./info.ts";
import { fields, table } from "./output.ts";

/** The image layout the demo imports, and the name it carries there. */
const FIXTURE = fileURLToPath(new URL("../../fixtures/demo-image", import.meta.url));
const IMAGE = "demo/webapp:1.0";

const say = (s: string) => process.stdout.write(s + "\n");

/** Image layers are named by ChainID; shown, like docker's IDs, by their first 12 hex digits. */
const short = (name: string) => (/^sha256:[0-9a-f]{64}$/.test(name) ? name.slice(0, 19) : name);

/** Runs the demo in `root`. */
export async function demo(root: string): Promise<void> {
  const store = await ImageStore.open(root, { create: true, dataSize: 4 * GiB, baseSize: GiB });
  try {
    say(`thinstack demo: store at ${root}\n`);
    if ((await store.images()).some((i) => i.name === IMAGE)) {
      say(`image ${IMAGE} is already here`);
    } else {
      const { layers } = await store.importImage(FIXTURE, { name: IMAGE });
      say(`imported ${IMAGE} from ${path.relative(process.cwd(), FIXTURE) || FIXTURE} (an OCI layout): ${layers.length} layers, named by ChainID`);
    }
    const image = await store.image(IMAGE);
    image.layers.forEach((l, i) => say(`  layer ${i}: ${short(l)}`));
    const parent = image.top;

    const container = `container-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    const before = store.pool.status().dataBlocks.used;
    await store.prepare(container, parent);
    const c = store.fs(container);
    await c.writeFile("/etc/hostname", "web-2\n");
    await c.appendFile("/var/log/app.log", "started\n");
    await c.rm("/etc/webapp.conf");
    const blobSize = (await c.stat("/usr/lib/blob.bin")).size;
    const middle = Math.floor(blobSize / 2 / store.pool.blockSize) * store.pool.blockSize;
    const blob = await c.open("/usr/lib/blob.bin", "r+");
    await blob.write(new Uint8Array(32 * KiB).fill(0xab), 0, 32 * KiB, middle);
    await blob.close();
    await store.sync();
    const added = store.pool.status().dataBlocks.used - before;
    say(`\nprepared ${container} over ${short(parent)} (the image's top layer):`);
    say(`  wrote /etc/hostname, appended /var/log/app.log, deleted /etc/webapp.conf`);
    say(`  changed 32 KiB in the middle of the ${formatIec(blobSize)} /usr/lib/blob.bin: ${added} new pool block(s) (${formatIec(added * store.pool.blockSize)})`);
    say(`  /etc/webapp.conf in the container: ${await c.stat("/etc/webapp.conf").then(() => "present", (e) => e.code)}; in ${short(parent)}: ${await store.fs(parent).stat("/etc/webapp.conf").then(() => "present", (e) => e.code)}`);
    await store.commit(`${container}-snapshot`, container);

    say(`\nStorage Driver: thinstack`);
    process.stdout.write(fields(infoFields(store.pool, root, store.baseSize)));
    say(`\nLayers:`);
    const layers = await store.list();
    const rows = [];
    for (const l of layers) {
      const u = store.blockUsage(l.name);
      rows.push([short(l.name), l.kind, u.device, u.mapped, u.exclusive, u.shared]);
    }
    process.stdout.write(table(["LAYER", "KIND", "DEV", "MAPPED", "EXCLUSIVE", "SHARED"], rows));
    say(`\nLayer tree:`);
    process.stdout.write(layerTree(layers.map((l): LayerInfo => ({ ...l, name: short(l.name), parent: short(l.parent) }))));
    const rel = path.relative(process.cwd(), root) || ".";
    say(`\nNext: npx thinstack --root ${rel.startsWith("..") ? root : rel} --help`);
  } finally {
    await store.close();
  }
}

await demo(path.resolve(process.env.THINSTACK_ROOT ?? ".thinstack"));
