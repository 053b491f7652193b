/**
 * Child for the CLI's deferred-deletion crash test: removes a layer with deferred
 * deletion, exactly as `thinstack rm` does, then kills itself with SIGKILL as soon as the
 * removal returns — after the deletion is committed as pending (the layer gone, its
 * device marked `deleting`), before the background work that frees the device's blocks
 * could commit (that work needs a round trip to the I/O workers and file writes; the
 * kill comes first, within the same turn of the event loop). The test checks the
 * metadata offline to make sure the crash fell in between.
 *
 *   crash-rm-child.ts ROOT KEY
 */
import { LayerStore } from "../../src/layers/mod.ts";

const [root, key] = process.argv.slice(2);
const store = await LayerStore.open(root);
await store.remove(key, { deferred: true });
process.kill(process.pid, "SIGKILL");
