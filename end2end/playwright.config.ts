import { defineConfig, devices } from "@playwright/test";
import { ADMIN_TOKEN } from "./tests/fixtures/servers";

// Debian's Chromium: Playwright's own browser download cannot run on our machines.
const chromium = {
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
};

export default defineConfig({
  testDir: "./tests",
  globalSetup: "./global-setup.ts",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: true,
  forbidOnly: !!process.env.CI,
  retries: 0,
  // Two workers everywhere, as on CI: a run here then meets the same concurrency CI does (Playwright's default
  // would be one worker on two cores, which hid a port two specs shared).
  workers: 2,
  reporter: [["list"]],
  // `cargo leptos end-to-end` serves the app on :3000 with its defaults. A second, restricted server, built by the
  // same command, refuses WebSocket (as a proxy that blocks it would: the browser must fall back to long-polling)
  // and allows a burst of 3 messages, then one per 20 s (so that rate limiting does not depend on typing speed).
  // A third one has an admin token, for the admin page's specs, and a fast heartbeat (a silent tab is dropped
  // after 2 s), for the dead-tab spec.
  webServer: [
    {
      command:
        "../target/release/causerie --addr 127.0.0.1:3002 --site-root ../target/site --transports polling " +
        "--database ../target/e2e/restricted.db " +
        "--message-burst 3 --messages-per-second 0.05",
      url: "http://127.0.0.1:3002/",
      reuseExistingServer: false,
      stdout: "ignore",
      stderr: "pipe",
    },
    {
      command:
        "../target/release/causerie --addr 127.0.0.1:3003 --site-root ../target/site " +
        "--database ../target/e2e/admin.db " +
        "--ping-interval 1000 --ping-timeout 1000",
      env: { CAUSERIE_ADMIN_TOKEN: ADMIN_TOKEN },
      url: "http://127.0.0.1:3003/",
      reuseExistingServer: false,
      stdout: "ignore",
      stderr: "pipe",
    },
    {
      // Several nodes (issue #8): two release nodes on :3011 and :3012 sharing Postgres and Redis, nginx on :3013.
      command: "../scripts/e2e-cluster",
      url: "http://127.0.0.1:3013/",
      reuseExistingServer: false,
      stdout: "ignore",
      stderr: "pipe",
      timeout: 120_000,
      // SIGTERM, so that the script stops Postgres, Redis and nginx and removes their files.
      gracefulShutdown: { signal: "SIGTERM", timeout: 10_000 },
    },
  ],
  use: {
    baseURL: process.env.BASE_URL ?? "http://127.0.0.1:3000",
    launchOptions: chromium,
    trace: "retain-on-failure",
  },
  projects: [
    {
      name: "chromium",
      use: { ...devices["Desktop Chrome"] },
      testIgnore: /no-javascript/,
    },
    {
      // The server-rendered path: the same pages with JavaScript turned off.
      name: "no-javascript",
      use: { ...devices["Desktop Chrome"], javaScriptEnabled: false },
      testMatch: /no-javascript/,
    },
  ],
});
