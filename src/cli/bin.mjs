#!/usr/bin/env node
// The `thinstack` command under Node: load tsx's loader, then the TypeScript entry.
// (Under Deno: `deno run -A src/cli/main.ts`.)
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
