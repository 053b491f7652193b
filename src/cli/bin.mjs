#!/usr/bin/env node
// The `thinstack` command under Node: load tsx's loader, then run the TypeScript entry.
// (Under Deno: `deno run -A src/cli/main.ts`.)
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
