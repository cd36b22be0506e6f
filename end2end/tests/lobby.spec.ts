import { expect, test } from "@playwright/test";
import { JoinPage, unique, withPeople } from "./fixtures/pages";

test("the join page lists active rooms with how many people are in each, live", async ({ browser, page }) => {
  const room = unique("lobby");
  const form = new JoinPage(page);
  await form.open();
  const entry = page.locator(`[data-testid=lobby-room][data-room="${room}"]`);
  await expect(entry).toHaveCount(0);

  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada");
    await expect(entry).toContainText("1 person online");
    await bob.enter(room, "Bob");
    await expect(entry).toContainText("2 people online");
    await bob.page.close();
    await expect(entry).toContainText("1 person online");

    // A listed room fills in the form, even over a room typed there before, and keeps the name typed.
    await form.name.fill("Cy");
    await form.room.fill("somewhere else");
    await entry.getByRole("link").click();
    await expect(form.room).toHaveValue(room);
    await expect(form.name).toHaveValue("Cy");
  });
  // Everyone left: the room is gone from the list.
  await expect(entry).toHaveCount(0);
});
