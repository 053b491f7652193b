/**
 * A fault proxy on loopback between thinstack and the test registry: it forwards every
 * request (Host kept, so the registry's Location URLs point back at the proxy), counts
 * them and the blob bytes it passes, and on demand cuts blob downloads and chunk uploads
 * mid-way, answers 500, slows answers down, stalls a download, flips a byte of blobs,
 * refuses PATCH or ignores Range.
 */
import { once } from "node:events";
import http from "node:http";
import type net from "node:net";

/** What goes wrong. Counters are per proxy; "the first N" faults then pass. */
export interface Faults {
  /** Cut blob downloads (GET .../blobs/sha256:...) after this many body bytes... */
  cutBlobAfter?: number;
  /** ...the first this many times (default 1 per blob). */
  cutTimes?: number;
  /** Answer every Nth request with 500 (manifest, blob, upload requests alike), but not the same request twice running. */
  fail500Every?: number;
  /** Hold every answer back this long (ms). */
  delayMs?: number;
  /** Wait this long (ms) between body chunks of blob downloads. */
  bodyDelayMs?: number;
  /** Send this many bytes of a blob download, then nothing (the connection stays open), the first time per blob. */
  stallBlobAfter?: number;
  /** Cut the first `cutPatchTimes` PATCH uploads after this many request bytes. */
  cutPatchAfter?: number;
  cutPatchTimes?: number;
  /** Flip the byte at this offset of every blob download that reaches it. */
  corruptAt?: number;
  /** Answer PATCH with 405, as a registry without chunked uploads. */
  noPatch?: boolean;
  /** Drop Range headers, as a server that ignores them. */
  ignoreRange?: boolean;
}

/** One request as the proxy saw it. */
export interface Seen {
  method: string;
  url: string;
  status: number;
  /** Response body bytes passed to the client. */
  bytes: number;
  /** The Range asked for, if any. */
  range?: string;
}

/** A running proxy. */
export interface FaultProxy {
  /** `127.0.0.1:PORT`. */
  host: string;
  requests: Seen[];
  /** Body bytes of blob downloads passed to the client. */
  blobBytes: number;
  /** Faults injected so far, by kind. */
  injected: Record<string, number>;
  /** The most blob downloads (GET) and chunk or blob uploads (PATCH, PUT ?digest=) that were in flight at once. */
  peak: { blobGets: number; uploads: number };
  faults: Faults;
  stop(): Promise<void>;
}

const BLOB_GET = /^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/;

