/**
 * What the store knows about registry blobs: the image records say, per layer, which
 * blob holds it and which repositories hold that blob (pull records where it came from,
 * push where it went). A push asks here first, so it can skip a layer the registry has,
 * mount one another repository of the registry holds, and upload only the rest.
 *
 * @module
 */
import type { ImageRecord, LayerBlobRecord } from "../interchange/host.ts";
import type { ImageManifest } from "../interchange/spec.ts";

/**
 * Every blob the records know for committed layer `layer` (images share layers, so any
 * image holding it may know one), one per digest with their repositories merged.
 */
export function knownBlobs(records: readonly ImageRecord[], layer: string): LayerBlobRecord[] {
  const byDigest = new Map<string, LayerBlobRecord>();
  for (const r of records) {
    r.layers.forEach((name, i) => {
      if (name !== layer) return;
      for (const b of r.blobs?.[i] ?? []) {
        const seen = byDigest.get(b.digest);
        if (seen) seen.repositories = [...new Set([...seen.repositories, ...b.repositories])];
        else byDigest.set(b.digest, { ...b, repositories: [...b.repositories] });
      }
    });
  }
  return [...byDigest.values()];
}

/** The blobs a pulled manifest gives its layers: each held by `repository`. */
export function manifestBlobs(manifest: ImageManifest, diffIds: readonly string[], repository: string): LayerBlobRecord[][] {
  return manifest.layers.map((d, i) => [{ digest: d.digest, size: d.size, mediaType: d.mediaType, diffId: diffIds[i], repositories: [repository] }]);
}

/** `blob` with `repository` among its holders. */
export function heldBy(blob: LayerBlobRecord, repository: string): LayerBlobRecord {
  return { ...blob, repositories: [...new Set([...blob.repositories, repository])] };
}
