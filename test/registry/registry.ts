/**
 * Debian's docker-registry (distribution 2.8) for tests: started on 127.0.0.1 on a free
 * port with a minimal config in a temporary directory (storage there too), and always
 * stopped. Tests skip, saying why, where it is absent.
 */
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { tmpDir } from "../helpers/tmp.ts";

const has = (cmd: string, arg = "--version") => spawnSync(cmd, [arg], { stdio: "ignore" }).status === 0;

/** Whether the registry binary is there. */
export const haveRegistry = has("docker-registry");
/** node:test's `skip` for tests that need it. */
export const needRegistry = haveRegistry ? false : "docker-registry is not installed (apt-get install docker-registry; .ci/run does)";
/** Tests that also copy with skopeo and unpack with umoci. */
export const needTools = needRegistry || (!has("skopeo") ? "skopeo is not installed (apt-get install skopeo)" : !has("umoci") ? "umoci is not installed (apt-get install umoci)" : false);
/** Token auth needs openssl for the signing certificate. */
export const needOpenssl = needRegistry || (!has("openssl", "version") ? "openssl is not installed" : false);
if (needRegistry) console.warn(`registry tests: ${needRegistry}; skipping them`);

/** A port nothing listens on now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  server.close();
  await once(server, "close");
  return port;
}

/** Authentication the registry demands. */
export type RegistryAuth =
  | { htpasswd: string }
  | { token: { realm: string; service: string; issuer: string; cert: string } };

/** A running registry. */
export interface TestRegistry {
  /** `127.0.0.1:PORT`. */
  host: string;
  port: number;
  /** Its temporary directory (config, storage, log). */
  dir: string;
  /** What it logged (errors only). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

function authConfig(auth: RegistryAuth | undefined, dir: string): string {
  if (!auth) return "";
  if ("htpasswd" in auth) return `auth:\n  htpasswd:\n    realm: thinstack-test\n    path: ${path.join(dir, "htpasswd")}\n`;
  const t = auth.token;
  return `auth:\n  token:\n    realm: ${t.realm}\n    service: ${t.service}\n    issuer: ${t.issuer}\n    rootcertbundle: ${t.cert}\n`;
}

/** Starts a registry; resolves once `/v2/` answers. */
export async function startRegistry(auth?: RegistryAuth): Promise<TestRegistry> {
  const dir = await tmpDir("thinstack-registry-");
  const port = await freePort();
  if (auth && "htpasswd" in auth) await fs.writeFile(path.join(dir, "htpasswd"), auth.htpasswd);
  await fs.writeFile(path.join(dir, "config.yml"), [
    "version: 0.1",
    "log:\n  level: error\n  accesslog:\n    disabled: true",
    `storage:\n  filesystem:\n    rootdirectory: ${path.join(dir, "data")}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false`,
    `http:\n  addr: 127.0.0.1:${port}\n  secret: thinstack-test-secret`,
    authConfig(auth, dir),
  ].join("\n"));
  const logFile = await fs.open(path.join(dir, "log.txt"), "w");
  const child = spawn("docker-registry", ["serve", path.join(dir, "config.yml")], { stdio: ["ignore", logFile.fd, logFile.fd] });
  await logFile.close();
  let exited = false;
  child.on("exit", () => (exited = true));
  const log = () => fs.readFile(path.join(dir, "log.txt"), "utf8").catch(() => "");
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      if (!exited) await once(child, "exit");
      clearTimeout(timer);
    }
    await fs.rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) {
      const text = await log();
      await stop();
      throw new Error(`docker-registry exited at start:\n${text}`);
    }
    const r = await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => undefined);
    await r?.body?.cancel();
    if (r && (r.status === 200 || r.status === 401)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`docker-registry did not answer on ${port} within 15 s:\n${await log()}`);
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  return { host: `127.0.0.1:${port}`, port, dir, log, stop };
}

/** Runs a command; fails with its output when it fails. */
export function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** `skopeo copy SRC DST` with TLS off for the loopback registry. */
export function skopeo(src: string, dst: string): void {
  run("skopeo", ["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst]);
}
