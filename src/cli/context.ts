/** Where the CLI's store lives and how commands open it. @module */
import path from "node:path";
import type { Command } from "commander";
import { LayerStore } from "../layers/mod.ts";

/** The store directory: --root, else $THINSTACK_ROOT, else ./.thinstack. */
export function rootOf(cmd: Command): string {
  const opts = cmd.optsWithGlobals() as { root?: string };
  return path.resolve(opts.root ?? process.env.THINSTACK_ROOT ?? ".thinstack");
}

/** Opens the store, runs `fn`, and closes it (committing) whatever happens. */
export async function withStore<T>(cmd: Command, fn: (store: LayerStore, root: string) => Promise<T>): Promise<T> {
  const root = rootOf(cmd);
  const store = await LayerStore.open(root).catch((e) => {
    if ((e as { code?: string }).code === "ENOENT") {
      throw Object.assign(new Error(`no store at '${root}'; create one with 'thinstack init' (or pass --root)`), { code: "ENOENT" });
    }
    throw e;
  });
  try {
    return await fn(store, root);
  } finally {
    await store.close();
  }
}

/** Writes to stdout. */
export function out(text: string): void {
  process.stdout.write(text);
}
