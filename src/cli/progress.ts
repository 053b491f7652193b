/**
 * Progress bars for long commands (import, export, apply, checkout, cp): drawn with
 * cli-progress when stderr is a terminal, silent otherwise, so pipes and logs stay clean.
 *
 * @module
 */
import cliProgress from "cli-progress";
import { formatIec } from "../common/units.ts";

/** A progress sink: `total` may be unknown (0) until later. */
export interface Progress {
  setTotal(bytes: number): void;
  advance(bytes: number): void;
  stop(): void;
}

const silent: Progress = { setTotal() {}, advance() {}, stop() {} };

/** A bar labelled `label` on stderr when it is a terminal; a silent sink otherwise. */
export function progress(label: string, total = 0): Progress {
  if (!process.stderr.isTTY) return silent;
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {percentage}% {done}/{all}`,
    hideCursor: true,
    clearOnComplete: false,
  }, cliProgress.Presets.shades_classic);
  let done = 0;
  let all = total;
  bar.start(Math.max(all, 1), 0, { done: formatIec(0), all: all ? formatIec(all) : "?" });
  return {
    setTotal(bytes) {
      all = bytes;
      bar.setTotal(Math.max(bytes, 1));
    },
    advance(bytes) {
      done += bytes;
      bar.update(Math.min(done, Math.max(all, 1)), { done: formatIec(done), all: all ? formatIec(all) : "?" });
    },
    stop() {
      bar.stop();
    },
  };
}
