import { expect, test } from "@playwright/test";
import { type RoomPage, unique, withPeople } from "./fixtures/pages";
import { randomBytes } from "node:crypto";
import { io } from "socket.io-client";
import { request, seedMessages } from "./fixtures/seed";
import { RESTRICTED_SERVER } from "./fixtures/servers";

/** Scrolls `person`'s messages to the top until nothing older is offered, page after page. */
async function loadAllOlder(person: RoomPage): Promise<void> {
  const list = person.page.getByTestId("messages");
  await expect(async () => {
    await list.evaluate((el) => el.scrollTo({ top: 0 }));
    await expect(person.page.getByTestId("load-older")).toHaveCount(0, { timeout: 1_000 });
  }).toPass({ timeout: 20_000 });
}

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
    await loadAllOlder(bob);
    await expect(shown).toHaveText(bodies);
  });
});

test("a tab open through a long conversation shows at most 600 messages, and the rest load on scrolling up", async ({
  browser,
  baseURL,
}) => {
  test.setTimeout(120_000);
  const room = unique("long");
  await withPeople(browser, 1, async ([bob]) => {
    await bob.enter(room, "Bob");
    // 620 messages arrive live while Bob reads at the end of the room.
    const bodies = numbered("live", 620);
    await seedMessages(baseURL!, room, bodies);
    const shown = bob.page.getByTestId("messages").locator(".message .body");
    // The page followed the end: the last line is in view. Not necessarily "live 620" itself: the seeders' join
    // and leave notices come after it, dozens at once when the seeding is quick (a half-second burst of them).
    await expect(bob.message("live 620")).toHaveCount(1);
    await expect(bob.page.getByTestId("messages").locator(":scope > li").last()).toBeInViewport();
    await expect(bob.page.getByTestId("new-messages")).toHaveCount(0);
    // Past 600, the oldest went (down to the latest 500, then the later ones came): the newest, in one run to the
    // end, and the page offers the rest again.
    await expect.poll(() => shown.count()).toBeLessThanOrEqual(600);
    const count = await shown.count();
    expect(count).toBeGreaterThanOrEqual(500);
    await expect(shown).toHaveText(bodies.slice(bodies.length - count));
    await expect(bob.page.getByTestId("load-older")).toHaveCount(1);

    await loadAllOlder(bob);
    await expect(shown).toHaveText(bodies);
  });
});

test("a run of messages from one person shows their name once, also across a page loaded before it", async ({
  browser,
  baseURL,
}) => {
  const room = unique("runs");
  // Seven people, ten messages each, in turn (the last one five): the room page's first 50 start in the middle of
  // the second person's run.
  await seedMessages(baseURL!, room, numbered("run", 65), 10);
  await withPeople(browser, 1, async ([bob]) => {
    await bob.enter(room, "Bob");
    const names = bob.page.getByTestId("messages").locator(".message .from");
    const shownNames = () => names.filter({ visible: true }).allInnerTexts();
    await expect(bob.message("run 016")).toHaveCount(1);
    await expect.poll(shownNames).toEqual(["Seeder 2", "Seeder 3", "Seeder 4", "Seeder 5", "Seeder 6", "Seeder 7"]);
    await expect(bob.message("run 016").locator(".from")).toBeVisible();

    // Older pages load above: the second person's run now begins earlier, and the line that began it on the
    // first page becomes a continuation.
    await loadAllOlder(bob);
    await expect(bob.message("run 001")).toHaveCount(1);
    await expect.poll(shownNames).toEqual([1, 2, 3, 4, 5, 6, 7].map((n) => `Seeder ${n}`));
    await expect(bob.message("run 016").locator(".from")).toBeHidden();
    await expect(bob.message("run 011").locator(".from")).toBeVisible();
  });
});

test("an old message sent to the room again is not shown among the latest", async ({ browser, baseURL }) => {
  const room = unique("old-copy");
  // Ada's first message has a client id: sending it again with the same one (a retry) makes the server answer
  // with the original and send it to the room again, as it does within ten minutes.
  const ada = io(baseURL!, {
    auth: { name: "Ada", session: randomBytes(24).toString("base64url") },
    reconnection: false,
    transports: ["websocket"],
  });
  try {
    await request(ada, "join", { room });
    const first = { room, body: "the first of all", clientId: "first-1" };
    await request(ada, "send", first);
    await seedMessages(baseURL!, room, numbered("later", 60));
    await withPeople(browser, 1, async ([bob]) => {
      await bob.enter(room, "Bob");
      await expect(bob.message("later 060")).toHaveCount(1);
      await expect(bob.message("the first of all")).toHaveCount(0);

      // Carol hears the room as Bob does: what she gets shows that the copy was sent.
      const carol = io(baseURL!, {
        auth: { name: "Carol", session: randomBytes(24).toString("base64url") },
        reconnection: false,
        transports: ["websocket"],
      });
      const heard: string[] = [];
      carol.on("message", (message: { body: string }) => heard.push(message.body));
      try {
        await request(carol, "join", { room });
        await request(ada, "send", first);
        // Ada's connection is in order, and so are the others': once her next message is in, the copy came before.
        await request(ada, "send", { room, body: "after the copy" });
        await expect.poll(() => heard).toEqual(["the first of all", "after the copy"]);
      } finally {
        carol.close();
      }
      await expect(bob.message("after the copy")).toHaveCount(1);
      await expect(bob.message("the first of all"), "dropped: older than everything shown").toHaveCount(0);

      // It comes in its place, once, with the older pages.
      await loadAllOlder(bob);
      await expect(bob.message("the first of all")).toHaveCount(1);
      await expect(bob.page.getByTestId("messages").locator(".message .body").first()).toHaveText("the first of all");
    });
  } finally {
    ada.close();
  }
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
