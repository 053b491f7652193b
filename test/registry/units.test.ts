/**
 * The registry code's parts that need no registry: references (docker's normalisation),
 * WWW-Authenticate challenges, docker config.json credentials, platforms.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fsp from "node:fs/promises";
import { test } from "node:test";
import { parseChallenges } from "../../src/registry/challenge.ts";
import { dockerCredentials, parseCredentials } from "../../src/registry/credentials.ts";
import { formatPlatform, hostPlatform, parsePlatform, platformMatches } from "../../src/registry/platform.ts";
import { endpointOf, formatReference, parseReference, repositoryOf } from "../../src/registry/reference.ts";
import { withTmp } from "../helpers/tmp.ts";

test("references normalise as docker's do", () => {
  const cases: [string, string, string, string | undefined, string | undefined][] = [
    ["busybox", "docker.io", "library/busybox", "latest", undefined],
    ["busybox:1.36", "docker.io", "library/busybox", "1.36", undefined],
    ["team/app", "docker.io", "team/app", "latest", undefined],
    ["docker.io/library/busybox:1", "docker.io", "library/busybox", "1", undefined],
    ["index.docker.io/team/app", "docker.io", "team/app", "latest", undefined],
    ["localhost/app", "localhost", "app", "latest", undefined],
    ["localhost:5000/a/b/c:v1.2-x_y", "localhost:5000", "a/b/c", "v1.2-x_y", undefined],
    ["127.0.0.1:5000/app@sha256:" + "a".repeat(64), "127.0.0.1:5000", "app", undefined, "sha256:" + "a".repeat(64)],
    ["ghcr.io/o/r:t@sha256:" + "b".repeat(64), "ghcr.io", "o/r", "t", "sha256:" + "b".repeat(64)],
    ["[::1]:5000/app", "[::1]:5000", "app", "latest", undefined],
    ["my_registry/x", "docker.io", "my_registry/x", "latest", undefined],
  ];
  for (const [text, registry, repository, tag, digest] of cases) {
    const r = parseReference(text);
    assert.deepEqual([r.registry, r.repository, r.tag, r.digest], [registry, repository, tag, digest], text);
  }
  assert.equal(endpointOf(parseReference("busybox")), "registry-1.docker.io");
  assert.equal(endpointOf(parseReference("127.0.0.1:5000/x")), "127.0.0.1:5000");
  assert.equal(formatReference(parseReference("docker.io/library/busybox")), "busybox:latest");
  assert.equal(formatReference(parseReference("docker.io/team/app:2")), "team/app:2");
  assert.equal(formatReference(parseReference("127.0.0.1:5000/x:t")), "127.0.0.1:5000/x:t");
  assert.equal(repositoryOf(parseReference("busybox")), "docker.io/library/busybox");
  for (const bad of ["", "x/UPPER", "a//b", "x:", "x:-tag", "x@sha256:abc", "host:port/x", "a/-b", "x:" + "t".repeat(129)]) {
    assert.throws(() => parseReference(bad), (e: Error) => /^EINVAL: /.test(e.message) && !e.message.includes("\n"), bad);
  }
});

test("WWW-Authenticate challenges parse, quoted and not, one or several", () => {
  assert.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), [
    { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/busybox:pull" } },
  ]);
  assert.deepEqual(parseChallenges('Basic realm="Registry Realm"'), [{ scheme: "basic", params: { realm: "Registry Realm" } }]);
  assert.deepEqual(parseChallenges('Basic realm=x, Bearer realm="r",error="insufficient_scope",scope="a b"'), [
    { scheme: "basic", params: { realm: "x" } },
    { scheme: "bearer", params: { realm: "r", error: "insufficient_scope", scope: "a b" } },
  ]);
  assert.deepEqual(parseChallenges('Bearer realm="with \\"quote\\""'), [{ scheme: "bearer", params: { realm: 'with "quote"' } }]);
  assert.deepEqual(parseChallenges(null), []);
});

test("credentials: user:pass, and docker's config.json auths by host", async () => {
  assert.deepEqual(parseCredentials("u:p:q"), { username: "u", password: "p:q" });
  assert.throws(() => parseCredentials("nocolon"), /EINVAL: .*USER:PASSWORD/);
  assert.throws(() => parseCredentials(":p"), /EINVAL/);
  await withTmp(async (dir) => {
    const file = `${dir}/config.json`;
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    await fsp.writeFile(file, JSON.stringify({
      auths: {
        "https://index.docker.io/v1/": { auth: b64("hub:pw") },
        "https://reg.example:5000": { auth: b64("ex:pw2") },
        "other.example": { username: "o", password: "p" },
        "broken.example": { auth: "!!!" },
      },
    }));
    assert.deepEqual(await dockerCredentials("docker.io", file), { username: "hub", password: "pw" });
    assert.deepEqual(await dockerCredentials("reg.example:5000", file), { username: "ex", password: "pw2" });
    assert.deepEqual(await dockerCredentials("other.example", file), { username: "o", password: "p" });
    assert.equal(await dockerCredentials("reg.example", file), undefined);
    await assert.rejects(dockerCredentials("broken.example", file), /^Error: EINVAL: .*not base64 of USER:PASSWORD/);
    assert.equal(await dockerCredentials("docker.io", `${dir}/absent.json`), undefined);
    await fsp.writeFile(file, "{ nope");
    await assert.rejects(dockerCredentials("docker.io", file), /not valid JSON/);
  });
});

test("platforms: the host's, parsing, matching with arm64's implied v8", () => {
  const host = hostPlatform();
  assert.equal(host.os, "linux");
  assert.ok(host.architecture && !["x64", "ia32"].includes(host.architecture), "in Go's spelling");
  assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64", variant: "v8" });
  assert.throws(() => parsePlatform("linux"), /EINVAL: .*os\/architecture/);
  assert.equal(formatPlatform({ os: "linux", architecture: "arm", variant: "v7" }), "linux/arm/v7");
  const arm64 = { os: "linux", architecture: "arm64" };
  assert.ok(platformMatches(arm64, { os: "linux", architecture: "arm64", variant: "v8" }));
  assert.ok(platformMatches({ ...arm64, variant: "v8" }, arm64));
  assert.ok(!platformMatches({ os: "linux", architecture: "arm", variant: "v6" }, { os: "linux", architecture: "arm", variant: "v7" }));
  assert.ok(!platformMatches({ os: "windows", architecture: "amd64" }, { os: "linux", architecture: "amd64" }));
  assert.ok(!platformMatches(undefined, arm64));
});
