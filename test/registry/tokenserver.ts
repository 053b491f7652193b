/**
 * A token server for the registry's `auth.token` mode (docker's token protocol): checks
 * Basic credentials and answers with a JWT (RS256) granting the scopes asked for, signed
 * with a key whose certificate (made by openssl) the registry's `rootcertbundle` trusts;
 * the certificate travels in the JWT's `x5c` header.
 */
import { createPrivateKey, randomBytes, sign } from "node:crypto";
import { once } from "node:events";
import fs from "node:fs/promises";
import http from "node:http";
import type net from "node:net";
import path from "node:path";
import { Buffer } from "node:buffer";
import { run } from "./registry.ts";

/** A key and its self-signed certificate, in `dir`. */
export interface SigningKey {
  keyPem: string;
  certPath: string;
  certDer: Buffer;
}

/** Makes an RSA key and a self-signed certificate for it with openssl. */
export async function makeSigningKey(dir: string): Promise<SigningKey> {
  const key = path.join(dir, "token.key");
  const cert = path.join(dir, "token.crt");
  run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=thinstack-test-token"]);
  const pem = await fs.readFile(cert, "utf8");
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return { keyPem: await fs.readFile(key, "utf8"), certPath: cert, certDer: Buffer.from(b64, "base64") };
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/** A running token server. */
export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** Token requests: the user (or "" for none) and scopes, and whether they were granted. */
  requests: { user: string; scopes: string[]; granted: boolean }[];
  stop(): Promise<void>;
}

/** Starts a token server that knows `users` (name → password). */
export async function startTokenServer(key: SigningKey, users: Record<string, string>): Promise<TokenServer> {
  const service = "thinstack-test-registry";
  const issuer = "thinstack-test-issuer";
  const privateKey = createPrivateKey(key.keyPem);
  const sockets = new Set<net.Socket>();
  const requests: TokenServer["requests"] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const scopes = url.searchParams.getAll("scope");
    const auth = req.headers.authorization ?? "";
    const [user, pass] = auth.startsWith("Basic ") ? Buffer.from(auth.slice(6), "base64").toString("utf8").split(/:(.*)/s) : ["", ""];
    const granted = user !== "" && users[user] === pass;
    requests.push({ user, scopes, granted });
    if (!granted) {
      res.writeHead(401, { "content-type": "application/json", "www-authenticate": 'Basic realm="thinstack-test-token"' });
      res.end('{"details":"incorrect username or password"}');
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    const access = scopes.map((s) => {
      const [type, ...rest] = s.split(":");
      const actions = rest.pop()!.split(",");
      return { type, name: rest.join(":"), actions };
    });
    const header = { alg: "RS256", typ: "JWT", x5c: [key.certDer.toString("base64")] };
    const claims = { iss: issuer, sub: user, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${input}.${b64url(sign("sha256", Buffer.from(input), privateKey))}`;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    requests,
    stop: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, "close").catch(() => {});
    },
  };
}
