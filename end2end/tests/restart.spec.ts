import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { expect, test } from "@playwright/test";
import { type RoomPage, unique, withPeople } from "./fixtures/pages";
import { seedMessages } from "./fixtures/seed";

/**
 * A test's server of its own on a database of its own, which it can crash and start again without disturbing the
 * other specs. Each test names its own port: the tests of this file run at once on CI's two workers, and a server
 * that comes back must come back where the page left it.
 */
class Server {
  readonly base: string;
  readonly database = `../target/e2e/restart-${unique("db")}.db`;
  private process: ChildProcess;

  constructor(private readonly port: number) {
    this.base = `http://127.0.0.1:${port}`;
    this.process = this.spawn();
  }

  /** Starts the server again on the same database (with `options`), and resolves once it answers. */
  async start(...options: string[]): Promise<void> {
    this.process = this.spawn(...options);
    await this.answering();
  }

  /** Kills the server at once, as a crash would, and waits until `person`'s page has noticed. */
  async crash(person: RoomPage): Promise<void> {
    this.process.kill("SIGKILL");
    await once(this.process, "exit");
    await expect(person.status).not.toHaveAttribute("data-state", "connected");
  }

  /** Resolves once the server answers HTTP. */
  async answering(): Promise<void> {
    await expect
      .poll(async () => (await fetch(this.base).catch(() => null))?.ok ?? false, { timeout: 30_000 })
      .toBe(true);
  }

