/**
 * Progress bars for long commands (import, export, apply, checkout, cp): drawn with
 * cli-progress when stderr is a terminal, silent otherwise, so pipes and logs stay clean.
 *
 * @module
 */
import cliProgress from "cli-progress";
import { formatIec } from "../common/units.ts";
import { cliOutput } from "./stdout.ts";

/** A progress sink: `total` may be unknown (0) until later. */
export interface Progress {
  setTotal(bytes: number): void;
  advance(bytes: number): void;
  stop(): void;
}

const silent: Progress = { setTotal() {}, advance() {}, stop() {} };

/** A bar labelled `label` on stderr when it is a terminal; a silent sink otherwise. */
export function progress(label: string, total = 0): Progress {
  const stderr = cliOutput().stderr;
  if (!stderr.isTTY) return silent;
  const bar = new cliProgress.SingleBar({
    stream: stderr,
    format: `${label} [{bar}] {percentage}% {done}/{all}`,
    hideCursor: true,
    clearOnComplete: false,
  }, cliProgress.Presets.shades_classic);
  let done = 0;
  let all = total;
  // An unknown total leaves the bar empty (not full at the first byte); the count still moves.
  const draw = () => bar.update(all ? Math.min(done, all) : 0, { done: formatIec(done), all: all ? formatIec(all) : "?" });
  bar.start(Math.max(all, 1), 0, { done: formatIec(0), all: all ? formatIec(all) : "?" });
  return {
    setTotal(bytes) {
      all = bytes;
      bar.setTotal(Math.max(bytes, 1));
      draw();
    },
    advance(bytes) {
      done += bytes;
      draw();
    },
    stop() {
      bar.stop();
    },
  };
}

/**
 * An `onProgress(done, total)` callback, as the store's import, export and checkout take
 * (bytes so far, total or 0 when unknown), that moves `bar`.
 */
export function progressHook(bar: Progress): (done: number, total: number) => void {
  let seen = 0;
  let all = 0;
  return (done, total) => {
    if (total !== all) bar.setTotal(all = total);
    bar.advance(done - seen);
    seen = done;
  };
}
