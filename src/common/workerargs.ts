/**
 * Starting worker threads whose code is TypeScript, under both runtimes: the flags a
 * worker needs to load it (tsx's loader under Node; nothing under Deno).
 *
 * @module
 */
import process from "node:process";

declare const Deno: unknown;

/**
 * The worker is TypeScript. Under Node it needs tsx's loader, which a worker inherits only
 * when the process was started with `--import tsx` (not when tsx was registered through its
 * API, as the CLI's entry does). Deno runs TypeScript itself and must not get the flag.
 */
export function workerExecArgv(): string[] | undefined {
  if (typeof Deno !== "undefined") return undefined;
  const argv = loaderArgs(process.execArgv);
  const hasTsx = argv.some((a, i) => /(^|[/=])tsx(\/|$)/.test(a) || (a === "--import" && /tsx/.test(argv[i + 1] ?? "")));
  return hasTsx ? argv : [...argv, "--import", tsxLoader()];
}

/** Flags that take their value as the next argument. */
const LOADER_FLAGS = new Set(["--import", "--loader", "--experimental-loader", "--require", "-r", "--conditions", "-C"]);

/**
 * The module-loading flags of the process (`--import tsx`, loaders, conditions): a worker
 * needs them to load TypeScript, while V8 and process-wide flags the process may run with
 * (`--max-old-space-size`, `--title`, `--expose-gc`) make Node refuse to start a worker.
 */
export function loaderArgs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    if (a.startsWith("--") && eq > 0 && LOADER_FLAGS.has(a.slice(0, eq))) out.push(a);
    else if (LOADER_FLAGS.has(a) && i + 1 < argv.length) out.push(a, argv[++i]);
  }
  return out;
}

/**
 * tsx's loader as an absolute URL: `--import` resolves a bare name from the working
 * directory, where tsx need not be installed (a CLI run from the user's own directory).
 */
function tsxLoader(): string {
  try {
    return import.meta.resolve("tsx");
  } catch {
    return "tsx";
  }
}
