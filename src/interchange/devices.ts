/**
 * Device numbers in Linux's encoding (glibc `makedev`), which `stat().rdev` reports and
 * `mknod` takes; tar stores major and minor apart.
 *
 * @module
 */

/** Combines major and minor as Linux does. */
export function makedev(major: number, minor: number): number {
  // Low 8 bits of minor, 12 bits of major, then the rest of minor: fits 2^53 for real numbers.
  return (minor & 0xff) + (major & 0xfff) * 0x100 + Math.floor(minor / 0x100) * 0x100000 + Math.floor(major / 0x1000) * 0x100000000;
}

/** The major number of `rdev`. */
export function major(rdev: number): number {
  return (Math.floor(rdev / 0x100) & 0xfff) + Math.floor(rdev / 0x100000000) * 0x1000;
}

/** The minor number of `rdev`. */
export function minor(rdev: number): number {
  return (rdev & 0xff) + (Math.floor(rdev / 0x100000) & 0xfff) * 0x100;
}
