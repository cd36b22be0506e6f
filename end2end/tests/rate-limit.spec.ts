import { expect, test } from "@playwright/test";
import { RoomPage } from "./fixtures/pages";

// The restricted server (see playwright.config.ts): a burst of 3 messages, then one per 20 s.
test.use({ baseURL: "http://127.0.0.1:3002" });

test("sending faster than the limit shows why a message was not sent", async ({ page }) => {
  test.setTimeout(60_000);
  const room = new RoomPage(page);
  await room.enter(`flood-${Date.now()}`, "Flo");
  for (let i = 1; i <= 3; i++) {
    await room.say(`allowed ${i}`);
    await expect(room.message(`allowed ${i}`)).toHaveCount(1);
  }
  // Every time the page sends it (long-polling: each send is a request the test sees).
  let sent = 0;
  page.on("request", (request) => {
    if (request.method() === "POST" && request.postData()?.includes("one too many")) sent += 1;
  });
  await room.say("one too many");
  await expect(page.getByRole("alert").filter({ hasText: "You are sending messages too fast." })).toBeVisible();
  // The page sends it again on its own for a while (after 1, 2, 4 and 8 s), then gives up: it stays on the page,
  // marked as not sent, with a way to try again later.
  await expect(room.message("one too many")).toHaveAttribute("data-delivery", "failed", { timeout: 30_000 });
  expect(sent).toBe(5);
  await expect(room.message("one too many").getByRole("button", { name: "Retry" })).toBeVisible();
});
