/**
 * Opening an image on disk whatever its format: an OCI layout (directory or tarball) or a
 * `docker save` archive (either manifest format).
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { readDockerArchive } from "./dockerarchive.ts";
import { openImageFiles } from "./imagefiles.ts";
import type { ImageSource } from "./imagesource.ts";
import { type ImageSelector, readOciLayout } from "./ocilayout.ts";

/**
 * Reads the image at `path`. A docker-save manifest.json wins over an OCI index, since
 * Docker 25 writes both and leaves the index empty. Close `source.files` when done.
 *
 * @example
 * ```ts ignore
 * const image = await readImage("busybox.tar");
 * console.log(image.config.rootfs.diff_ids.length, image.layers[0].path);
 * await image.files.close();
 * ```
 */
export async function readImage(path: string, sel: ImageSelector = {}): Promise<ImageSource> {
  const files = await openImageFiles(path);
  try {
    if (await files.has("manifest.json") || await files.has("repositories")) return await readDockerArchive(files, sel);
    if (await files.has("index.json")) return await readOciLayout(files, sel);
    throw storeError("EINVAL", "import", path, "not an OCI image layout nor a docker-save archive (no index.json, manifest.json or repositories)");
  } catch (e) {
    await files.close();
    throw e;
  }
}
