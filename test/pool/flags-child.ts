// Child process of failures.test.ts, started with V8 flags: a pool must still get its I/O workers.
import { Pool } from "../../src/pool/pool.ts";

const pool = await Pool.create(process.argv[2], { dataSize: 1 << 20 });
await pool.createThin(1, 1 << 16);
await pool.device(1).write(0, new Uint8Array([5]));
console.log((await pool.device(1).read(0, 1))[0]);
await pool.close();
