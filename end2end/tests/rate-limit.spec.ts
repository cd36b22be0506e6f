import { expect, test } from "@playwright/test";
import { RoomPage } from "./fixtures/pages";

// The restricted server (see playwright.config.ts): a burst of 3 messages, then one per 20 s.
test.use({ baseURL: "http://127.0.0.1:3002" });

test("sending faster than the limit shows why a message was not sent", async ({ page }) => {
  const room = new RoomPage(page);
  await room.enter(`flood-${Date.now()}`, "Flo");
  for (let i = 1; i <= 3; i++) {
    await room.say(`allowed ${i}`);
    await expect(room.message(`allowed ${i}`)).toHaveCount(1);
  }
  await room.say("one too many");
  await expect(page.getByRole("alert").filter({ hasText: "You are sending messages too fast." })).toBeVisible();
  // It stays on the page, marked as not sent, with a way to try again later.
  await expect(room.message("one too many")).toHaveAttribute("data-delivery", "failed");
  await expect(room.message("one too many").getByRole("button", { name: "Retry" })).toBeVisible();
});
