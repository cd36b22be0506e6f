import { expect, test } from "@playwright/test";
import { unique, withPeople } from "./fixtures/pages";
import { seedMessages } from "./fixtures/seed";
import { RESTRICTED_SERVER } from "./fixtures/servers";

test("the conversation follows new messages only when the reader is at the bottom", async ({ browser }) => {
  const room = unique("scroll");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await bob.page.setViewportSize({ width: 900, height: 420 });
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");
    const list = bob.page.getByTestId("messages");

    // Enough tall messages to overflow Bob's short window many times; he is at the bottom, so he follows them.
    const tall = "\n.\n.\n.\n.";
    for (let i = 1; i <= 8; i++) {
      await ada.say(`line ${i}${tall}`);
      await expect(ada.message(`line ${i}`)).toHaveCount(1);
    }
    await expect(bob.message("line 8")).toBeInViewport();
    expect(await list.evaluate((el) => el.scrollHeight > 2 * el.clientHeight)).toBe(true);

    // Scrolled up to read: a new message does not move the view; a button offers to jump.
    await list.evaluate((el) => el.scrollTo({ top: 0 }));
    await expect(bob.message("line 1")).toBeInViewport();
    await ada.say(`line 9${tall}`);
    const jump = bob.page.getByTestId("new-messages");
    await expect(jump).toBeVisible();
    await expect(bob.message("line 1")).toBeInViewport();
    await expect(bob.message("line 9")).not.toBeInViewport();

    await jump.click();
    await expect(bob.message("line 9")).toBeInViewport();
    await expect(jump).toBeHidden();
  });
});

test.describe("on a connection that drops", () => {
  // Long-polling only: going offline fails the next request at once, so what Bob writes stays on its way.
  test.use({ baseURL: RESTRICTED_SERVER });

  test("what the reader writes is followed at once, even while it waits to be sent", async ({ browser, baseURL }) => {
    const room = unique("own-line");
    const tall = "\n.\n.\n.\n.";
    // The restricted server lets each person send 3 at once.
    await seedMessages(baseURL!, room, Array.from({ length: 12 }, (_, i) => `seeded ${String(i + 1).padStart(2, "0")}${tall}`), 3);
    await withPeople(browser, 1, async ([bob]) => {
      await bob.page.setViewportSize({ width: 900, height: 420 });
      await bob.enter(room, "Bob");
      const list = bob.page.getByTestId("messages");
      await list.evaluate((el) => el.scrollTo({ top: 0 }));
      await expect(bob.message("seeded 01")).toBeInViewport();

      await bob.page.context().setOffline(true);
      await bob.say("my own line");
      const mine = bob.message("my own line");
      await expect(mine).toHaveAttribute("data-delivery", "sending");
      await expect(mine).toBeInViewport();
      await expect(bob.message("seeded 01")).not.toBeInViewport();

      await bob.page.context().setOffline(false);
      await expect(mine).not.toHaveClass(/pending/);
      await expect(mine).toBeInViewport();
    });
  });
});
