/**
 * The one bound on what an untrusted archive can make thinstack hold in memory. Image
 * metadata (OCI indexes, manifests and configs; docker-save `manifest.json`,
 * `repositories` and the old format's `<id>/json`) is read whole to be parsed, and tar
 * extended headers (PAX, GNU long names) are buffered whole by the parser: each is
 * refused above this size, before it is read, and so is a run of global PAX headers
 * (which apply to every later entry, so they are kept) whose sizes add up to more.
 * Layer data is always streamed and is not bounded here.
 *
 * 4 MiB is what registries accept as a manifest (distribution's limit) and tar-stream's
 * own cap on one extended header; real images' metadata is kilobytes.
 *
 * @module
 */
import type { FileHandle } from "node:fs/promises";
import { type StoreError, storeError } from "../common/errors.ts";

/** Bytes of one piece of metadata (or of all global PAX headers together) read at most: 4 MiB. */
export const METADATA_LIMIT = 4 * 1024 * 1024;

function mib(n: number): string {
  return `${Number((n / 2 ** 20).toFixed(2))} MiB`;
}

/**
 * The error for `what` (the archive and entry, as `image.tar:manifest.json`), which
 * `subject` says what it is ("this PAX extended header"), being `size` bytes (or more,
 * with `atLeast`): over {@linkcode METADATA_LIMIT}.
 */
export function tooBig(syscall: string, what: string, subject: string, size: number, atLeast = false): StoreError {
  return storeError(
    "EFBIG",
    syscall,
    what,
    `${subject}: ${atLeast ? "more than " : ""}${size} bytes (${mib(size)}), over the ${mib(METADATA_LIMIT)} (${METADATA_LIMIT}-byte) limit on metadata read into memory; refused (real images' metadata is kilobytes: the archive is damaged or hostile)`,
  );
}

/**
 * Metadata of one kind that an import reads several of (nested indexes, the old
 * docker-save format's layer JSON): together bounded by {@linkcode METADATA_LIMIT},
 * so that many small documents, or one referred to many times, cannot add up.
 */
export class MetadataBudget {
  #used = 0;

  /** `subject` names them all in the error, as "the image indexes read so far". */
  constructor(readonly subject: string) {}

  /** Counts `bytes` more, read from `what`; EFBIG once the total is over the limit. */
  spend(bytes: number, what: string): void {
    this.#used += bytes;
    if (this.#used > METADATA_LIMIT) throw tooBig("import", what, this.subject, this.#used);
  }
}

/**
 * Reads all of the open regular file `fh`, which stat said has `size` bytes, refusing it
 * over the limit without reading; a file that grows past the limit meanwhile is refused
 * as it is read.
 */
export async function readBounded(fh: FileHandle, size: number, syscall: string, what: string, subject: string): Promise<Uint8Array> {
  if (size > METADATA_LIMIT) throw tooBig(syscall, what, subject, size);
  // One byte more than stat said: the read that fills it shows the file grew.
  let buf = new Uint8Array(size + 1);
  let at = 0;
  for (;;) {
    if (at === buf.length) {
      if (at > METADATA_LIMIT) throw tooBig(syscall, what, subject, METADATA_LIMIT, true);
      const bigger = new Uint8Array(Math.min(buf.length * 2, METADATA_LIMIT + 1));
      bigger.set(buf);
      buf = bigger;
    }
    const { bytesRead } = await fh.read(buf, at, buf.length - at, at);
    if (bytesRead === 0) return buf.slice(0, at);
    at += bytesRead;
  }
}
