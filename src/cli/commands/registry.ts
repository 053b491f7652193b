/**
 * Registry commands: `pull REF` (an image from a registry into the store) and `push NAME
 * REF` (an image of the store to a registry), with a progress bar per layer on a terminal.
 *
 * @module
 */
import { type Command, InvalidArgumentError } from "commander";
import type { Platform } from "../../interchange/spec.ts";
import { parsePlatform } from "../../registry/platform.ts";
import { out, withStore } from "../context.ts";
import { transferBars } from "../multiprogress.ts";

/** A commander parser for `--platform`: `os/architecture[/variant]`. */
function platformArg(value: string): Platform {
  try {
    return parsePlatform(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

interface RegistryFlags {
  plainHttp?: boolean;
  creds?: string;
}

/** Adds `pull` and `push` to `cmd`. */
export function registryCommands(cmd: Command): void {
  cmd.command("pull")
    .description("pull an image from a registry into the store (layers the store has are not downloaded)")
    .argument("<ref>", "host[:port]/name[:tag|@digest]; a bare name is Docker Hub's")
    .option("--platform <os/arch[/variant]>", "which platform of a multi-platform image (default: this host's)", platformArg)
    .option("--name <name>", "name of the image in the store (default: the reference)")
    .option("--plain-http", "talk plain HTTP to the registry (a registry on loopback)")
    .option("--creds <user:pass>", "credentials (default: those ~/.docker/config.json holds for the registry)")
    .option("--no-keep-blobs", "do not keep the layers as the registry sent them (kept, a push elsewhere sends those bytes and keeps the digests)")
    .action((ref: string, o: RegistryFlags & { platform?: Platform; name?: string; keepBlobs: boolean }, c: Command) =>
      withStore(c, async (store) => {
        const bars = transferBars("pull");
        const r = await store.pull(ref, {
          platform: o.platform, name: o.name, plainHttp: o.plainHttp, creds: o.creds, keepBlobs: o.keepBlobs, onProgress: (e) => bars.update(e),
        })
          .finally(() => bars.stop());
        out(`${r.name}: ${count(r.layers.length, "layer")} (${r.downloaded} downloaded, ${r.skipped} already in the store), ` +
          `${r.platform.os}/${r.platform.architecture}${r.platform.variant ? `/${r.platform.variant}` : ""}, digest ${r.manifestDigest}, top ${r.layers.at(-1) ?? "(none)"}\n`);
      }));

  cmd.command("push")
    .description("push an image of the store to a registry (layers it has or can mount are not sent)")
    .argument("<name>", "an image of the store")
    .argument("<ref>", "host[:port]/name:tag")
    .option("--plain-http", "talk plain HTTP to the registry (a registry on loopback)")
    .option("--creds <user:pass>", "credentials (default: those ~/.docker/config.json holds for the registry)")
    .option("--no-keep-blobs", "do not keep the gzipped layers this push makes (kept, the next push sends them without gzipping again)")
    .action((name: string, ref: string, o: RegistryFlags & { keepBlobs: boolean }, c: Command) =>
      withStore(c, async (store) => {
        const bars = transferBars("push");
        const r = await store.push(name, ref, { plainHttp: o.plainHttp, creds: o.creds, keepBlobs: o.keepBlobs, onProgress: (e) => bars.update(e) })
          .finally(() => bars.stop());
        const how = (h: string) => r.layers.filter((l) => l.how === h).length;
        out(`${ref}: digest ${r.manifestDigest} size ${r.size} (${count(r.layers.length, "layer")}: ${how("uploaded")} uploaded, ` +
          `${how("kept")} sent as kept, ${how("mounted")} mounted, ${how("exists")} already there)\n`);
      }));
}
