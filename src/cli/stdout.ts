/**
 * The command's output on stdout, and what happens when its reader goes away
 * (`thinstack cat KEY:/big | head -c 10`): a write that fails with EPIPE ends the command
 * as coreutils' `cat` ends under a shell's default SIGPIPE, quietly and with the status a
 * shell reports for it (141, 128 + SIGPIPE), after the store is closed and its lock
 * released like at the end of any command. Node and Deno both report the closed pipe as an
 * `'error'` event on `process.stdout` (which, unheard, would crash the process); it is heard
 * here, from {@linkcode watchStdout} on.
 *
 * Everything the CLI writes goes through {@linkcode cliOutput}: the process's stdout and
 * stderr, or the streams a caller of `main` gave it (a test runs many commands in one
 * process that way, without a start-up each).
 *
 * @module
 */
import process from "node:process";
import type { Writable } from "node:stream";
import { Exit } from "./output.ts";

/** A stream the CLI writes to; `isTTY` as on `process.stderr` (progress bars and notes for a person need a terminal). */
export type CliStream = Writable & { isTTY?: boolean };

/** Where a run of the CLI writes its output and its messages. */
export interface CliOutput {
  stdout: CliStream;
  stderr: CliStream;
}

let current: CliOutput | undefined;

/** Where the CLI writes now: what {@linkcode useOutput} set, else the process's own stdout and stderr. */
export function cliOutput(): CliOutput {
  return current ?? { stdout: process.stdout, stderr: process.stderr };
}

/**
 * Sends the CLI's output to `output` until it is called again (undefined: back to the
 * process's stdout and stderr). One run of the CLI at a time per process: `main` sets it
 * for its run.
 */
export function useOutput(output: CliOutput | undefined): void {
  current = output;
}

/** The exit status of a command whose stdout reader went away: 128 + SIGPIPE, as a shell reports `cat` killed by it. */
export const EPIPE_EXIT = 141;

/** Thrown by a write to a closed stdout: the command stops, says nothing, and exits {@linkcode EPIPE_EXIT}. */
export class StdoutClosed extends Exit {
  constructor() {
    super(EPIPE_EXIT);
  }
}

let watching = false;
/** The reader of stdout has gone away (a write failed with EPIPE). */
let closed = false;
/** Another failure of stdout (a full disk under `> file`): later writes throw it. */
let failure: Error | undefined;

/** Listens for stdout's errors from now on (once per process), so a closed pipe ends the command quietly. */
export function watchStdout(): void {
  if (watching) return;
  watching = true;
  process.stdout.on("error", heard);
}

function heard(e: Error): void {
  if (isPipeError(e)) gone();
  else failure ??= e;
}

/** The reader went away. */
function gone(): void {
  closed = true;
}

/** An error that says stdout's reader is gone (or came from writing after it went). */
function isPipeError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === "EPIPE" || (closed && (code === "ERR_STREAM_DESTROYED" || code === "ERR_STREAM_WRITE_AFTER_END"));
}

/** True once a write to stdout has failed with EPIPE. */
export function stdoutClosed(): boolean {
  return closed;
}

/** True when `e` is how the closed stdout showed itself to a command (so nothing is to be said about it). */
export function isStdoutClosed(e: unknown): boolean {
  return e instanceof StdoutClosed || (closed && (isPipeError(e) || (e as { code?: unknown })?.code === "ERR_STREAM_PREMATURE_CLOSE"));
}

/**
 * Writes `chunk` to stdout and waits until it is handed on (so a long output keeps to the
 * reader's pace); throws {@linkcode StdoutClosed} once the reader has gone away.
 */
export async function writeOut(chunk: Uint8Array | string): Promise<void> {
  if (closed) throw new StdoutClosed();
  if (failure) throw failure;
  try {
    await new Promise<void>((resolve, reject) => {
      cliOutput().stdout.write(chunk, (err?: Error | null) => (err ? reject(err) : resolve()));
    });
  } catch (e) {
    if (isPipeError(e)) {
      gone();
      throw new StdoutClosed();
    }
    throw e;
  }
}

/**
 * Writes every chunk to stdout in turn (see {@linkcode writeOut}); stops at the first that
 * fails, which closes `chunks` (the loop's exit calls its `return()`).
 */
export async function pipeOut(chunks: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const chunk of chunks) await writeOut(chunk);
}

/** Writes `text` to stdout without waiting (short output); nothing once the reader has gone away. */
export function printOut(text: string): void {
  if (closed) return;
  cliOutput().stdout.write(text);
}