  /** Stops the server and removes its database. */
  remove(): void {
    this.process.kill("SIGKILL");
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${this.database}${suffix}`, { force: true });
  }

  private spawn(...options: string[]): ChildProcess {
    return spawn(
      "../target/release/causerie",
      ["--addr", `127.0.0.1:${this.port}`, "--site-root", "../target/site", "--database", this.database, ...options],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
  }
}

/** Runs `body` with a server of its own that answers, and removes it after. */
async function withServer(port: number, body: (server: Server) => Promise<void>): Promise<void> {
  const server = new Server(port);
  try {
    await server.answering();
    await body(server);
  } finally {
    server.remove();
  }
}

function bodies(person: RoomPage) {
  return person.page.getByTestId("messages").locator(".message .body");
}

test("the server killed with SIGKILL and restarted mid-conversation: nothing lost, nothing twice", async ({
  browser,
}) => {
  test.setTimeout(90_000);
  await withServer(3004, async (server) => {
    const room = unique("restart");
    await withPeople(browser, 2, async ([ada, bob]) => {
      await ada.enter(room, "Ada", server.base);
      await bob.enter(room, "Bob", server.base);
      await ada.say("one");
      await expect(bob.message("one")).toHaveCount(1);
      await bob.say("two");
      await expect(ada.message("two")).toHaveCount(1);

      // No shutdown, no flush: the process is gone at once, as in a crash or an OOM kill.
      await server.crash(ada);
      await expect(bob.status).not.toHaveAttribute("data-state", "connected");
      await ada.say("written while the server was down");
      await expect(ada.message("written while the server was down")).toHaveAttribute("data-delivery", "sending");

      await server.start();
      // Both reconnect on their own, resume after what they have, and Ada's pending message goes out once.
      const expected = ["one", "two", "written while the server was down"];
      await expect(bodies(bob)).toHaveText(expected, { timeout: 30_000 });
      await expect(bodies(ada)).toHaveText(expected, { timeout: 30_000 });
      await expect(ada.message("written while the server was down")).not.toHaveAttribute("data-delivery", /.+/);

      await bob.say("after the restart");
      await expect(bodies(ada)).toHaveText([...expected, "after the restart"]);

      // A fresh page gets the same conversation from the database, once each.
      await bob.page.reload();
      await expect(bodies(bob)).toHaveText([...expected, "after the restart"]);
    });
  });
});

test("a page that had upgraded comes back over WebSocket at once after a restart, without polling", async ({
  browser,
}) => {
  test.setTimeout(60_000);
  await withServer(3005, async (server) => {
    await withPeople(browser, 1, async ([ada]) => {
      await ada.enter(unique("return"), "Ada", server.base);
      await expect(ada.status).toContainText("websocket");
      // Only polls that got an answer count: while the server is down, each attempt also tries long-polling
      // (which is how the page tells a server that is down from a WebSocket that is blocked), and fails.
      const polls: string[] = [];
      ada.page.on("requestfinished", (request) => {
        if (request.url().includes("transport=polling")) polls.push(request.url());
      });
      await server.crash(ada);
      await server.start();
      await expect(ada.status).toHaveAttribute("data-state", "connected", { timeout: 30_000 });
      await expect(ada.status).toContainText("websocket");
      await ada.say("back at once");
      await expect(ada.message("back at once")).not.toHaveAttribute("data-delivery", /.+/);
      expect(polls).toEqual([]);
    });
  });
});

test("a page whose server comes back without WebSocket falls back to long-polling and chats", async ({ browser }) => {
  test.setTimeout(60_000);
  await withServer(3006, async (server) => {
    await withPeople(browser, 1, async ([ada]) => {
      await ada.enter(unique("fallback"), "Ada", server.base);
      await expect(ada.status).toContainText("websocket");
      // A WebSocket that starts a connection has no `sid`; an upgrade's names the polling session it upgrades.
      let newWebSockets = 0;
      ada.page.on("websocket", (ws) => {
        if (!ws.url().includes("sid=")) newWebSockets += 1;
      });
      await server.crash(ada);
      // As if a proxy that cuts WebSockets now stood in the way: the remembered WebSocket fails.
      await server.start("--transports", "polling");
      await expect(ada.status).toHaveText("Connected · polling", { timeout: 30_000 });
      // The remembered WebSocket was tried first.
      expect(newWebSockets).toBeGreaterThan(0);
      await ada.say("over long-polling now");
      await expect(ada.message("over long-polling now")).not.toHaveAttribute("data-delivery", /.+/);
      await expect(ada.status).toHaveText("Connected · polling");
    });
  });
});

test("a page that missed more than its reading budget allows at once catches up on all of it, in order", async ({
  browser,
}) => {
  test.setTimeout(120_000);
  await withServer(3007, async (server) => {
    const room = unique("catch-up");
    await withPeople(browser, 1, async ([ada]) => {
      await ada.enter(room, "Ada", server.base);
      await ada.say("before");
      await expect(ada.message("before")).not.toHaveAttribute("data-delivery", /.+/);
      // Every answer the page gets, over WebSocket or long-polling, to see the server refuse a read for the budget.
      const answers: string[] = [];
      ada.page.on("websocket", (ws) => ws.on("framereceived", ({ payload }) => answers.push(String(payload))));
      ada.page.on("response", async (response) => {
        if (response.url().includes("transport=polling")) answers.push(await response.text().catch(() => ""));
      });

      // Ada is away (her network down) while the room fills with long messages: each read of history carries
      // one. The server comes back with a reading budget of 5 at once and 2 a second, so catching up on 30 of
      // them runs it out however slow the page is (it would have to wait half a second between reads not to).
      await server.crash(ada);
      await ada.page.context().setOffline(true);
      await server.start("--read-burst", "5", "--reads-per-second", "2");
      const missed = Array.from({ length: 30 }, (_, i) => `missed ${String(i + 1).padStart(3, "0")} ${"x".repeat(1980)}`);
      await seedMessages(server.base, room, missed);
      await ada.page.context().setOffline(false);

      // Back, she gets every one of them, in order, after what she had, and no error.
      const expected = ["before", ...missed.map((body) => body.slice(0, 11))];
      await expect
        .poll(async () => (await bodies(ada).allTextContents()).map((body) => body.slice(0, 11)), { timeout: 60_000 })
        .toEqual(expected.map((body) => body.slice(0, 11)));
      await expect(ada.page.getByRole("alert")).toHaveCount(0);
      expect(answers.some((answer) => answer.includes("rate_limited")), "the budget ran out on the way").toBe(true);
    });
  });
});
