/** Pool commands beside the store-wide ones: configure, events, delta. @module */
import process from "node:process";
import type { Command } from "commander";
import { hasCode, storeError } from "../../common/errors.ts";
import type { ImageStore } from "../../images/mod.ts";
import type { DeltaRange } from "../../pool/delta.ts";
import { type PoolEventName, readEventLog } from "../../pool/events.ts";
import type { PoolSettings } from "../../pool/types.ts";
import { percentArg } from "../args.ts";
import { hasStore, noStore, out, rootOf, withStore } from "../context.ts";
import { fields, json } from "../output.ts";
import { stdoutClosed } from "../stdout.ts";

/** The settings as `configure` shows them, in the order of its options. */
const SETTING_NAMES: [keyof PoolSettings, string, string][] = [
  ["minFreeSpacePercent", "Minimum free space", "minFreeSpace"],
  ["autoextendThreshold", "Autoextend threshold", "autoextendThreshold"],
  ["autoextendPercent", "Autoextend percent", "autoextendPercent"],
  ["lowWaterMarkPercent", "Low water mark", "lowWaterMark"],
  ["metadataLowWaterMarkPercent", "Metadata low water mark", "metadataLowWaterMark"],
];

const EVENT_TYPES: PoolEventName[] = ["lowWater", "autoextend"];

export function poolCommands(cmd: Command): void {
  cmd.command("configure")
    .description("show or change the pool's settings (dm.min_free_space, the LVM profile's autoextend, dm-thin's low water marks)")
    .option("--min-free-space <pct>", "free data space below which new layers fail (dm.min_free_space)", percentArg)
    .option("--autoextend-threshold <pct>", "data use past which the pool grows; 100 disables", percentArg)
    .option("--autoextend-percent <pct>", "how much the pool grows each time", percentArg)
    .option("--low-water-mark <pct>", "free data space under which the pool emits a lowWater event; 0 disables", percentArg)
    .option("--metadata-low-water-mark <pct>", "free metadata space under which the pool emits a lowWater event; 0 disables", percentArg)
    .option("--json", "print JSON")
    .action((o, c: Command) =>
      withStore(c, async (store) => {
        const change: Partial<PoolSettings> = {};
        for (const [key, , opt] of SETTING_NAMES) if (o[opt] !== undefined) change[key] = o[opt];
        if (Object.keys(change).length) await store.pool.configure(change);
        const s = store.pool.status().settings;
        out(o.json ? json(s) : fields(SETTING_NAMES.map(([key, label]) => [label, `${s[key]}%`]), ""));
      }));

  cmd.command("events")
    .description("print the pool's events (low water marks, autoextend) as JSON lines, from its log; with --follow, as they happen in any process")
    .option("-f, --follow", "keep printing new events until interrupted (SIGINT, SIGTERM)")
    .option("--type <type>", `only events of this type (${EVENT_TYPES.join(", ")})`)
    .action(async (o, c: Command) => {
      const root = rootOf(c);
      if (!hasStore(root)) throw noStore(root);
      if (o.type !== undefined && !EVENT_TYPES.includes(o.type)) {
        throw storeError("EINVAL", "events", root, `--type '${o.type}' is not an event type; use one of ${EVENT_TYPES.join(", ")}`);
      }
      // Reads the log only: no lock, so a daemon or a long command may hold the store meanwhile.
      const stop = new AbortController();
      const signals = ["SIGINT", "SIGTERM"] as const;
      const onSignal = () => stop.abort();
      if (o.follow) for (const s of signals) process.on(s, onSignal);
      try {
        for await (const event of readEventLog(root, { follow: o.follow === true, signal: stop.signal })) {
          if (o.type === undefined || event.type === o.type) out(JSON.stringify(event) + "\n");
          if (stdoutClosed()) break;
        }
      } finally {
        if (o.follow) for (const s of signals) process.off(s, onSignal);
      }
    });

  cmd.command("delta")
    .description("the block ranges in which two layers or devices differ, read off their block maps (thin_delta)")
    .argument("<a>", "a layer key or name, or a thin device id")
    .argument("<b>", "a layer key or name, or a thin device id")
    .option("--same", "list the ranges both map alike too (thin_delta's full listing)")
    .option("--json", "print JSON")
    .action((a: string, b: string, o, c: Command) =>
      withStore(c, async (store) => {
        const left = await deviceOf(store, a);
        const right = await deviceOf(store, b);
        const ranges = await store.pool.delta(left.device, right.device, { same: o.same === true });
        const s = store.pool.status();
        if (o.json) out(json({ left, right, blockSize: s.blockSize, ranges }));
        else out(deltaXml(left, right, ranges, s.transactionId, s.blockSize, s.dataBlocks.total));
      }));
}

/** Which device an argument of `delta` names: a layer first, else a device id. */
interface DeltaSide { device: number; layer?: string }

async function deviceOf(store: ImageStore, spec: string): Promise<DeltaSide> {
  try {
    // A layer's stat `dev` is its thin device's id.
    return { device: (await store.fs(spec).stat("/")).dev, layer: spec };
  } catch (e) {
    if (!hasCode(e, "ENOENT")) throw e;
  }
  if (/^\d+$/.test(spec) && store.pool.devices().some((d) => d.id === Number(spec))) return { device: Number(spec) };
  throw storeError("ENOENT", "delta", spec, "no layer has this key or name, and no thin device this id; see 'thinstack ls' and 'thinstack usage'");
}

const xmlAttr = (v: string) => v.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");

/** thin_delta's output: the superblock, then one element per range (blocks of the pool). */
function deltaXml(left: DeltaSide, right: DeltaSide, ranges: DeltaRange[], transaction: number, blockSize: number, dataBlocks: number): string {
  const side = (name: string, s: DeltaSide) => `${name}="${s.device}"${s.layer === undefined ? "" : ` ${name}_layer="${xmlAttr(s.layer)}"`}`;
  const lines = [
    `<superblock uuid="" time="0" transaction="${transaction}" data_block_size="${blockSize / 512}" nr_data_blocks="${dataBlocks}">`,
    `  <diff ${side("left", left)} ${side("right", right)}>`,
    ...ranges.map((r) => `    <${r.kind} begin="${r.begin}" length="${r.length}"/>`),
    "  </diff>",
    "</superblock>",
  ];
  return lines.join("\n") + "\n";
}
