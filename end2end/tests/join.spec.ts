import { expect, test } from "@playwright/test";
import { JoinPage, RoomPage, waitForHydration } from "./fixtures/pages";

test("the hydrated form shows the same errors as the server-rendered one", async ({ page }) => {
  const join = new JoinPage(page);
  await join.open();
  await join.join("", "!!!");
  await expect(join.error("Please enter a display name.")).toBeVisible();
  await expect(join.error("A room name needs at least one letter or digit.")).toBeVisible();
  await join.join("x".repeat(33), "general");
  await expect(join.error("A display name can be at most 32 characters long.")).toBeVisible();
  // Still the hydrated page (client-side navigation, no panic), not a server-rendered fallback.
  await waitForHydration(page);
});

test("joining through the hydrated form connects to the room", async ({ page }) => {
  const join = new JoinPage(page);
  await join.open();
  await join.join("Grace", "Compilers");
  await expect(page).toHaveURL(/\/r\/compilers\?name=Grace$/);
  const room = new RoomPage(page);
  await expect(room.heading).toHaveText("#compilers");
  await expect(room.status).toHaveAttribute("data-state", "connected");
  await expect(room.status).toContainText("websocket");
  await expect(room.send).toBeEnabled();
});
