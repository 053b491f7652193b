/**
 * The entry model shared by tar reading, applying, diffing and checking out: what a
 * file-system entry is, as a layer tarball and a layer both describe it.
 *
 * @module
 */

/** The kinds of entries a layer holds. `link` is a tar hard link to an earlier entry. */
export type EntryType = "file" | "dir" | "symlink" | "link" | "char" | "block" | "fifo";

/** Extended attributes by name; values are raw bytes (security.capability is binary). */
export type Xattrs = Map<string, Uint8Array>;

/** The metadata an entry carries besides its type and contents. */
export interface EntryAttrs {
  /** Permission bits with setuid/setgid/sticky (`mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, milliseconds since the epoch (sub-second when PAX carries it). */
  mtimeMs: number;
  /** Extended attributes; absent or empty means none. */
  xattrs?: Xattrs;
}

/** An entry as read from a tar archive. */
export interface TarEntry extends EntryAttrs {
  /** The name as the archive has it (not cleaned). */
  name: string;
  type: EntryType;
  /** Bytes of data (regular files only; 0 for every other type). */
  size: number;
  /** Symlink target, or the hard link's target entry name. */
  linkname?: string;
  devmajor: number;
  devminor: number;
  uname?: string;
  gname?: string;
  /** Offset of the data in the (decompressed) archive: lets an uncompressed archive be indexed. */
  dataOffset: number;
  /** The data; read it or not, the reader skips what is left. */
  body: AsyncIterable<Uint8Array>;
}

/** Everything `lstat` says that applying, diffing and checking out need. */
export interface EntryStat {
  /** `link` never appears here: a hard link is a file (or other entry) with nlink > 1. */
  type: Exclude<EntryType, "link"> | "socket";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** Identity of the inode: equal for hard links. */
  ino: number | bigint | string;
  /** Device number of char/block devices, Linux `makedev` encoding. */
  rdev: number;
  mtimeMs: number;
  /** Change time, when known: any change to an inode moves it, which `walkChanges` relies on. */
  ctimeMs?: number;
}

/** Permission bits of a mode. */
export const PERM_MASK = 0o7777;
