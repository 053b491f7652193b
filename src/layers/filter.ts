/**
 * containerd's filter syntax for `walk`: a filter is selectors joined by `,` (all must
 * match); several filters match when any does. A selector is a field path, optionally
 * an operator (`==`, `!=`, `~=` for a regular expression) and a value; a bare field
 * path asks that the field be present. Path segments and values may be double-quoted,
 * as in `labels."containerd.io/gc.root"==x`.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { LayerInfo } from "./types.ts";

/** One parsed selector. */
interface Selector {
  path: string[];
  op?: "==" | "!=" | "~=";
  value?: string;
}

/** A compiled filter list: true when any filter matches. */
export type Matcher = (info: LayerInfo) => boolean;

function readToken(s: string, i: number, stops: string): [string, number] {
  if (s[i] === '"') {
    let out = "";
    let j = i + 1;
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === "\\" && j + 1 < s.length) j++;
      out += s[j];
    }
    if (j >= s.length) throw storeError("EINVAL", "walk", s, "unterminated quote in filter");
    return [out, j + 1];
  }
  let j = i;
  while (j < s.length && !stops.includes(s[j])) j++;
  return [s.slice(i, j), j];
}

function parseFilter(s: string): Selector[] {
  const out: Selector[] = [];
  let i = 0;
  while (i < s.length) {
    const path: string[] = [];
    for (;;) {
      const [seg, j] = readToken(s, i, ".,=!~");
      if (seg === "") throw storeError("EINVAL", "walk", s, "empty field name in filter");
      path.push(seg);
      i = j;
      if (s[i] !== ".") break;
      i++;
    }
    const sel: Selector = { path };
    const op = s.slice(i, i + 2);
    if (op === "==" || op === "!=" || op === "~=") {
      sel.op = op;
      const [value, j] = readToken(s, i + 2, ",");
      sel.value = value;
      i = j;
    }
    out.push(sel);
    if (i < s.length) {
      if (s[i] !== ",") throw storeError("EINVAL", "walk", s, `unexpected '${s[i]}' in filter`);
      i++;
    }
  }
  return out;
}

function field(info: LayerInfo, path: string[]): string | undefined {
  if (path.length === 1) {
    if (path[0] === "name" || path[0] === "parent" || path[0] === "kind") return info[path[0]];
    return undefined;
  }
  if (path[0] === "labels" && path.length === 2) return info.labels[path[1]];
  return undefined;
}

function matches(info: LayerInfo, sel: Selector): boolean {
  const v = field(info, sel.path);
  switch (sel.op) {
    case undefined: return v !== undefined;
    case "==": return v === sel.value;
    case "!=": return v !== sel.value;
    case "~=": return v !== undefined && new RegExp(sel.value!).test(v);
  }
}

/**
 * Compiles filters; no filters match everything.
 *
 * @example
 * ```ts
 * import { compileFilters } from "./filter.ts";
 * const m = compileFilters(['kind==active,labels."x.io/y"==1']);
 * console.log(m({ name: "a", parent: "", kind: "active", created: new Date(), updated: new Date(), labels: { "x.io/y": "1" } })); // true
 * ```
 */
export function compileFilters(filters: string[]): Matcher {
  const parsed = filters.filter((f) => f.trim() !== "").map(parseFilter);
  if (parsed.length === 0) return () => true;
  return (info) => parsed.some((sels) => sels.every((sel) => matches(info, sel)));
}
