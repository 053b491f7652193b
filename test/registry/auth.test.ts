/**
 * Authentication against Debian's docker-registry: its token mode (`auth.token`) with a
 * realm this test serves (Basic credentials checked there, JWTs signed with a key whose
 * certificate the registry trusts), and its htpasswd mode (Basic). Credentials come from
 * `creds` or a docker config.json; missing or wrong ones fail in one line naming the realm.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fsp from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { ImageStore } from "../../src/images/mod.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { appLayer, baseLayer, config } from "./build.ts";
import { needOpenssl, needRegistry, startRegistry, type TestRegistry } from "./registry.ts";
import { makeSigningKey, startTokenServer, type TokenServer } from "./tokenserver.ts";

const opts = { plainHttp: true, retry: { backoffMs: 5 }, dockerConfig: "/nonexistent/config.json" };
/** bcrypt of "s3cret" (made with crypt(3): `perl -e 'print crypt("s3cret", q{$2b$05$abcdefghijklmnopqrstuu})'`). */
const HTPASSWD = "ci:$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK\n";

async function failsWith(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), e.message);
    return true;
  });
}

async function withStore(dir: string, fn: (s: ImageStore) => Promise<void>): Promise<void> {
  const s = await ImageStore.open(dir, { create: true, dataSize: 2 ** 30, baseSize: 2 ** 28 });
  try {
    await baseLayer(s, "base", 300_000);
    await appLayer(s, "app", "base");
    await s.createImage("base", "base", { config: config() });
    await s.createImage("app", "app", { config: config() });
    await fn(s);
  } finally {
    await s.close();
  }
}

describe("token auth", { skip: needOpenssl }, () => {
  let dir: string;
  let tokens: TokenServer;
  let reg: TestRegistry;
  before(async () => {
    dir = await tmpDir("thinstack-auth-");
    const key = await makeSigningKey(dir);
    tokens = await startTokenServer(key, { ci: "s3cret" });
    reg = await startRegistry({ token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, cert: key.certPath } });
  });
  after(async () => {
    await reg?.stop();
    await tokens?.stop();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  test("push and pull with credentials get tokens for their scopes; a mount asks for the source too", async () => {
    await withStore(`${dir}/s1`, async (s) => {
      const creds = { ...opts, creds: "ci:s3cret" };
      await s.push("base", `${reg.host}/team/base:1`, creds);
      const app = await s.push("app", `${reg.host}/team/app:1`, creds);
      assert.equal(app.layers[0].how, "mounted");
      assert.ok(tokens.requests.some((r) => r.granted && r.scopes.includes("repository:team/app:pull,push")));
      assert.ok(tokens.requests.some((r) => r.granted && r.scopes.includes("repository:team/base:pull")), "the mount's source scope");
      const back = await s.pull(`${reg.host}/team/app:1`, { ...creds, name: "back" });
      assert.equal(back.configDigest, app.configDigest);
      assert.ok(tokens.requests.some((r) => r.granted && r.scopes.includes("repository:team/app:pull")));
    });
  });

  test("credentials from docker's config.json", async () => {
    const file = `${dir}/docker-config.json`;
    await fsp.writeFile(file, JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: Buffer.from("ci:s3cret").toString("base64") } } }));
    await withStore(`${dir}/s2`, async (s) => {
      const r = await s.push("base", `${reg.host}/cfg/base:1`, { ...opts, dockerConfig: file });
      assert.equal(r.layers[0].how, "uploaded");
    });
  });

  test("no credentials, or wrong ones, fail in one line naming the realm", async () => {
    await withStore(`${dir}/s3`, async (s) => {
      await failsWith(s.pull(`${reg.host}/team/app:1`, opts), /^EACCES: .*auth 'http:\/\/127\.0\.0\.1:\d+\/token': the token server wants credentials for repository:team\/app:pull .*--creds/);
      await failsWith(
        s.push("app", `${reg.host}/team/app:2`, { ...opts, creds: "ci:wrong" }),
        /^EACCES: .*auth 'http:\/\/127\.0\.0\.1:\d+\/token': the token server refused the credentials of user 'ci'/,
      );
      await failsWith(s.pull(`${reg.host}/team/app:1`, { ...opts, creds: "nocolon" }), /^EINVAL: .*USER:PASSWORD/);
      assert.equal((await s.images()).length, 2);
    });
  });
});

describe("htpasswd (Basic) auth", { skip: needRegistry }, () => {
  let dir: string;
  let reg: TestRegistry;
  before(async () => {
    dir = await tmpDir("thinstack-basic-");
    reg = await startRegistry({ htpasswd: HTPASSWD });
  });
  after(async () => {
    await reg?.stop();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  test("Basic credentials push and pull; none or wrong ones fail naming the realm", async () => {
    await withStore(`${dir}/s`, async (s) => {
      const r = await s.push("app", `${reg.host}/b/app:1`, { ...opts, creds: "ci:s3cret" });
      const back = await s.pull(`${reg.host}/b/app:1`, { ...opts, creds: { username: "ci", password: "s3cret" }, name: "back" });
      assert.equal(back.manifestDigest, r.manifestDigest);
      await failsWith(s.pull(`${reg.host}/b/app:1`, opts), /^EACCES: .*the registry \(realm 'thinstack-test'\) needs credentials/);
      await failsWith(s.pull(`${reg.host}/b/app:1`, { ...opts, creds: "ci:nope" }), /^EACCES: .*\(realm 'thinstack-test'\) refused the credentials of user 'ci'/);
    });
  });
});
