/**
 * ChainIDs (OCI image-spec config.md): the identity of a layer together with every layer
 * below it, which names committed layers so that images sharing a base share its layers.
 *
 * @module
 */
import { parseDigest, sha256, type Digest } from "./digest.ts";

/**
 * The ChainIDs of a stack of layers given their DiffIDs, bottom first:
 * `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
 *
 * @example
 * ```ts
 * import { chainIds } from "./chain.ts";
 * const d = "sha256:" + "a".repeat(64);
 * console.log(chainIds([d])[0] === d); // true
 * ```
 */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const [i, diffId] of diffIds.entries()) {
    parseDigest(diffId, `diff_ids[${i}]`);
    out.push(i === 0 ? diffId : sha256(`${out[i - 1]} ${diffId}`));
  }
  return out;
}
