/**
 * The deterministic work of the crash test, shared by the child (which runs it on a
 * layer and dies mid-way) and the parent (which replays it on the model to know what
 * each durable point must look like).
 *
 * @module
 */

/** What a step needs: the calls both a layer and the model offer. */
export interface StepTarget {
  writeFile(p: string, data: string | Uint8Array): Promise<void>;
  appendFile(p: string, data: string | Uint8Array): Promise<void>;
  rm(p: string, o?: { force?: boolean; recursive?: boolean }): Promise<void>;
  rename(a: string, b: string): Promise<void>;
  mkdir(p: string, o?: { recursive?: boolean }): Promise<string | undefined>;
}

/** Contents of step `i`: sizes from a few bytes (inline) to 200 KiB (several blocks). */
export function contents(i: number): Uint8Array {
  const len = [17, 3000, 70_000, 200_000][i % 4] + i;
  const out = new Uint8Array(len);
  for (let k = 0; k < len; k += 97) out[k] = (i + k) & 0xff;
  return out;
}

/** Step `i` of the work; `/counter` always says which step was last. */
export async function step(t: StepTarget, i: number): Promise<void> {
  await t.mkdir(`/d${i % 3}`, { recursive: true });
  await t.writeFile(`/d${i % 3}/f${i % 7}`, contents(i));
  if (i % 4 === 1) await t.appendFile("/log", `${i}\n`);
  if (i % 6 === 3) await t.rm(`/d${(i + 1) % 3}/f${(i + 2) % 7}`, { force: true });
  if (i % 9 === 4) await t.rename(`/d${i % 3}/f${i % 7}`, `/moved-${i % 5}`);
  await t.writeFile("/counter", String(i));
}

/** True when step `i` ends with a lifecycle commit (commit the layer, prepare the next on it). */
export const commitsLayer = (i: number): boolean => i % 5 === 4;
