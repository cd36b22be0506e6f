import { expect, test } from "@playwright/test";
import { RoomPage, unique, waitForHydration } from "./fixtures/pages";

test("a person continues on another device as the same member through the device link", async ({ browser }) => {
  const room = unique("devices");
  const laptop = await browser.newContext();
  const phone = await browser.newContext();
  try {
    const ada = new RoomPage(await laptop.newPage());
    await ada.enter(room, "Ada");
    await ada.page.getByText("On another device?").click();
    const link = await ada.page.getByTestId("handoff-link").getAttribute("href");
    expect(link).toMatch(/^\/session\/claim\?token=/);

    // The other device has its own cookie jar: without the link it would be someone else called Ada.
    const other = new RoomPage(await phone.newPage());
    await other.page.goto(link ?? "/");
    await other.page.getByRole("button", { name: "Continue" }).click();
    await waitForHydration(other.page);
    await expect(other.send).toBeEnabled();
    await expect(other.members).toHaveCount(1);
    await expect(other.member("Ada")).toContainText("(you)");
  } finally {
    await laptop.close();
    await phone.close();
  }
});
