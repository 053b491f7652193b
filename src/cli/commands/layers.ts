/** Layer lifecycle commands: prepare, view, commit, rm, ls, inspect, usage. @module */
import type { Command } from "commander";
import { formatIec } from "../../common/units.ts";
import type { LayerInfo } from "../../layers/mod.ts";
import { type LayerAccess, withLayers } from "../access.ts";
import { out } from "../context.ts";
import { errorLine, Exit, json, table } from "../output.ts";
import { cliOutput } from "../stdout.ts";

/** The layer tree as indented lines, children under their parent, by name. */
export function layerTree(layers: LayerInfo[]): string {
  const children = new Map<string, LayerInfo[]>();
  for (const l of layers) {
    const p = l.parent || "";
    if (!children.has(p)) children.set(p, []);
    children.get(p)!.push(l);
  }
  const lines: string[] = [];
  const walk = (parent: string, prefix: string) => {
    const kids = (children.get(parent) ?? []).sort((a, b) => a.name.localeCompare(b.name));
    kids.forEach((l, i) => {
      const last = i === kids.length - 1;
      lines.push(`${prefix}${last ? "└── " : "├── "}${l.name} (${l.kind})`);
      walk(l.name, prefix + (last ? "    " : "│   "));
    });
  };
  walk("", "");
  return lines.join("\n") + (lines.length ? "\n" : "");
}

async function usageRows(store: LayerAccess, keys: string[]) {
  const rows = [];
  for (const key of keys) {
    const u = await store.usage(key);
    const blocks = await store.blockUsage(key);
    rows.push({ key, size: u.size, inodes: u.inodes, ...blocks });
  }
  return rows;
}

/** The layer commands; while `thinstack serve` owns the store they go through it (see access.ts). */
export function layerCommands(cmd: Command): void {
  cmd.command("prepare")
    .description("make a writable (active) layer, a snapshot of PARENT if given")
    .argument("<key>").argument("[parent]", "a committed layer")
    .action((key: string, parent: string | undefined, _o, c: Command) =>
      withLayers(c, async (store) => {
        await store.prepare(key, parent);
        out(`${key}\n`);
      }));

  cmd.command("view")
    .description("make a read-only layer over PARENT")
    .argument("<key>").argument("<parent>", "a committed layer")
    .action((key: string, parent: string, _o, c: Command) =>
      withLayers(c, async (store) => {
        await store.view(key, parent);
        out(`${key}\n`);
      }));

  cmd.command("commit")
    .description("turn active layer KEY into committed layer NAME")
    .argument("<name>").argument("<key>")
    .action((name: string, key: string, _o, c: Command) =>
      withLayers(c, async (store) => {
        await store.commit(name, key);
        out(`${name}\n`);
      }));

  cmd.command("rm")
    .description("remove layers; their blocks are freed in the background (deferred deletion)")
    .argument("<keys...>")
    .action((keys: string[], _o, c: Command) =>
      withLayers(c, async (store) => {
        // As docker rm: every key is tried; each failure is one line, and the exit code 1.
        let failed = 0;
        for (const key of keys) {
          try {
            await store.remove(key);
            out(`${key}\n`);
          } catch (e) {
            if (keys.length === 1) throw e;
            cliOutput().stderr.write(errorLine(e));
            failed++;
          }
        }
        if (failed) throw new Exit(1);
      }, { leavePending: true }));

  cmd.command("ls")
    .description("list layers")
    .option("--json", "print JSON")
    .option("--tree", "print the layer tree")
    .action((o, c: Command) =>
      withLayers(c, async (store) => {
        const layers = await store.list();
        if (o.json) return out(json(layers));
        if (o.tree) return out(layerTree(layers));
        out(table(["NAME", "KIND", "PARENT", "CREATED"], layers.map((l) => [l.name, l.kind, l.parent || "-", new Date(l.created).toISOString()])));
      }));

  cmd.command("inspect")
    .description("a layer's record and usage, as JSON")
    .argument("<key>")
    .action((key: string, _o, c: Command) =>
      withLayers(c, async (store) => {
        const info = await store.stat(key);
        const [usage] = await usageRows(store, [key]);
        out(json({ ...info, usage }));
      }));

  cmd.command("usage")
    .description("per layer: size and inodes of its own changes, and its device's mapped, exclusive and shared blocks (thin_ls)")
    .argument("[keys...]")
    .option("--json", "print JSON")
    .action((keys: string[], o, c: Command) =>
      withLayers(c, async (store) => {
        const names = keys.length ? keys : (await store.list()).map((l) => l.name);
        const rows = await usageRows(store, names);
        if (o.json) return out(json(rows));
        out(table(["LAYER", "DEV", "MAPPED", "EXCLUSIVE", "SHARED", "SIZE", "INODES"],
          rows.map((r) => [r.key, r.device, r.mapped, r.exclusive, r.shared, formatIec(r.size), r.inodes])));
      }));
}
