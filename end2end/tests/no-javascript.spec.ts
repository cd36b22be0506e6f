import { expect, test } from "@playwright/test";
import { JoinPage, RoomPage, unique } from "./fixtures/pages";
import { seedMessages } from "./fixtures/seed";

// This file runs in the "no-javascript" project: the browser never loads the WASM bundle.

test("the server-rendered form lands on the room page", async ({ page }) => {
  await page.goto("/");
  const join = new JoinPage(page);
  await join.join("  Ada Lovelace ", "Rust Fans!");
  await expect(page).toHaveURL(/\/r\/rust-fans\?name=Ada%20Lovelace$/);
  await expect(page.getByTestId("room-name")).toHaveText("#rust-fans");
  await expect(page.getByTestId("my-name")).toHaveText("Ada Lovelace");
});

test("the server-rendered form shows errors inline and keeps the input", async ({ page }) => {
  await page.goto("/");
  const join = new JoinPage(page);
  await join.join("", "!!!");
  await expect(page).toHaveURL(/\/\?name=&room=/);
  await expect(join.error("Please enter a display name.")).toBeVisible();
  await expect(join.error("A room name needs at least one letter or digit.")).toBeVisible();
  await expect(join.room).toHaveValue("!!!");
});

test("without JavaScript, a name in use is refused on the form and the lobby lists the room", async ({
  browser,
  page,
}) => {
  const room = unique("nojs");
  // Ada has JavaScript: she is live in the room.
  const context = await browser.newContext({ javaScriptEnabled: true });
  try {
    const ada = new RoomPage(await context.newPage());
    await ada.enter(room, "Ada");

    await page.goto("/");
    await expect(page.locator(`[data-testid=lobby-room][data-room="${room}"]`)).toContainText("1 person online");
    const join = new JoinPage(page);
    await join.join("Ada", room);
    await expect(join.error("Name in use")).toBeVisible();
  } finally {
    await context.close();
  }
});

test("without JavaScript, the room page shows the conversation so far", async ({ page, baseURL }) => {
  const room = unique("nojs-history");
  await seedMessages(baseURL!, room, ["first, stored", "second, stored"]);
  await page.goto(`/r/${room}?name=Reader`);
  await expect(page.getByTestId("messages").locator(".message .body")).toHaveText([
    "first, stored",
    "second, stored",
  ]);
});
