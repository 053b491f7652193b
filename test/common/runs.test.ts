// The shared run count of the property tests (test/helpers/tmp.ts): never 0.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runs } from "../helpers/tmp.ts";

test("runs(): the normal count, FUZZ_RUNS when more, and an error for 0 or a FUZZ_RUNS that is not a count", () => {
  const saved = process.env.FUZZ_RUNS;
  try {
    delete process.env.FUZZ_RUNS;
    assert.equal(runs(12), 12);
    assert.throws(() => runs(0), /at least 1 run/);
    for (const [value, want] of [["5", 12], ["500", 500]] as const) {
      process.env.FUZZ_RUNS = value;
      assert.equal(runs(12), want);
    }
    for (const bad of ["", " ", "0", "-3", "2.5", "abc"]) {
      process.env.FUZZ_RUNS = bad;
      assert.throws(() => runs(12), /FUZZ_RUNS='.*' must be a whole number, 1 or more/, `FUZZ_RUNS='${bad}'`);
    }
  } finally {
    if (saved === undefined) delete process.env.FUZZ_RUNS;
    else process.env.FUZZ_RUNS = saved;
  }
});
