/**
 * Image commands: `apply` (a layer tarball onto an active layer), `diff` (a layer's
 * changeset tar), `import`, `images`, `rmi`, `export` (OCI layout or docker-save tar) and
 * `checkout` (a layer's merged tree as a host rootfs). Progress bars go to stderr, and
 * only when it is a terminal, so stdout carries nothing but the command's output.
 *
 * @module
 */
import fs from "node:fs/promises";
import { type Command, InvalidArgumentError } from "commander";
import { formatIec } from "../../common/units.ts";
import { writeChunks } from "../../interchange/hostio.ts";
import { byteChunks } from "../../interchange/source.ts";
import type { Platform } from "../../interchange/spec.ts";
import { tap } from "../../interchange/tap.ts";
import { note, out, withStore } from "../context.ts";
import { json, table } from "../output.ts";
import { type Progress, progress, progressHook } from "../progress.ts";
import { pipeOut } from "../stdout.ts";

const FORMATS = ["oci", "docker"] as const;
type Format = typeof FORMATS[number];

/** A commander parser for `export --format`. */
function formatArg(value: string): Format {
  if (!(FORMATS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`EINVAL: '${value}' is not an export format; use ${FORMATS.join(" or ")}`);
  }
  return value as Format;
}

/** A commander parser for `import --platform`: `os/architecture[/variant]`, as docker's. */
function platformArg(value: string): Platform {
  const parts = value.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[\w.-]+$/.test(p))) {
    throw new InvalidArgumentError(`EINVAL: '${value}' is not a platform; use os/architecture[/variant], such as linux/arm64/v8`);
  }
  const [os, architecture, variant] = parts;
  return { os, architecture, ...(variant ? { variant } : {}) };
}

const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Runs `fn` with a progress bar that is stopped (its line ended) before anything else prints. */
async function withProgress<T>(label: string, total: number, fn: (bar: Progress) => Promise<T>): Promise<T> {
  const bar = progress(label, total);
  try {
    return await fn(bar);
  } finally {
    bar.stop();
  }
}

/** Adds the image commands to `cmd`. */
export function imageCommands(cmd: Command): void {
  cmd.command("apply")
    .description("apply an OCI layer tarball (plain or gzip) to an active layer, all or nothing")
    .argument("<key>", "an active layer")
    .argument("<tarball>", "a layer tar or tar.gz, or - for stdin")
    .action((key: string, tarball: string, _o, c: Command) =>
      withStore(c, async (store) => {
        // The bar counts the archive's bytes as read (compressed, when it is gzip).
        const size = tarball === "-" ? 0 : (await fs.stat(tarball)).size;
        const r = await withProgress("apply", size, (bar) => {
          const source = tap(byteChunks(tarball === "-" ? process.stdin : tarball), (chunk) => bar.advance(chunk.byteLength));
          return store.apply(key, source, { name: tarball === "-" ? "<stdin>" : tarball });
        });
        out(`${key}: ${count(r.entries, "entry", "entries")} applied (${count(r.whiteouts, "whiteout")}, ${formatIec(r.bytes)} of file data)\n`);
      }));

  cmd.command("diff")
    .description("write a layer's changes against its parent as an OCI changeset tar (to stdout unless -o)")
    .argument("<key>")
    .option("-o, --output <file>", "write the tar to FILE instead of stdout")
    .action((key: string, o: { output?: string }, c: Command) =>
      withStore(c, async (store) => {
        const tar = store.diff(key); // an unknown layer fails here, before FILE is made
        if (!o.output) return await pipeOut(tar);
        try {
          await writeChunks(o.output, tar, 0o644, "w");
        } catch (e) {
          await fs.rm(o.output, { force: true }); // no half-written tar left behind
          throw e;
        }
      }));

  cmd.command("import")
    .description("import an image: an OCI layout (directory or tar) or a docker-save tar")
    .argument("<path>")
    .option("--name <name>", "name of the image in the store (default: the archive's name for it, else its config digest)")
    .option("--ref <ref>", "which image of the archive: an OCI ref name or a docker RepoTag (default: the only one)")
    .option("--platform <os/arch[/variant]>", "which platform of a multi-platform index (default linux/amd64)", platformArg)
    .action((p: string, o: { name?: string; ref?: string; platform?: Platform }, c: Command) =>
      withStore(c, async (store) => {
        const { name, layers } = await withProgress("import", 0, (bar) =>
          store.importImage(p, { name: o.name, ref: o.ref, platform: o.platform, onProgress: progressHook(bar) }));
        out(`${name}: ${count(layers.length, "layer")}, top ${layers[layers.length - 1] ?? "(none)"}\n`);
      }));

  cmd.command("images")
    .description("list the images in the store")
    .option("--json", "the image records as JSON (with their configs)")
    .action((o: { json?: boolean }, c: Command) =>
      withStore(c, async (store) => {
        const images = await store.images();
        if (o.json) return out(json(images));
        // TOP in full: it is what a container is prepared on.
        out(table(["NAME", "IMAGE ID", "LAYERS", "TOP"], images.map((i) => [i.name, i.configDigest.replace(/^sha256:/, "").slice(0, 12), i.layers.length, i.top || "-"])));
      }));

  cmd.command("rmi")
    .description("forget an image (its layers stay until removed with rm)")
    .argument("<name>")
    .action((name: string, _o, c: Command) =>
      withStore(c, async (store) => {
        await store.removeImage(name);
        out(`${name}\n`);
      }));

  cmd.command("export")
    .description("write an image as an OCI layout directory (gzipped layers) or a docker-save tar")
    .argument("<name>").argument("<path>")
    .option("--format <format>", "oci or docker", formatArg, "oci" as Format)
    .option("--ref <ref>", "ref name (oci) or tag (docker) to write (default: the image's name)")
    .action((name: string, p: string, o: { format: Format; ref?: string }, c: Command) =>
      withStore(c, async (store) => {
        const r = await withProgress("export", 0, (bar) =>
          store.exportImage(name, p, { format: o.format, ref: o.ref, onProgress: progressHook(bar) }));
        out(`${name}: ${count(r.layers.length, "layer")} written to ${p} (${o.format}), config ${r.configDigest}\n`);
      }));

  cmd.command("checkout")
    .description("write a layer's merged tree to a new or empty host directory (a rootfs)")
    .argument("<key>").argument("<dir>")
    .option("--devices", "make the block and character device nodes the layer holds (as root)")
    .option("--keep-setid", "keep setuid and setgid bits of files (dropped by default)")
    .action((key: string, dir: string, o: { devices?: boolean; keepSetid?: boolean }, c: Command) =>
      withStore(c, async (store) => {
        const r = await withProgress("checkout", 0, (bar) =>
          store.checkout(key, dir, { devices: o.devices ?? false, keepSetid: o.keepSetid ?? false, onProgress: progressHook(bar) }));
        // What was not made (devices, setuid bits, xattrs): news, not output.
        for (const line of r.skipped) note(line);
        out(`${key}: ${count(r.entries, "entry", "entries")} written to ${dir}\n`);
      }));
}
