// Child process of pidlock.test.ts: takes the lock of the pool in argv[2] when told "go" on
// stdin and prints "won" or the error's code, lets it go on "release", and exits on "exit".
import readline from "node:readline";
import { lockPool } from "../../src/common/pidlock.ts";

const dir = process.argv[2];
let release: (() => Promise<void>) | undefined;
console.log("ready");
for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line === "go") {
    try {
      release = await lockPool(dir);
      console.log("won");
    } catch (e) {
      console.log(`lost ${(e as { code?: string }).code ?? String(e)}`);
    }
  } else if (line === "release") {
    await release?.();
    release = undefined;
    console.log("released");
  } else if (line === "exit") {
    break;
  }
}
process.exit(0);
