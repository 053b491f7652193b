/**
 * `npm run fixtures`: makes fixtures/demo-image/, the OCI image layout that `npm start`
 * imports, with the project's own code. It builds the image fixtures/demo-image.json
 * describes in a temporary ImageStore (prepare, fs, commit per layer), records it with
 * `createImage` and writes it with `exportImage`. Every time in the image (file mtimes,
 * the config's `created`) is the spec's `created`, so the same code gives the same
 * layout, byte for byte, under Node. (Deno's node:zlib deflates the layers into other,
 * equally valid bytes: the layer tars, DiffIDs and config are the same, the blob digests
 * not. Regenerate the committed fixture under Node.)
 *
 *   npx tsx scripts/make-fixtures.ts [OUT_DIR]      (default fixtures/demo-image)
 *   deno run -A scripts/make-fixtures.ts [OUT_DIR]
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { MiB } from "../src/common/units.ts";
import { ImageStore } from "../src/images/mod.ts";

/** One layer of the spec: what it adds, changes or deletes over the one below. */
interface SpecLayer {
  name: string;
  dirs?: string[];
  files?: Record<string, string>;
  /** Files of this many bytes, a byte per 4 KiB page set (each page differs, the rest is zeros). */
  large?: Record<string, number>;
  symlinks?: Record<string, string>;
  modes?: Record<string, number>;
  delete?: string[];
}

/** fixtures/demo-image.json. */
interface Spec {
  name: string;
  /** The image's one time: the config's `created` and every entry's mtime. */
  created: string;
  layers: SpecLayer[];
}

const root = fileURLToPath(new URL("..", import.meta.url));
/** The spec read by default. */
export const SPEC = path.join(root, "fixtures", "demo-image.json");
/** Where the layout goes by default. */
export const OUT = path.join(root, "fixtures", "demo-image");

/** The path and its ancestors, without `/`. */
function withAncestors(p: string): string[] {
  const out: string[] = [];
  for (let q = p; q !== "/" && q !== "."; q = path.posix.dirname(q)) out.push(q);
  return out;
}

/** Builds the layers of `spec` in `store`; returns the top layer's name. */
async function build(store: ImageStore, spec: Spec): Promise<string> {
  const time = new Date(spec.created);
  if (Number.isNaN(time.getTime())) throw new Error(`${SPEC}: 'created' is not a date: ${spec.created}`);
  let parent: string | undefined;
  for (const layer of spec.layers) {
    const key = `${layer.name}-build`;
    await store.prepare(key, parent);
    const lfs = store.fs(key);
    // Everything this layer creates or changes, and the directories above it, gets `time`.
    const touched = new Set<string>();
    const touch = (p: string) => withAncestors(p).forEach((q) => touched.add(q));
    // Modes as a umask of 022 makes them (the layer fs applies none).
    const mkParent = (p: string) => lfs.mkdir(path.posix.dirname(p), { recursive: true, mode: 0o755 });
    for (const d of layer.dirs ?? []) {
      await lfs.mkdir(d, { recursive: true, mode: 0o755 });
      touch(d);
    }
    for (const [p, text] of Object.entries(layer.files ?? {})) {
      await mkParent(p);
      await lfs.writeFile(p, text, { mode: 0o644 });
      touch(p);
    }
    for (const [p, size] of Object.entries(layer.large ?? {})) {
      await mkParent(p);
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i += 4096) data[i] = (i / 4096) & 0xff;
      await lfs.writeFile(p, data, { mode: 0o644 });
      touch(p);
    }
    for (const [p, target] of Object.entries(layer.symlinks ?? {})) {
      await mkParent(p);
      await lfs.symlink(target, p);
      touch(p);
    }
    for (const [p, mode] of Object.entries(layer.modes ?? {})) {
      await lfs.chmod(p, mode);
      touch(p);
    }
    for (const p of layer.delete ?? []) {
      await lfs.rm(p, { recursive: true });
      touch(path.posix.dirname(p));
    }
    for (const p of touched) await lfs.lutimes(p, time, time);
    await store.commit(layer.name, key);
    parent = layer.name;
  }
  if (!parent) throw new Error(`${SPEC}: the image has no layers`);
  return parent;
}

/**
 * Writes the image of spec file `specPath` as an OCI layout at `out` (replacing what is
 * there), made in a temporary store; returns the image's name.
 */
export async function makeFixture(out = OUT, specPath = SPEC): Promise<string> {
  const spec = JSON.parse(await fs.readFile(specPath, "utf8")) as Spec;
  const work = await fs.mkdtemp(path.join(os.tmpdir(), "thinstack-fixtures-"));
  // Written beside `out` (one file system), then renamed over it.
  const next = `${out}.tmp-${randomBytes(4).toString("hex")}`;
  try {
    const store = await ImageStore.open(path.join(work, "store"), { create: true, dataSize: 256 * MiB, baseSize: 64 * MiB });
    try {
      const top = await build(store, spec);
      await store.createImage(spec.name, top, {
        config: {
          architecture: "amd64",
          os: "linux",
          created: spec.created,
          history: spec.layers.map((l) => ({ created: spec.created, created_by: `thinstack scripts/make-fixtures.ts: layer ${l.name}` })),
        },
      });
      await store.exportImage(spec.name, next, { format: "oci", ref: spec.name });
    } finally {
      await store.close();
    }
    await fs.rm(out, { recursive: true, force: true });
    await fs.rename(next, out);
    return spec.name;
  } finally {
    await fs.rm(next, { recursive: true, force: true });
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** Total bytes of the files under `dir`. */
async function du(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? await du(p) : (await fs.stat(p)).size;
  }
  return n;
}

// Deno sets import.meta.main; under Node (tsx) the script is argv[1].
if ((import.meta as { main?: boolean }).main ?? process.argv[1]?.endsWith("make-fixtures.ts")) {
  const out = path.resolve(process.argv[2] ?? OUT);
  const name = await makeFixture(out);
  process.stdout.write(`wrote ${name} to ${path.relative(process.cwd(), out) || "."} (${await du(out)} bytes)\n`);
}
