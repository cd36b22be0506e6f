import { expect, test } from "@playwright/test";
import { JoinPage } from "./fixtures/pages";

// The release build is precompressed (`cargo leptos end-to-end --release --precompress`, as `scripts/run` builds
// it): the server sends each static file's brotli or gzip twin to a client that accepts it.

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

test("a client that takes only gzip gets gzip, one that takes nothing gets the file, and all three are the same bundle", async ({
  request,
}) => {
  const fetchWith = async (acceptEncoding: string) => {
    const response = await request.get(BUNDLE, { headers: { "accept-encoding": acceptEncoding } });
    expect(response.status()).toBe(200);
    expect(response.headers()["vary"]).toContain("accept-encoding");
    // Playwright decodes the body: what is compared is what each client ends up with.
    return { encoding: response.headers()["content-encoding"], body: await response.body() };
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
});
