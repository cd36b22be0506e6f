import { expect, test } from "@playwright/test";
import { unique, withPeople } from "./fixtures/pages";
import { seedMessages } from "./fixtures/seed";
import { RESTRICTED_SERVER } from "./fixtures/servers";

/** `count` message bodies that sort in the order they are sent: "<prefix> 001", "<prefix> 002", … */
function numbered(prefix: string, count: number, from = 1): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix} ${String(from + i).padStart(3, "0")}`);
}

test("the room opens on its latest messages and scrolling up loads older pages in place", async ({
  browser,
  baseURL,
}) => {
  const room = unique("history");
  const bodies = numbered("old message", 120);
  await seedMessages(baseURL!, room, bodies);

  await withPeople(browser, 1, async ([bob]) => {
    await bob.page.setViewportSize({ width: 900, height: 500 });
    await bob.enter(room, "Bob");
    const shown = bob.page.getByTestId("messages").locator(".message .body");
    // The server rendered the latest page, and the view starts at its end.
    await expect(shown).toHaveText(bodies.slice(70));
    await expect(bob.message("old message 120")).toBeInViewport();

    // Near the top, the page before loads by itself (one page: as many as fit in the server's 4 KiB), and the
    // reader stays where they were.
    const list = bob.page.getByTestId("messages");
    await list.evaluate((el) => el.scrollTo({ top: 0 }));
    await expect.poll(() => shown.count()).toBeGreaterThan(50);
    const afterOnePage = await shown.count();
    expect(afterOnePage, "one page came, not everything").toBeLessThan(bodies.length);
    await expect(shown).toHaveText(bodies.slice(bodies.length - afterOnePage));
    await expect(bob.message("old message 071")).toBeInViewport();

    // Page by page to the first message: then there is nothing older to offer.
    await expect(async () => {
      await list.evaluate((el) => el.scrollTo({ top: 0 }));
      await expect(bob.page.getByTestId("load-older")).toHaveCount(0, { timeout: 1_000 });
    }).toPass({ timeout: 20_000 });
    await expect(shown).toHaveText(bodies);
  });
});

test.describe("after more than a join's worth of missed messages", () => {
  // Long-polling only: going offline fails the next request at once, so the page knows it is offline.
  test.use({ baseURL: RESTRICTED_SERVER });

  test("a reader who was away gets every missed message once and in order", async ({ browser, baseURL }) => {
    const room = unique("catch-up");
    await withPeople(browser, 1, async ([bob]) => {
      await bob.enter(room, "Bob");
      await seedMessages(baseURL!, room, ["before the break"], 3);
      await expect(bob.message("before the break")).toHaveCount(1);

      // Offline, a long poll may hang rather than fail; Bob's own message fails its request at once, and the
      // page knows it is offline.
      await bob.page.context().setOffline(true);
      await bob.say("back soon");
      await expect(bob.status).not.toHaveAttribute("data-state", "connected");
      // The restricted server lets each person send 3 at once: many people send 130 messages meanwhile.
      const missed = numbered("missed", 130);
      await seedMessages(baseURL!, room, missed, 3);
      await bob.page.context().setOffline(false);

      // Everything missed, in order, then Bob's message, sent once he had caught up.
      const shown = bob.page.getByTestId("messages").locator(".message .body");
      await expect(shown).toHaveText(["before the break", ...missed, "back soon"], { timeout: 20_000 });
    });
  });
});
