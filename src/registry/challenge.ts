/**
 * `WWW-Authenticate` challenges (RFC 7235): what a registry's 401 asks for, such as
 * `Bearer realm="https://auth.example/token",service="registry",scope="repository:app:pull"`
 * or `Basic realm="Registry"`.
 *
 * @module
 */

/** One challenge: its scheme (lowercase) and parameters (names lowercase). */
export interface Challenge {
  /** `basic` or `bearer` (or another scheme, which is not answered). */
  scheme: string;
  /** `realm`, `service`, `scope`, `error`... */
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (one or several challenges).
 *
 * @example
 * ```ts
 * import { parseChallenges } from "./challenge.ts";
 * const [c] = parseChallenges('Bearer realm="https://t/token",service="reg"');
 * console.log(c.scheme, c.params.realm); // bearer https://t/token
 * ```
 */
export function parseChallenges(header: string | null): Challenge[] {
  const out: Challenge[] = [];
  if (!header) return out;
  let i = 0;
  const n = header.length;
  const skip = (chars: string) => {
    while (i < n && chars.includes(header[i])) i++;
  };
  const token = () => {
    const start = i;
    while (i < n && !" \t,=\"".includes(header[i])) i++;
    return header.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skip(" \t,");
    if (i >= n) break;
    const start = i;
    const word = token();
    skip(" \t");
    if (header[i] === "=" && current && word) {
      // A parameter of the current challenge.
      i++;
      skip(" \t");
      let value = "";
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < n) i++;
          value += header[i++];
        }
        i++;
      } else {
        value = token();
      }
      current.params[word.toLowerCase()] = value;
    } else if (word) {
      current = { scheme: word.toLowerCase(), params: {} };
      out.push(current);
    } else {
      i = start + 1; // a stray character: step over it
    }
  }
  return out;
}
