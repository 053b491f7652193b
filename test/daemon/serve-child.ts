/**
 * `thinstack serve` for tests: `serve-child.ts --root DIR --address SOCKET [--scratch-mounts DIR]`.
 * Without --scratch-mounts it is exactly the CLI's serve (no mounter); with it, the
 * TEST-ONLY scratch mounter (scratch-mounter.ts) stands in for the FUSE mount.
 */
import { runServe } from "../../src/cli/serve.ts";
import { scratchMounter } from "./scratch-mounter.ts";

const args = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined" ? (globalThis as unknown as { Deno: { args: string[] } }).Deno.args : process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const root = opt("--root");
const address = opt("--address");
if (!root || !address) {
  process.stderr.write("usage: serve-child.ts --root DIR --address SOCKET [--scratch-mounts DIR]\n");
  process.exit(2);
}
const scratch = opt("--scratch-mounts");
try {
  await runServe(root, address, scratch ? { mounter: () => Promise.resolve(scratchMounter(scratch)) } : {});
} catch (e) {
  process.stderr.write(`serve-child: ${(e as Error)?.stack ?? e}\n`);
  process.exitCode = 1;
}
