/**
 * `npm start`: a short tour on the embedded default store (./.thinstack). It builds the
 * three-layer image described in fixtures/demo-image.json (once), prepares a container
 * layer over it, changes and deletes files there, commits it, and prints `info`, the
 * block usage and the layer tree.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import { formatIec, GiB } from "../common/units.ts";
import { LayerStore } from "../layers/mod.ts";
import { layerTree } from "./commands/layers.ts";
import { infoFields } from "./info.ts";
import { fields, table } from "./output.ts";

interface DemoLayer {
  name: string;
  dirs?: string[];
  files?: Record<string, string>;
  large?: Record<string, number>;
  symlinks?: Record<string, string>;
  modes?: Record<string, number>;
  delete?: string[];
}

const say = (s: string) => process.stdout.write(s + "\n");

/** Runs the demo in `root`. */
export async function demo(root: string): Promise<void> {
  const spec = JSON.parse(await fs.readFile(new URL("../../fixtures/demo-image.json", import.meta.url), "utf8")) as { name: string; layers: DemoLayer[] };
  const store = await LayerStore.open(root, { create: true, dataSize: 4 * GiB, baseSize: GiB });
  try {
    say(`thinstack demo: store at ${root}\n`);
    let parent: string | undefined;
    for (const layer of spec.layers) {
      const name = `${spec.name}/${layer.name}`;
      if (!(await store.stat(name).catch(() => undefined))) {
        const key = `${name}#building`;
        await store.remove(key).catch(() => {});
        await store.prepare(key, parent);
        const lfs = store.fs(key);
        for (const d of layer.dirs ?? []) await lfs.mkdir(d, { recursive: true });
        for (const [p, text] of Object.entries(layer.files ?? {})) {
          await lfs.mkdir(path.posix.dirname(p), { recursive: true });
          await lfs.writeFile(p, text);
        }
        for (const [p, size] of Object.entries(layer.large ?? {})) {
          await lfs.mkdir(path.posix.dirname(p), { recursive: true });
          const data = new Uint8Array(size);
          for (let i = 0; i < size; i += 4096) data[i] = (i / 4096) & 0xff;
          await lfs.writeFile(p, data);
        }
        for (const [p, target] of Object.entries(layer.symlinks ?? {})) await lfs.symlink(target, p);
        for (const [p, mode] of Object.entries(layer.modes ?? {})) await lfs.chmod(p, mode);
        for (const p of layer.delete ?? []) await lfs.rm(p);
        await store.commit(name, key);
        say(`built layer ${name}`);
      } else {
        say(`layer ${name} is already here`);
      }
      parent = name;
    }

    const container = `container-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    const before = store.pool.status().dataBlocks.used;
    await store.prepare(container, parent);
    const c = store.fs(container);
    await c.writeFile("/etc/hostname", "web-2\n");
    await c.appendFile("/var/log/app.log", "started\n");
    await c.rm("/etc/webapp.conf");
    const blob = await c.open("/usr/lib/blob.bin", "r+");
    await blob.write(new Uint8Array(32 * 1024).fill(0xab), 0, 32 * 1024, 4 * 1024 * 1024);
    await blob.close();
    await store.sync();
    const added = store.pool.status().dataBlocks.used - before;
    say(`\nprepared ${container} over ${parent}:`);
    say(`  wrote /etc/hostname, appended /var/log/app.log, deleted /etc/webapp.conf`);
    say(`  changed 32 KiB in the middle of the 8 MiB /usr/lib/blob.bin: ${added} new pool block(s) (${formatIec(added * store.pool.blockSize)})`);
    say(`  /etc/webapp.conf in the container: ${await c.stat("/etc/webapp.conf").then(() => "present", (e) => e.code)}; in ${parent}: ${await store.fs(parent!).stat("/etc/webapp.conf").then(() => "present", (e) => e.code)}`);
    await store.commit(`${container}-snapshot`, container);

    say(`\nStorage Driver: thinstack`);
    process.stdout.write(fields(infoFields(store.pool, root, store.baseSize)));
    say(`\nLayers:`);
    const layers = await store.list();
    const rows = [];
    for (const l of layers) {
      const u = store.blockUsage(l.name);
      rows.push([l.name, l.kind, u.device, u.mapped, u.exclusive, u.shared]);
    }
    process.stdout.write(table(["LAYER", "KIND", "DEV", "MAPPED", "EXCLUSIVE", "SHARED"], rows));
    say(`\nLayer tree:`);
    process.stdout.write(layerTree(layers));
    say(`\nNext: npx thinstack --root ${path.relative(process.cwd(), root) || "."} --help`);
  } finally {
    await store.close();
  }
}

await demo(path.resolve(process.env.THINSTACK_ROOT ?? ".thinstack"));
