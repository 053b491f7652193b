/**
 * Imported before cbor-x: under Deno, cbor-x's optional native accelerator (cbor-extract,
 * a Node addon built on install where install scripts run) dies on a symbol lookup
 * error that no try/catch can stop, so Deno is told to use the JavaScript decoder.
 *
 * @module
 */
declare const Deno: unknown;
if (typeof Deno !== "undefined") process.env.CBOR_NATIVE_ACCELERATION_DISABLED = "true";
