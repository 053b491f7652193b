/**
 * Writing a `docker save` archive (the manifest.json format `docker load` and skopeo's
 * `docker-archive:` read): uncompressed layers under `<v1 id>/layer.tar` with their
 * `json` and `VERSION`, the config as `<sha256>.json`, `manifest.json` and
 * `repositories`. Layers are spooled to a temporary directory first, since tar needs
 * each member's size before its data.
 *
 * @module
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import nodePath from "node:path";
import { chainIds } from "./chain.ts";
import { Hasher, sha256 } from "./digest.ts";
import type { EntryAttrs } from "./entry.ts";
import { writeChunks } from "./hostio.ts";
import { type ExportInput, type ExportResult, withDiffIds } from "./ociwrite.ts";
import type { DockerManifestEntry } from "./spec.ts";
import { tap } from "./tap.ts";
import { type TarWriter, writeTar } from "./tarwrite.ts";

/** Fixed member attributes: the archive depends only on the image. */
const FILE: EntryAttrs = { mode: 0o644, uid: 0, gid: 0, mtimeMs: 0 };
const DIR: EntryAttrs = { mode: 0o755, uid: 0, gid: 0, mtimeMs: 0 };

/** `name` as a repository tag (`repo:tag`), or undefined when it is not one. */
function repoTag(name: string | undefined): { repo: string; tag: string } | undefined {
  if (!name || name.includes("@") || !/^[a-z0-9][a-z0-9._\-/:]*$/.test(name)) return undefined;
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  return colon > slash ? { repo: name.slice(0, colon), tag: name.slice(colon + 1) } : { repo: name, tag: "latest" };
}

/**
 * Writes `image` as a docker-save archive at `file` (replaced if present).
 *
 * @example
 * ```ts ignore
 * await writeDockerArchive("app.tar", { name: "app:1", config, layers: [() => changeset(src)] });
 * ```
 */
export async function writeDockerArchive(file: string, image: ExportInput): Promise<ExportResult> {
  const spool = await fsp.mkdtemp(nodePath.join(nodePath.dirname(nodePath.resolve(file)), ".thinstack-export-"));
  const tmp = `${file}.tmp`;
  try {
    const layers: ExportResult["layers"] = [];
    const sizes: number[] = [];
    for (const [i, make] of image.layers.entries()) {
      const h = new Hasher();
      sizes.push(await writeChunks(nodePath.join(spool, `${i}.tar`), tap(make(), (c) => h.update(c))));
      const diffId = h.digest();
      layers.push({ digest: diffId, size: sizes[i], diffId });
    }
    const diffIds = layers.map((l) => l.diffId);
    const configBytes = new TextEncoder().encode(JSON.stringify(withDiffIds(image.config, diffIds)));
    const configDigest = sha256(configBytes);
    // v1 ids: one per position in the chain, so equal layers at different depths stay apart.
    const ids = chainIds(diffIds).map((d) => d.slice(7));
    const tag = repoTag(image.name);
    const manifest: DockerManifestEntry[] = [{
      Config: `${configDigest.slice(7)}.json`,
      RepoTags: tag ? [`${tag.repo}:${tag.tag}`] : null,
      Layers: ids.map((id) => `${id}/layer.tar`),
    }];
    const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
    const small = async (w: TarWriter, name: string, data: Uint8Array) =>
      await w.add({ ...FILE, name, type: "file", size: data.length }, [data]);
    await writeChunks(tmp, writeTar(async (w) => {
      for (const [i, id] of ids.entries()) {
        await w.add({ ...DIR, name: id, type: "dir" });
        await small(w, `${id}/VERSION`, enc("1.0"));
        const v1 = { id, ...(i ? { parent: ids[i - 1] } : {}), created: image.config.created ?? "1970-01-01T00:00:00Z", os: image.config.os ?? "linux" };
        await small(w, `${id}/json`, enc(v1));
        await w.add({ ...FILE, name: `${id}/layer.tar`, type: "file", size: sizes[i] }, fs.createReadStream(nodePath.join(spool, `${i}.tar`)) as AsyncIterable<Uint8Array>);
      }
      await small(w, `${configDigest.slice(7)}.json`, configBytes);
      await small(w, "manifest.json", enc(manifest));
      if (tag) await small(w, "repositories", enc({ [tag.repo]: { [tag.tag]: ids[ids.length - 1] } }));
    }), 0o644, "w");
    await fsp.rename(tmp, file);
    return { configDigest, layers };
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  } finally {
    await fsp.rm(spool, { recursive: true, force: true });
  }
}
