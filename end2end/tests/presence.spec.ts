import { randomBytes } from "node:crypto";
import { expect, test } from "@playwright/test";
import { io, type Socket } from "socket.io-client";
import { JoinPage, RoomPage, unique, waitForHydration, withPeople } from "./fixtures/pages";
import { request } from "./fixtures/seed";

test("a name in use is refused on the form, and the same person's other tab is let in", async ({ browser }) => {
  const room = unique("names");
  await withPeople(browser, 2, async ([ada, impostor]) => {
    await ada.enter(room, "Ada");

    // Someone else typing the same name (in another case) is sent back to the form with the reason.
    const form = new JoinPage(impostor.page);
    await form.open();
    await form.join("ADA", room);
    await expect(form.error("Name in use")).toBeVisible();
    await expect(form.name).toHaveValue("ADA");
    // Opening the room's address directly does not get around it.
    await impostor.page.goto(`/r/${room}?name=Ada`);
    await expect(form.error("Name in use")).toBeVisible();

    // Ada's second tab shares her session (the cookie): it is let in, and she is one member.
    const secondTab = new RoomPage(await ada.page.context().newPage());
    await secondTab.enter(room, "Ada");
    await expect(secondTab.members).toHaveCount(1);
    await expect(secondTab.member("Ada")).toContainText("(you)");

    // A reload keeps the identity.
    await ada.page.reload();
    await waitForHydration(ada.page);
    await expect(ada.send).toBeEnabled();
    await expect(ada.member("Ada")).toContainText("(you)");
  });
});

test("others see who joins and leaves, and two tabs leave only when the last one goes", async ({ browser }) => {
  const room = unique("presence");
  await withPeople(browser, 3, async ([bob, ada, carol]) => {
    await bob.enter(room, "Bob");
    await ada.enter(room, "Ada");
    await expect(bob.notice("Ada joined")).toHaveCount(1);
    await expect(bob.member("Ada")).toHaveAttribute("data-online", "true");

    const adaTab2 = new RoomPage(await ada.page.context().newPage());
    await adaTab2.enter(room, "Ada");
    await ada.page.close();
    // Carol's arrival is announced after both of those: had either been announced, Bob would see it first.
    await carol.enter(room, "Carol");
    await expect(bob.notice("Carol joined")).toHaveCount(1);
    await expect(bob.notices).toHaveText(["Ada joined", "Carol joined"]);
    await expect(bob.member("Ada")).toHaveAttribute("data-online", "true");

    await adaTab2.page.close();
    await expect(bob.notice("Ada left")).toHaveCount(1);
    await expect(bob.member("Ada")).toHaveAttribute("data-online", "false");
    await expect(bob.member("Carol")).toHaveAttribute("data-online", "true");
    // Said in words too, for screen readers (the dots are hidden from them).
    await expect(bob.member("Ada")).toContainText(", offline");
    await expect(bob.member("Carol")).toContainText(", online");
    // "Ada left" implies both tabs are gone; had the first tab's close been announced as well, that notice would
    // have reached Bob before Carol's next message.
    await carol.say("marker");
    await expect(bob.message("marker")).toHaveCount(1);
    await expect(bob.notices).toHaveText(["Ada joined", "Carol joined", "Ada left"]);
  });
});

test("typing shows who is typing, several at once, and the notice expires on its own", async ({ browser }) => {
  const room = unique("typing");
  await withPeople(browser, 3, async ([bob, ada, carol]) => {
    await bob.enter(room, "Bob");
    await ada.enter(room, "Ada");
    await carol.enter(room, "Carol");

    // Both keep typing while the notices are checked, as people do: the notices never depend on a race with
    // their expiry.
    const typing = [
      ada.composer.pressSequentially("Hello there, just a moment please", { delay: 150 }),
      carol.composer.pressSequentially("Hi! I was about to say the same", { delay: 150 }),
    ];
    await expect(bob.typing).toHaveText("Ada and Carol are typing…");
    // The typist does not see herself typing.
    await expect(ada.typing).toHaveText("Carol is typing…");
    await Promise.all(typing);
    // Nobody sends: the notice goes away by itself, a few seconds later.
    await expect(bob.typing).toHaveText("", { timeout: 15_000 });
  });
});

test("a typing notice still goes away when the reader's system clock is set back meanwhile", async ({ browser }) => {
  const room = unique("clock");
  await withPeople(browser, 2, async ([bob, ada]) => {
    await bob.enter(room, "Bob");
    await ada.enter(room, "Ada");
    await ada.composer.pressSequentially("Hm");
    await expect(bob.typing).toHaveText("Ada is typing…");
    // Bob's computer sets its clock back an hour (as a time sync can): the page's wall clock jumps, and a notice
    // timed by it would stay for that hour.
    await bob.page.evaluate(() => {
      const wall = Date.now.bind(Date);
      Date.now = () => wall() - 3_600_000;
    });
    await expect(bob.typing).toHaveText("", { timeout: 15_000 });
  });
});

test("long names without spaces wrap in the header, the member list and on messages instead of widening the page", async ({
  browser,
}) => {
  // The longest a room name and a display name can be, without a space or a hyphen to break at.
  const room = ("w".repeat(32) + unique("x").replace("-", "")).slice(-32);
  const name = "W".repeat(32);
  await withPeople(browser, 1, async ([ada]) => {
    await ada.page.setViewportSize({ width: 360, height: 700 });
    await ada.enter(room, name);
    await ada.say("hello");
    await expect(ada.message("hello")).not.toHaveClass(/pending/);

    const width = ada.page.viewportSize()!.width;
    const page = await ada.page.evaluate(() => document.documentElement.scrollWidth);
    expect(page, "the page is no wider than the window").toBeLessThanOrEqual(width);
    const header = [ada.heading, ada.page.getByTestId("my-name")];
    for (const element of [...header, ada.member(name).locator(".name"), ada.message("hello").locator(".from")]) {
      const box = await element.boundingBox();
      expect(box, "the name is shown").not.toBeNull();
      expect(box!.x + box!.width, "the name ends within the window").toBeLessThanOrEqual(width);
      const line = await element.evaluate((el) => {
        const style = getComputedStyle(el);
        // "normal" is about 1.2 times the font size.
        return parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);
      });
      expect(box!.height, "the name wraps onto more than one line").toBeGreaterThan(1.5 * line);
    }
  });
});

test("a room of more people than one join lists shows all of them, and who leaves goes offline", async ({
  browser,
  baseURL,
}) => {
  const room = unique("crowd");
  // More than a join lists (32): the page loads the rest of the list page by page.
  const crowd: Socket[] = [];
  try {
    for (let i = 0; i < 45; i++) {
      const socket = io(baseURL!, {
        auth: { name: `Person ${String(i).padStart(2, "0")}`, session: randomBytes(24).toString("base64url") },
        reconnection: false,
        transports: ["websocket"],
      });
      crowd.push(socket);
      await request(socket, "join", { room });
    }
    await withPeople(browser, 1, async ([ada]) => {
      await ada.enter(room, "Ada");
      await expect(ada.members).toHaveCount(46);
      await expect(ada.page.locator('[data-testid="member"][data-online="true"]')).toHaveCount(46);
      await expect(ada.page.getByTestId("online-count")).toHaveText(/· 46 online$/);
      crowd[44].close();
      await expect(ada.member("Person 44")).toHaveAttribute("data-online", "false");
      await expect(ada.page.getByTestId("online-count")).toHaveText(/· 45 online$/);
      await expect(ada.member("Person 00")).toHaveAttribute("data-online", "true");
    });
  } finally {
    for (const socket of crowd) socket.close();
  }
});
