/**
 * Mount commands: `mount KEY DIR` serves a layer through FUSE in the foreground until
 * SIGINT or SIGTERM (or an unmount from elsewhere), then unmounts and closes the store;
 * `umount DIR` unmounts it (clearing it instead when its server died) and waits for the
 * server to let go of the store.
 *
 * @module
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import { storeError } from "../../common/errors.ts";
import { LOCK_FILE } from "../../common/pidlock.ts";
import { clearMount, FS_TYPE, isDead, kernelUnmount, mountTable } from "../../mount/kernel.ts";
import { note, out, withStore } from "../context.ts";

/** The pool directory a thinstack mount's source names (`thinstack:DIR`). */
function storeOf(source: string): string | undefined {
  return source.startsWith("thinstack:") ? source.slice("thinstack:".length) : undefined;
}

/** Waits (up to `ms`) until no live process holds the lock of the store in `dir`. */
async function waitForRelease(dir: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await fs.readFile(path.join(dir, LOCK_FILE), "utf8").catch(() => undefined);
    const pid = Number(text?.trim());
    let alive = false;
    if (Number.isSafeInteger(pid) && pid > 0) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch {
        alive = false;
      }
    }
    if (!alive) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Registers the mount commands. */
export function mountCommands(cmd: Command): void {
  cmd.command("mount")
    .description("mount layer KEY at directory DIR (FUSE, needs root) and serve it until SIGINT/SIGTERM or 'thinstack umount DIR'")
    .argument("<key>").argument("<dir>")
    .option("--read-only", "refuse changes even to an active layer")
    .option("--no-writeback", "write through: every write() is a request (the default buffers writes in the kernel's cache)")
    .action((key: string, dir: string, o: { readOnly?: boolean; writeback: boolean }, c: Command) =>
      withStore(c, async (store) => {
        const m = await store.mount(key, dir, { readOnly: o.readOnly, writeback: o.writeback });
        out(`mounted ${key} at ${m.path}${m.readOnly ? " (read-only)" : ""}\n`);
        let stop!: (signal: string | undefined) => void;
        const stopped = new Promise<string | undefined>((r) => (stop = r));
        const onSignal = (signal: string) => () => stop(signal);
        const handlers = { SIGINT: onSignal("SIGINT"), SIGTERM: onSignal("SIGTERM") };
        for (const [sig, h] of Object.entries(handlers)) process.on(sig, h);
        void m.closed.then(() => stop(undefined));
        const signal = await stopped;
        for (const [sig, h] of Object.entries(handlers)) process.off(sig, h);
        if (signal) {
          try {
            await m.unmount();
          } catch (e) {
            if ((e as { code?: string }).code !== "EBUSY") throw e;
            note(`${m.path} is in use: unmounted lazily; serving until its last user goes`);
            await m.unmount({ lazy: true });
            await m.closed;
          }
        }
        out(`unmounted ${m.path}\n`);
      }));

  cmd.command("umount")
    .description("unmount a layer mounted by 'thinstack mount' (a mount whose server died is cleared)")
    .argument("<dir>")
    .option("-l, --lazy", "detach now, finish when the last user goes")
    .action(async (dir: string, o: { lazy?: boolean }) => {
      const abs = path.resolve(dir);
      const real = path.join(await fs.realpath(path.dirname(abs)), path.basename(abs));
      const m = (await mountTable()).filter((e) => e.mountPoint === real).pop();
      if (!m || m.fsType !== FS_TYPE) throw storeError("EINVAL", "umount", real, m ? `it is a ${m.fsType} mount, not thinstack's` : "nothing is mounted there");
      if (await isDead(real)) {
        await clearMount(m);
        out(`cleared ${real} (its server had died)\n`);
        return;
      }
      await kernelUnmount(real, o.lazy);
      const store = storeOf(m.source);
      if (store && !o.lazy && !(await waitForRelease(store, 30_000))) note(`the server of ${real} still holds the store at '${store}'`);
      out(`unmounted ${real}\n`);
    });
}
