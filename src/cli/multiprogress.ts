/**
 * A progress bar per layer for pull and push (cli-progress's MultiBar) on stderr when it
 * is a terminal; nothing otherwise, so pipes and logs stay clean.
 *
 * @module
 */
import cliProgress from "cli-progress";
import { formatIec } from "../common/units.ts";
import { cliOutput } from "./stdout.ts";
import type { TransferEvent } from "../registry/progress.ts";

/** Shows transfer events; `stop` ends the bars' lines before anything else prints. */
export interface TransferBars {
  update(e: TransferEvent): void;
  stop(): void;
}

const STATES: Partial<Record<TransferEvent["state"], string>> = {
  waiting: "waiting", checking: "checking", exists: "already there", mounted: "mounted", retrying: "retrying",
  downloading: "", uploading: "", done: "done",
};

/** Bars labelled `verb` (pull, push), one per layer, on a terminal; a silent sink otherwise. */
export function transferBars(verb: string): TransferBars {
  const stderr = cliOutput().stderr;
  if (!stderr.isTTY) return { update() {}, stop() {} };
  const multi = new cliProgress.MultiBar({
    stream: stderr,
    format: `{label} [{bar}] {done}/{all} {state}`,
    barsize: 20,
    hideCursor: true,
    clearOnComplete: false,
    autopadding: true,
  }, cliProgress.Presets.shades_classic);
  const bars = new Map<number, cliProgress.SingleBar>();
  return {
    update(e) {
      if (e.kind !== "layer") return;
      const label = `${verb} layer ${String(e.index + 1).padStart(String(e.layers).length)}/${e.layers} ${e.digest ? e.digest.slice(7, 19) : "            "}`;
      const payload = {
        label,
        state: STATES[e.state] ?? "",
        done: formatIec(e.done),
        all: e.total ? formatIec(e.total) : "?",
      };
      let bar = bars.get(e.index);
      if (!bar) bars.set(e.index, bar = multi.create(Math.max(e.total, 1), 0, payload));
      if (e.total) bar.setTotal(Math.max(e.total, 1));
      const full = e.state === "done" || e.state === "exists" || e.state === "mounted";
      bar.update(full ? Math.max(e.total, e.done, 1) : e.total ? Math.min(e.done, e.total) : 0, payload);
    },
    stop() {
      multi.stop();
    },
  };
}
