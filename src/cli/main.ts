/**
 * The `thinstack` command: an operator's view of a store, after Docker's devicemapper
 * guide and thin-provisioning-tools. Under Node run it as `npx thinstack`; under Deno as
 * `deno run -A src/cli/main.ts`.
 *
 * @module
 */
import { Command, CommanderError } from "commander";
import { storeCommands } from "./commands/store.ts";
import { layerCommands } from "./commands/layers.ts";
import { fileCommands } from "./commands/files.ts";
// Image commands (apply, diff, import, images, export, checkout) join when interchange lands.
import { VERSION } from "./info.ts";

/** Builds the program. */
export function program(): Command {
  const cmd = new Command("thinstack")
    .description("A thin-provisioned snapshot store for layered container images (dm-thin in user space).")
    .version(VERSION)
    .option("--root <dir>", "the store's directory (default: $THINSTACK_ROOT, else ./.thinstack)")
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    // Before the subcommands are added, so they inherit it: usage errors become exit code 2.
    .exitOverride();
  storeCommands(cmd);
  layerCommands(cmd);
  fileCommands(cmd);
  return cmd;
}

/** Runs the CLI with `argv` (without the runtime and script); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const cmd = program();
  try {
    await cmd.parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const err = e as { message?: string; code?: string };
    process.stderr.write(`thinstack: ${err.message ?? String(e)}\n`);
    return 1;
  }
}

if (import.meta.main ?? process.argv[1]?.endsWith("main.ts")) {
  const argv = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);
  process.exitCode = await main(argv);
}

declare const Deno: { args: string[] } | undefined;
declare global {
  interface ImportMeta { main?: boolean }
}
