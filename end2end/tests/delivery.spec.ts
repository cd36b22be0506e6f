import { randomBytes } from "node:crypto";
import { type BrowserContext, expect, test } from "@playwright/test";
import { io } from "socket.io-client";
import { RoomPage, unique, waitForHydration, withPeople } from "./fixtures/pages";
import { request } from "./fixtures/seed";
import { RESTRICTED_SERVER } from "./fixtures/servers";

// Long-polling only: going offline fails the next request at once, so the page knows it is offline.
test.use({ baseURL: RESTRICTED_SERVER });

test("a message written offline shows as sending and is delivered once when the browser is back", async ({
  browser,
}) => {
  const room = unique("offline");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");

    // The page is not told: the message goes into a dead network, and the client finds out on its own.
    await ada.page.context().setOffline(true);
    await ada.say("written on the train");
    await expect(ada.message("written on the train")).toHaveAttribute("data-delivery", "sending");
    await expect(ada.message("written on the train")).toContainText("Will be sent when the connection is back");
    // The button queues as Enter does.
    await ada.composer.fill("and clicked");
    await ada.send.click();
    await expect(ada.message("and clicked")).toHaveAttribute("data-delivery", "sending");

    await ada.page.context().setOffline(false);
    await expect(bob.message("written on the train")).toHaveCount(1);
    await expect(bob.message("and clicked")).toHaveCount(1);
    await expect(ada.message("written on the train")).not.toHaveAttribute("data-delivery", /.+/);
    await expect(ada.message("written on the train")).toHaveCount(1);
    // Delivered once: a later message follows it, and there is still one copy everywhere.
    await bob.say("welcome back");
    await expect(ada.message("welcome back")).toHaveCount(1);
    await expect(bob.message("written on the train")).toHaveCount(1);
  });
});

test("a message still pending when the page is reloaded is sent after the reload", async ({ browser }) => {
  const room = unique("reload");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");

    await ada.page.context().setOffline(true);
    await ada.say("survives a reload");
    await expect(ada.message("survives a reload")).toHaveAttribute("data-delivery", "sending");

    // Close this page while offline and open the room again once online: the browser's storage kept it.
    const context = ada.page.context();
    await ada.page.close();
    await context.setOffline(false);
    const again = await visitAgain(context, room);
    await expect(bob.message("survives a reload")).toHaveCount(1);
    await expect(again.message("survives a reload")).toHaveCount(1);
    await expect(again.message("survives a reload")).not.toHaveAttribute("data-delivery", /.+/);
  });
});

test("messages written offline in two tabs of a room are all kept for the next visit", async ({ browser }) => {
  const room = unique("two-tabs");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");
    const context = ada.page.context();
    const secondTab = new RoomPage(await context.newPage());
    await secondTab.enter(room, "Ada");

    // Both tabs share the browser's storage: the second one's write must not drop the first one's message.
    await context.setOffline(true);
    await ada.say("from the first tab");
    await secondTab.say("from the second tab");
    // Both tabs know they are offline, so both messages wait in the stored outbox.
    const waiting = "Will be sent when the connection is back";
    await expect(ada.message("from the first tab")).toContainText(waiting);
    await expect(secondTab.message("from the second tab")).toContainText(waiting);
    await ada.page.close();
    await secondTab.page.close();

    await context.setOffline(false);
    await visitAgain(context, room);
    await expect(bob.message("from the first tab")).toHaveCount(1);
    await expect(bob.message("from the second tab")).toHaveCount(1);
  });
});

test("a stored message that the server already has shows as delivered after a reload and is not sent again", async ({
  browser,
}) => {
  const room = unique("stored");
  const clientId = `e2e-${randomBytes(12).toString("hex")}`;
  // The server stored the message and answered, but the page went away before the answer came back...
  const sender = io(RESTRICTED_SERVER, {
    auth: { name: "Ada", session: randomBytes(24).toString("base64url") },
    reconnection: false,
  });
  try {
    await request(sender, "join", { room });
    await request(sender, "send", { room, body: "already stored", clientId });
  } finally {
    sender.close();
  }
  await withPeople(browser, 1, async ([ada]) => {
    // ...so the browser's outbox still lists it.
    const key = `causerie.outbox.${room}`;
    await ada.page.goto("/");
    await ada.page.evaluate(
      ([key, entry]) => localStorage.setItem(key, entry),
      [key, JSON.stringify([{ client_id: clientId, body: "already stored", failed: null, attempts: 0 }])],
    );
    let resent = 0;
    await ada.page.route("**/socket.io/**", (route) => {
      if (route.request().method() === "POST" && route.request().postData()?.includes(clientId)) resent += 1;
      return route.continue();
    });

    await ada.enter(room, "Ada");
    // A message sent now goes out after whatever the outbox still held: once it is delivered, a resend would
    // have been made.
    await ada.say("written after");
    await expect(ada.message("written after")).not.toHaveAttribute("data-delivery", /.+/);
    await expect(ada.message("already stored")).toHaveCount(1);
    await expect(ada.message("already stored")).not.toHaveAttribute("data-delivery", /.+/);
    expect(resent, "the stored message was not sent again").toBe(0);
    expect(await ada.page.evaluate((key) => localStorage.getItem(key), key)).toBeNull();
  });
});

/** Ada opens the room again in a new page of the same browser (its storage kept), and waits for hydration. */
async function visitAgain(context: BrowserContext, room: string): Promise<RoomPage> {
  const again = new RoomPage(await context.newPage());
  await again.page.goto(`/r/${room}?name=Ada`);
  await waitForHydration(again.page);
  return again;
}
