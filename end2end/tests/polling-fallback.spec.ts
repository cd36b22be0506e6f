import { expect, test } from "@playwright/test";
import { withPeople } from "./fixtures/pages";

// This server accepts long-polling only (see playwright.config.ts).
test.use({ baseURL: "http://127.0.0.1:3002" });

test("without WebSocket the browser stays on long-polling and still chats", async ({ browser }) => {
  const room = `polling-${Date.now()}`;
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");
    await expect(ada.status).toHaveText("Connected · polling");

    await ada.say("over plain HTTP");
    await expect(bob.message("over plain HTTP")).toHaveCount(1);
    await bob.say("works for me too");
    await expect(ada.message("works for me too")).toHaveCount(1);

    // The server offers an upgrade in its handshake but refuses the WebSocket, so the page stays on polling.
    await expect(ada.status).toHaveText("Connected · polling");
    await expect(bob.status).toHaveText("Connected · polling");
  });
});
