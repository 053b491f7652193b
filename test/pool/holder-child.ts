// Child process of failures.test.ts: opens the pool in argv[2], says so, and keeps it open until killed.
import { Pool } from "../../src/pool/pool.ts";

await Pool.open(process.argv[2]);
console.log("open");
setInterval(() => {}, 1000);
