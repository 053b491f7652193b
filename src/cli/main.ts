/**
 * The `thinstack` command: an operator's view of a store, after Docker's devicemapper
 * guide and thin-provisioning-tools. Under Node run it as `npx thinstack`; under Deno as
 * `deno run -A src/cli/bin.mjs` (the same entry, package.json's bin; `deno run -A
 * src/cli/main.ts` works too).
 *
 * Exit codes: 0 on success, 1 when a command fails (one `thinstack: ...` line on stderr)
 * or finds faults (`check`), 2 for a usage error (an unknown command or option, a bad
 * size or percentage), 141 (as a shell reports a command killed by SIGPIPE) and nothing on
 * stderr when the reader of stdout went away (`thinstack cat KEY:/big | head`).
 *
 * @module
 */
import { Command, CommanderError } from "commander";
import { storeCommands } from "./commands/store.ts";
import { layerCommands } from "./commands/layers.ts";
import { fileCommands } from "./commands/files.ts";
import { imageCommands } from "./commands/images.ts";
import { registryCommands } from "./commands/registry.ts";
import { serveCommands } from "./commands/serve.ts";
import { mountCommands } from "./commands/mount.ts";
import { poolCommands } from "./commands/pool.ts";
import { showSizeDefaults } from "./args.ts";
import { VERSION } from "./info.ts";
import { errorLine, Exit } from "./output.ts";
import { type CliOutput, cliOutput, EPIPE_EXIT, isStdoutClosed, stdoutClosed, useOutput, watchStdout } from "./stdout.ts";

/** Builds the program. */
export function program(): Command {
  const cmd = new Command("thinstack")
    .description("A thin-provisioned snapshot store for layered container images (dm-thin in user space).")
    .version(VERSION)
    .option("--root <dir>", "the store's directory (default: $THINSTACK_ROOT, else ./.thinstack)")
    // Before the subcommands are added, so they inherit it: usage errors become exit code 2.
    .exitOverride();
  storeCommands(cmd);
  poolCommands(cmd);
  layerCommands(cmd);
  fileCommands(cmd);
  imageCommands(cmd);
  registryCommands(cmd);
  serveCommands(cmd);
  mountCommands(cmd);
  showSizeDefaults(cmd);
  // Usage errors as one line, like every other error, naming where the usage is.
  for (const c of [cmd, ...cmd.commands]) {
    const help = c === cmd ? "thinstack --help" : `thinstack ${c.name()} --help`;
    c.configureOutput({
      writeOut: (s) => cliOutput().stdout.write(s),
      writeErr: (s) => cliOutput().stderr.write(s),
      outputError: (s, write) => write(`thinstack: ${s.replace(/^error: /, "").trim().replace(/\s*\n\s*/g, " ")} (see '${help}')\n`),
    });
  }
  return cmd;
}

/**
 * Runs the CLI with `argv` (without the runtime and script); resolves to the exit code.
 * It writes to `output` when given (one run at a time per process), else to the process's
 * stdout and stderr.
 */
export async function main(argv: string[], output?: CliOutput): Promise<number> {
  const cmd = program();
  if (output) useOutput(output);
  else watchStdout();
  try {
    await cmd.parseAsync(argv, { from: "user" });
    return stdoutClosed() ? EPIPE_EXIT : 0;
  } catch (e) {
    if (isStdoutClosed(e)) return EPIPE_EXIT;
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof Exit) return e.code;
    cliOutput().stderr.write(errorLine(e));
    if (process.env.THINSTACK_DEBUG) cliOutput().stderr.write(`${(e as Error)?.stack ?? ""}\n`);
    return 1;
  } finally {
    if (output) useOutput(undefined);
  }
}

// Deno sets import.meta.main (false when bin.mjs imports this); Node has none (bin.mjs calls
// main itself, or `tsx main.ts`).
// Read through a cast: augmenting ImportMeta would clash with Deno's own declaration.
if ((import.meta as { main?: boolean }).main ?? process.argv[1]?.endsWith("main.ts")) {
  const argv = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);
  process.exitCode = await main(argv);
}

declare const Deno: { args: string[] } | undefined;