/** Starts a proxy to the registry at `upstream` (`127.0.0.1:PORT`). */
export async function startProxy(upstream: string, faults: Faults = {}): Promise<FaultProxy> {
  const [upHost, upPort] = upstream.split(":");
  const sockets = new Set<net.Socket>();
  const cuts = new Map<string, number>();
  const stalled = new Set<string>();
  const failed = new Set<string>();
  let count = 0;
  let patches = 0;
  const proxy: FaultProxy = {
    host: "",
    requests: [],
    blobBytes: 0,
    injected: {},
    peak: { blobGets: 0, uploads: 0 },
    faults,
    stop: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, "close").catch(() => {});
    },
  };
  const inject = (kind: string) => (proxy.injected[kind] = (proxy.injected[kind] ?? 0) + 1);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const active = { blobGets: 0, uploads: 0 };
  const server = http.createServer((req, res) => {
    const url = req.url ?? "/";
    const kind = req.method === "GET" && BLOB_GET.test(url.split("?")[0]) ? "blobGets"
      : req.method === "PATCH" || (req.method === "PUT" && url.includes("digest=")) ? "uploads"
      : undefined;
    if (kind) {
      proxy.peak[kind] = Math.max(proxy.peak[kind], ++active[kind]);
      let ended = false;
      const end = () => {
        if (!ended) active[kind]--;
        ended = true;
      };
      res.on("close", end);
    }
    void handle(req, res);
  });
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = req.url ?? "/";
    const seen: Seen = { method: req.method ?? "GET", url, status: 0, bytes: 0, ...(req.headers.range ? { range: req.headers.range } : {}) };
    proxy.requests.push(seen);
    const n = ++count;
    const f = proxy.faults;
    // A request tried again right after its injected 500 passes: faults are transient, and a
    // fixed period would otherwise line up with a client's retry cycle forever.
    const key = `${req.method} ${url.split("?")[0]}`;
    const retried = failed.delete(key);
    if (f.fail500Every && n % f.fail500Every === 0 && !retried) {
      failed.add(key);
      inject("500");
      req.resume();
      seen.status = 500;
      res.writeHead(500, { "content-type": "application/json" });
      res.end('{"errors":[{"code":"UNKNOWN","message":"injected by the fault proxy"}]}');
      return;
    }
    if (f.noPatch && req.method === "PATCH") {
      inject("noPatch");
      req.resume();
      seen.status = 405;
      res.writeHead(405, { "content-type": "application/json" });
      res.end('{"errors":[{"code":"UNSUPPORTED","message":"chunked uploads are not supported"}]}');
      return;
    }
    const headers = { ...req.headers };
    if (f.ignoreRange) delete headers.range;
    const path = url.split("?")[0];
    const blob = req.method === "GET" && BLOB_GET.test(path);
    const up = http.request({ host: upHost, port: Number(upPort), method: req.method, path: url, headers });
    up.on("error", () => {
      req.socket.destroy();
    });
    // Request bodies (uploads) pass through, maybe cut.
    let sent = 0;
    const cutPatch = req.method === "PATCH" && f.cutPatchAfter !== undefined && patches++ < (f.cutPatchTimes ?? 1);
    req.on("data", (c: Buffer) => {
      if (cutPatch && sent + c.length > f.cutPatchAfter!) {
        inject("cutPatch");
        up.write(c.subarray(0, Math.max(0, f.cutPatchAfter! - sent)));
        up.destroy();
        req.socket.destroy();
        return;
      }
      sent += c.length;
      if (!up.write(c)) {
        req.pause();
        up.once("drain", () => req.resume());
      }
    });
    req.on("end", () => up.end());
    req.on("error", () => up.destroy());
    const upRes = await new Promise<http.IncomingMessage | undefined>((resolve) => {
      up.on("response", resolve);
      up.on("error", () => resolve(undefined));
      up.on("close", () => resolve(undefined));
    });
    if (!upRes) return;
    if (f.delayMs) await sleep(f.delayMs);
    seen.status = upRes.statusCode ?? 0;
    res.writeHead(upRes.statusCode ?? 502, upRes.headers);
    if (!blob || upRes.statusCode! >= 300) {
      upRes.pipe(res);
      return;
    }
    // A blob download: where in the blob this answer starts (a ranged answer starts later).
    let at = Number(/^bytes (\d+)-/.exec(String(upRes.headers["content-range"] ?? ""))?.[1] ?? 0);
    let passed = 0;
    const cutHere = f.cutBlobAfter !== undefined && (cuts.get(path) ?? 0) < (f.cutTimes ?? 1);
    const stallHere = f.stallBlobAfter !== undefined && !stalled.has(path);
    for await (const chunk of upRes as AsyncIterable<Buffer>) {
      let c = chunk;
      if (f.corruptAt !== undefined && f.corruptAt >= at && f.corruptAt < at + c.length) {
        inject("corrupt");
        c = Buffer.from(c);
        c[f.corruptAt - at] ^= 0x20;
      }
      if (cutHere && passed + c.length > f.cutBlobAfter!) {
        inject("cutBlob");
        cuts.set(path, (cuts.get(path) ?? 0) + 1);
        res.write(c.subarray(0, Math.max(0, f.cutBlobAfter! - passed)));
        upRes.destroy();
        // Let the partial bytes go out, then cut the connection.
        await sleep(20);
        res.socket?.destroy();
        return;
      }
      if (stallHere && passed + c.length > f.stallBlobAfter!) {
        inject("stall");
        stalled.add(path);
        res.write(c.subarray(0, Math.max(0, f.stallBlobAfter! - passed)));
        upRes.destroy();
        return; // nothing more: the client must notice and come back
      }
      if (f.bodyDelayMs) await sleep(f.bodyDelayMs);
      passed += c.length;
      at += c.length;
      seen.bytes += c.length;
      proxy.blobBytes += c.length;
      if (!res.write(c)) await once(res, "drain");
    }
    res.end();
  };
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  proxy.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return proxy;
}
