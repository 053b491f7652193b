/** Images made with the layer store's own API, for the push tests. */
import type { ImageStore } from "../../src/images/mod.ts";
import type { ImageConfig } from "../../src/interchange/spec.ts";

/** `n` bytes that gzip cannot shrink much, from `seed`. */
export function noise(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** A base layer named `base`: directories with modes and owners, a big file, hard and symbolic links, an xattr. */
export async function baseLayer(store: ImageStore, base: string, big = 1_500_000): Promise<void> {
  await store.prepare(`${base}-x`);
  const fs = store.fs(`${base}-x`);
  await fs.mkdir("/etc", { recursive: true });
  await fs.writeFile("/etc/os-release", "ID=thin\n");
  await fs.mkdir("/data/deep/er", { recursive: true });
  await fs.writeFile("/data/big.bin", noise(big, 7));
  await fs.writeFile("/data/deep/er/small", "small\n");
  await fs.link("/data/big.bin", "/data/big.link");
  await fs.symlink("../etc/os-release", "/data/rel");
  await fs.chmod("/data/deep", 0o700);
  await fs.chown("/data/deep/er", 1000, 1000);
  await fs.mkdir("/tmp");
  await fs.chmod("/tmp", 0o1777);
  await fs.setxattr("/etc/os-release", "user.note", new TextEncoder().encode("kept"));
  for (const p of ["/etc/os-release", "/data/big.bin", "/data/deep/er/small", "/data", "/data/deep", "/data/deep/er", "/etc", "/tmp"]) {
    await fs.utimes(p, 1_700_000_000, 1_700_000_000);
  }
  await store.commit(base, `${base}-x`);
}

/** A layer `name` on `parent` that deletes, replaces and adds. */
export async function appLayer(store: ImageStore, name: string, parent: string, seed = 3): Promise<void> {
  await store.prepare(`${name}-x`, parent);
  const fs = store.fs(`${name}-x`);
  await fs.rm("/data/deep", { recursive: true, force: true }); // force: an app layer may go on another
  await fs.writeFile("/etc/os-release", "ID=thin\nVERSION=2\n");
  await fs.writeFile("/app.bin", noise(700_000, seed));
  await fs.mkdir("/opt/app", { recursive: true });
  await fs.writeFile("/opt/app/conf", `seed=${seed}\n`);
  for (const p of ["/etc/os-release", "/app.bin", "/opt/app/conf", "/opt/app", "/opt", "/data", "/etc"]) await fs.utimes(p, 1_700_000_100, 1_700_000_100);
  await store.commit(name, `${name}-x`);
}

/** A fixed config (no times that move), for `platform`. */
export function config(arch = "amd64", variant?: string): Partial<ImageConfig> {
  return { architecture: arch, os: "linux", ...(variant ? { variant } : {}), created: "2026-01-01T00:00:00Z", config: { Cmd: ["/app.bin"] } };
}
