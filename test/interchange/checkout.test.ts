/** Checking out layers to host directories: the tree, modes, owners, links, devices, mtimes. */
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import process from "node:process";
import { test } from "node:test";
import { applyTar } from "../../src/interchange/apply.ts";
import { checkout } from "../../src/interchange/checkout.ts";
import { importImage } from "../../src/interchange/images.ts";
import { withTmp } from "../helpers/tmp.ts";
import { describeView, hostView, image, needImages, tarOf } from "./helpers.ts";
import { MemStore, MemTree } from "./memlayers.ts";

const root = process.getuid?.() === 0;

test("busybox and alpine check out to exactly their trees: hard links, symlinks, modes, owners, mtimes", { skip: needImages }, async () => {
  for (const file of ["busybox-1.38.0-musl-amd64", "alpine-minirootfs-3.20.3-x86_64.tar.gz"]) {
    await withTmp(async (dir) => {
      const s = new MemStore();
      let top: string;
      if (file.startsWith("alpine")) {
        await s.prepare("k");
        await applyTar(s.target("k"), image(file));
        await s.commit("alpine", "k");
        top = "alpine";
      } else {
        top = (await importImage(s, s, image(file))).layers[0];
      }
      const report = await checkout(s.view(top), `${dir}/rootfs`);
      assert.deepEqual(report.skipped, []);
      let want = await describeView(s.view(top), { mtime: true });
      if (!root) want = want.map((l) => l.replace(/ \d+:\d+ /, ` ${process.getuid!()}:${process.getgid!()} `));
      assert.deepEqual(await describeView(hostView(`${dir}/rootfs`), { mtime: true }), want, file);
    });
  }
});

test("devices (when asked for) and FIFOs are made where permitted, else reported; xattrs are reported", { skip: needImages }, async () => {
  await withTmp(async (dir) => {
    const t = new MemTree();
    await applyTar(t, image("gotar-hdr-only.tar"));
    await applyTar(t, await tarOf([{ name: "cap", data: "x", xattrs: new Map([["user.a", new Uint8Array([1])]]) }]));
    const report = await checkout(t, `${dir}/out`, { devices: true });
    const st = await fsp.lstat(`${dir}/out/fifo`);
    assert.ok(st.isFIFO());
    const made = (await fsp.lstat(`${dir}/out/null`).catch(() => undefined))?.isCharacterDevice();
    assert.equal(report.skipped.filter((l) => l.includes("device")).length, made ? 0 : 2);
    if (made) assert.equal((await fsp.lstat(`${dir}/out/sda`)).rdev, 0x800);
    assert.ok(report.skipped.some((l) => l.startsWith("/cap: extended attributes user.a")));
    assert.equal((await fsp.lstat(`${dir}/out/hardlink`)).ino, (await fsp.lstat(`${dir}/out/file`)).ino);
    assert.equal(await fsp.readlink(`${dir}/out/badlink`), "missing");
  });
});

test("checkout refuses a non-empty directory", async () => {
  await withTmp(async (dir) => {
    await fsp.writeFile(`${dir}/x`, "");
    await assert.rejects(checkout(new MemTree(), dir), { code: "ENOTEMPTY" });
  });
});
