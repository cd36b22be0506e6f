import { gzipSync } from "node:zlib";
import { expect, test } from "@playwright/test";
import { JoinPage } from "./fixtures/pages";

// The release build is precompressed as `scripts/run` builds it (`cargo leptos end-to-end --release --precompress`,
// whose end2end-cmd, scripts/browser-tests, rewrites the gzip twins with scripts/regzip-site): the server sends each
// static file's brotli or gzip twin to a client that accepts it.

const BUNDLE = "/pkg/causerie.wasm";

test("the browser downloads the WASM bundle brotli-compressed, at under half its size", async ({ page }) => {
  const bundle = page.waitForResponse((response) => new URL(response.url()).pathname === BUNDLE);
  await new JoinPage(page).open();
  const response = await bundle;
  const headers = response.headers();
  expect(headers["content-encoding"]).toBe("br");
  expect(headers["content-type"]).toBe("application/wasm");
  expect(headers["vary"]).toContain("accept-encoding");
  const sent = (await response.request().sizes()).responseBodySize;
  const bundleBytes = (await response.body()).length;
  expect(sent).toBeGreaterThan(0);
  expect(sent).toBeLessThan(bundleBytes / 2);
});

test("a client that takes only gzip gets the best gzip, one that takes nothing gets the file, and all three are the same bundle", async ({
  request,
}) => {
  const fetchWith = async (acceptEncoding: string) => {
    const response = await request.get(BUNDLE, { headers: { "accept-encoding": acceptEncoding } });
    expect(response.status()).toBe(200);
    expect(response.headers()["vary"]).toContain("accept-encoding");
    // Playwright decodes the body: what is compared is what each client ends up with.
    const sent = Number(response.headers()["content-length"]);
    return { encoding: response.headers()["content-encoding"], sent, body: await response.body() };
  };
  const plain = await fetchWith("identity");
  const gzip = await fetchWith("gzip");
  const brotli = await fetchWith("br");
  expect(plain.encoding).toBeUndefined();
  expect(gzip.encoding).toBe("gzip");
  expect(brotli.encoding).toBe("br");
  // A twin left over from an older build would hydrate a page the server did not render.
  expect(plain.body.subarray(0, 4).toString("latin1")).toBe("\0asm");
  expect(gzip.body.equals(plain.body)).toBe(true);
  expect(brotli.body.equals(plain.body)).toBe(true);
  // Browsers on plain HTTP offer gzip only: its twin is as small as the best gzip level makes it (cargo-leptos'
  // own, left as it is, is 17% larger).
  expect(gzip.sent).toBeLessThanOrEqual(gzipSync(plain.body, { level: 9 }).length * 1.02);
  expect(brotli.sent).toBeLessThan(gzip.sent);
});
