import { expect, type Route, test } from "@playwright/test";
import { unique, withPeople } from "./fixtures/pages";
import { seedMessages } from "./fixtures/seed";
import { RESTRICTED_SERVER } from "./fixtures/servers";

// Long-polling only: every packet the page sends is an HTTP request that the test can see and hold back.
test.use({ baseURL: RESTRICTED_SERVER });

test("leaving a room while its missed messages are still loading leaves the rest of the app working", async ({
  browser,
}) => {
  test.setTimeout(90_000);
  const room = unique("leaving");
  await withPeople(browser, 2, async ([ada, bob]) => {
    // Every request of Ada's page to the server goes through the test, which can cut her network: the polls are
    // fetched here, so that the one in flight can be cut too.
    let away = false;
    let heldHistory = 0;
    const polls = new Set<Route>();
    await ada.page.route("**/socket.io/**", async (route) => {
      const request = route.request();
      if (away) return route.abort("connectionreset");
      // Once she is back, the first read of what she missed never gets there: it stays unanswered, so the page
      // is still catching up when she leaves.
      if (request.method() === "POST" && request.postData()?.includes('"history"')) {
        heldHistory += 1;
        return route.fulfill({ status: 200, contentType: "text/html", body: "ok" });
      }
      if (request.method() === "GET") {
        polls.add(route);
        const response = await route.fetch({ timeout: 60_000 }).catch(() => null);
        if (!polls.delete(route)) return; // cut meanwhile
        return response ? route.fulfill({ response }) : route.abort();
      }
      return route.continue();
    });
    await ada.enter(room, "Ada");
    // Something shown, so that her rejoin asks for what came after it.
    await ada.say("before");
    await expect(ada.message("before")).not.toHaveAttribute("data-delivery", /.+/);

    // Her network goes: the poll in flight is cut, and every request after it fails, so her page is offline.
    away = true;
    for (const poll of polls) await poll.abort("connectionreset");
    polls.clear();
    await expect(ada.status).not.toHaveAttribute("data-state", "connected");

    // Meanwhile the room gets more than a join brings back at once (4 KB of messages).
    const missed = Array.from({ length: 60 }, (_, i) => `missed ${i + 1} ${"x".repeat(90)}`);
    await seedMessages(RESTRICTED_SERVER, room, missed, 3);

    // Back online: she rejoins, and the page asks for the rest of what she missed.
    away = false;
    await expect.poll(() => heldHistory, { timeout: 30_000 }).toBe(1);

    // She goes back to the join form while that read is still out. The room's connection closes with it.
    await ada.page.locator("a.home").click();
    await expect(ada.page).toHaveURL(/\/$/);

    // The join form is still alive: its list of active rooms follows Bob into a room of his, live.
    const elsewhere = unique("elsewhere");
    const entry = ada.page.locator(`[data-testid=lobby-room][data-room="${elsewhere}"]`);
    await bob.enter(elsewhere, "Bob");
    await expect(entry).toContainText("1 person online");
    // (withPeople then checks that neither page threw: a panic in the WASM shows as an uncaught error.)
  });
});
