/**
 * Platforms (`os/architecture[/variant]`) as the OCI image index lists them: the host's
 * own in Go's spelling, parsing what a user types, and matching an index's entries.
 *
 * @module
 */
import os from "node:os";
import process from "node:process";
import { storeError } from "../common/errors.ts";
import type { Platform } from "../interchange/spec.ts";

/** Node's `process.arch` in Go's GOARCH spelling, which images use. */
const GOARCH: Record<string, string> = {
  x64: "amd64", ia32: "386", arm: "arm", arm64: "arm64", ppc64: "ppc64", s390x: "s390x",
  riscv64: "riscv64", mips: "mips", mipsel: "mipsle", loong64: "loong64",
};

/** The platform an image for this host has: linux (containers are) on this CPU. */
export function hostPlatform(): Platform {
  let architecture = GOARCH[process.arch] ?? process.arch;
  if (architecture === "ppc64" && os.endianness() === "LE") architecture = "ppc64le";
  if (architecture === "arm64") return { os: "linux", architecture, variant: "v8" };
  if (architecture === "arm") {
    const v = (process.config?.variables as { arm_version?: string } | undefined)?.arm_version;
    return { os: "linux", architecture, variant: `v${v ?? "7"}` };
  }
  return { os: "linux", architecture };
}

/**
 * Parses `os/architecture[/variant]`.
 *
 * @example
 * ```ts
 * import { parsePlatform } from "./platform.ts";
 * console.log(parsePlatform("linux/arm64/v8")); // { os: "linux", architecture: "arm64", variant: "v8" }
 * ```
 */
export function parsePlatform(text: string): Platform {
  const parts = text.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[\w.-]+$/.test(p))) {
    throw storeError("EINVAL", "platform", text, "not a platform; use os/architecture[/variant], such as linux/arm64/v8");
  }
  const [osName, architecture, variant] = parts;
  return { os: osName, architecture, ...(variant ? { variant } : {}) };
}

/** `os/architecture[/variant]`. */
export function formatPlatform(p: Platform | undefined): string {
  if (!p) return "unknown platform";
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/** An absent variant of arm64 is v8, as containerd normalises it. */
function variantOf(p: Platform): string | undefined {
  return p.variant || (p.architecture === "arm64" ? "v8" : undefined);
}

/** Whether an image for `have` runs where `want` is asked for (a variant asked for must be the same). */
export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have || have.os !== want.os || have.architecture !== want.architecture) return false;
  return !want.variant || variantOf(have) === variantOf(want);
}
