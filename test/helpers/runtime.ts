/** Spawning a TypeScript file in a child process under the runtime running the tests. */
import { spawn, type ChildProcess } from "node:child_process";

declare const Deno: { execPath(): string } | undefined;

/** True under Deno. */
export const isDeno = typeof Deno !== "undefined";

/** The command line that runs `script` under this runtime (tsx under Node, `deno run -A` under Deno). */
export function runtimeCommand(script: string, args: string[] = []): [string, string[]] {
  if (isDeno) return [Deno!.execPath(), ["run", "-A", "--no-lock", script, ...args]];
  return [process.execPath, ["--import", "tsx", script, ...args]];
}

/** Spawns `script` with piped stdio. */
export function spawnScript(script: string, args: string[] = []): ChildProcess {
  const [cmd, argv] = runtimeCommand(script, args);
  return spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
}
