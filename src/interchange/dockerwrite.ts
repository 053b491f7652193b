/**
 * Writing a `docker save` archive (the manifest.json format `docker load` and skopeo's
 * `docker-archive:` read): uncompressed layers under `<v1 id>/layer.tar` with their
 * `json` and `VERSION`, the config as `<sha256>.json`, `manifest.json` and
 * `repositories`.
 *
 * Each layer streams into the archive as it is made, in one pass. What goes before a
 * layer's data depends on the data: its member header carries its size, and the v1 id
 * that names its directory (and appears in its `json`) is a ChainID, a digest over the
 * layer's tar. Those entries have a length known beforehand (an id is 64 hex digits
 * whatever the layer), so their place is left empty, the data is written after it while
 * its digest and size are counted, and the entries are written into their place last.
 *
 * @module
 */
import fsp from "node:fs/promises";
import { chainIds } from "./chain.ts";
import { type Digest, Hasher, sha256 } from "./digest.ts";
import type { EntryAttrs } from "./entry.ts";
import { HostFile } from "./hostio.ts";
import { type ExportInput, type ExportResult, withDiffIds } from "./ociwrite.ts";
import type { DockerManifestEntry } from "./spec.ts";
import { BLOCK, encodeHeader, padding } from "./tarheader.ts";

/** Fixed member attributes: the archive depends only on the image. */
const FILE: EntryAttrs = { mode: 0o644, uid: 0, gid: 0, mtimeMs: 0 };
const DIR: EntryAttrs = { mode: 0o755, uid: 0, gid: 0, mtimeMs: 0 };

const encoder = new TextEncoder();
const enc = (v: unknown) => encoder.encode(typeof v === "string" ? v : JSON.stringify(v));

/** `name` as a repository tag (`repo:tag`), or undefined when it is not one. */
function repoTag(name: string | undefined): { repo: string; tag: string } | undefined {
  if (!name || name.includes("@") || !/^[a-z0-9][a-z0-9._\-/:]*$/.test(name)) return undefined;
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  return colon > slash ? { repo: name.slice(0, colon), tag: name.slice(colon + 1) } : { repo: name, tag: "latest" };
}

/** Header, data and padding of a small member. */
function member(name: string, data: Uint8Array): Uint8Array[] {
  return [encodeHeader({ ...FILE, name, type: "file", size: data.length }), data, padding(data.length)];
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The members before layer `id`'s data: its directory, `VERSION`, `json`, and the
 * header of `layer.tar` (of `size` bytes). Its length does not depend on `id` or `size`.
 */
function layerHead(id: string, parent: string | undefined, size: number, image: ExportInput): Uint8Array {
  const v1 = { id, ...(parent ? { parent } : {}), created: image.config.created ?? "1970-01-01T00:00:00Z", os: image.config.os ?? "linux" };
  return concat([
    encodeHeader({ ...DIR, name: id, type: "dir" }),
    ...member(`${id}/VERSION`, enc("1.0")),
    ...member(`${id}/json`, enc(v1)),
    encodeHeader({ ...FILE, name: `${id}/layer.tar`, type: "file", size }),
  ]);
}

/** A stand-in for an id not known yet: as long as a real one. */
const UNKNOWN_ID = "0".repeat(64);

/**
 * Writes `image` as a docker-save archive at `file` (replaced if present).
 *
 * @example
 * ```ts ignore
 * await writeDockerArchive("app.tar", { name: "app:1", config, layers: [() => changeset(src)] });
 * ```
 */
export async function writeDockerArchive(file: string, image: ExportInput): Promise<ExportResult> {
  const tmp = `${file}.tmp`;
  const out = await HostFile.create(tmp, 0o644, "w");
  try {
    const layers: ExportResult["layers"] = [];
    const diffIds: Digest[] = [];
    let parent: string | undefined;
    for (const make of image.layers) {
      const headLength = layerHead(UNKNOWN_ID, parent && UNKNOWN_ID, 0, image).length;
      const head = out.skip(headLength);
      const h = new Hasher();
      const start = out.position;
      for await (const chunk of make()) {
        h.update(chunk);
        await out.append(chunk);
      }
      const size = out.position - start;
      await out.append(padding(size));
      const diffId = h.digest();
      diffIds.push(diffId);
      layers.push({ digest: diffId, size, diffId });
      // v1 ids: one per position in the chain, so equal layers at different depths stay apart.
      const id = chainIds(diffIds)[diffIds.length - 1].slice(7);
      const bytes = layerHead(id, parent, size, image);
      if (bytes.length !== headLength) throw new Error(`internal: layer head of ${bytes.length} bytes, ${headLength} planned`);
      await out.writeAt(head, bytes);
      parent = id;
    }
    const configBytes = enc(withDiffIds(image.config, diffIds));
    const configDigest = sha256(configBytes);
    const ids = chainIds(diffIds).map((d) => d.slice(7));
    const tag = repoTag(image.name);
    const manifest: DockerManifestEntry[] = [{
      Config: `${configDigest.slice(7)}.json`,
      RepoTags: tag ? [`${tag.repo}:${tag.tag}`] : null,
      Layers: ids.map((id) => `${id}/layer.tar`),
    }];
    const tail = [
      ...member(`${configDigest.slice(7)}.json`, configBytes),
      ...member("manifest.json", enc(manifest)),
      ...(tag ? member("repositories", enc({ [tag.repo]: { [tag.tag]: ids[ids.length - 1] } })) : []),
      new Uint8Array(2 * BLOCK),
    ];
    await out.append(concat(tail));
    await out.close();
    await fsp.rename(tmp, file);
    return { configDigest, layers };
  } catch (e) {
    await out.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
