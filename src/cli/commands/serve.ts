/** The daemon command: serve. @module */
import path from "node:path";
import type { Command } from "commander";
import { out, rootOf } from "../context.ts";

/** Where `serve` listens unless told otherwise (containerd's own socket is /run/containerd/containerd.sock). */
export const DEFAULT_ADDRESS = "/run/thinstack/thinstack.sock";

/** The containerd config.toml fragment that adds the daemon at `address` as snapshotter `thinstack`. */
export function proxyConfig(address: string): string {
  // A JSON string is a TOML basic string (the same escapes).
  return `[proxy_plugins.thinstack]\n  type = "snapshot"\n  address = ${JSON.stringify(path.resolve(address))}\n`;
}

/** `thinstack serve [--address SOCKET] [--mount-root DIR] [--print-config]`. */
export function serveCommands(cmd: Command): void {
  cmd.command("serve")
    .description("serve the store to containerd (a proxy snapshotter plugin: its Snapshots gRPC API) and to this CLI on a unix socket, until SIGTERM; layers are mounted over FUSE")
    .option("--address <socket>", "the unix socket to listen on", DEFAULT_ADDRESS)
    .option("--mount-root <dir>", "where the FUSE connection serving the layers is mounted (default: DIR/mnt)")
    .option("--unpack-through-mount", "have containerd unpack image layers through the FUSE mount (default: into a staging directory, applied at commit)")
    .option("--print-config", "print the containerd config.toml fragment for this socket and exit")
    .action(async (o: { address: string; mountRoot?: string; printConfig?: boolean; unpackThroughMount?: boolean }, c: Command) => {
      if (o.printConfig) return out(proxyConfig(o.address));
      // Loaded here only: other commands do not pay for gRPC (~0.2 s on Node, ~0.35 s on Deno).
      const { runServe, fuseMounter } = await import("../serve.ts");
      const root = rootOf(c);
      await runServe(root, o.address, { mounter: fuseMounter(o.mountRoot), unpackThroughMount: o.unpackThroughMount });
    });
}
