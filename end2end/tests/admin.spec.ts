import { expect, type Page, test } from "@playwright/test";
import { unique, waitForHydration, withPeople } from "./fixtures/pages";
import { ADMIN_SERVER, ADMIN_TOKEN } from "./fixtures/servers";

async function signIn(page: Page, token: string): Promise<void> {
  await page.goto(`${ADMIN_SERVER}/admin`);
  await waitForHydration(page);
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Connect" }).click();
}

test("a bad admin token is refused on the page, and the lobby feed on the same connection goes on", async ({
  browser,
  page,
}) => {
  await signIn(page, "not-the-token-at-all");
  await expect(page.getByTestId("admin-error")).toContainText("Invalid admin token.");
  await expect(page.getByTestId("stats")).toHaveCount(0);

  const room = unique("after-refusal");
  await withPeople(browser, 1, async ([ada]) => {
    await ada.enter(room, "Ada", ADMIN_SERVER);
    await expect(page.getByTestId("admin-lobby")).toContainText(`#${room} · 1 online`);
  });
});

test("an admin sees live stats and removes someone from a room", async ({ browser, page }) => {
  const room = unique("moderated");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada", ADMIN_SERVER);
    await bob.enter(room, "Bob", ADMIN_SERVER);
    await ada.say("hello from Ada");

    await signIn(page, ADMIN_TOKEN);
    const stats = page.getByTestId("stats");
    await expect(stats).toBeVisible();
    await expect(page.getByTestId("admin-error")).toHaveCount(0);
    // Live figures: read until they have caught up with Ada and Bob.
    await expect.poll(async () => Number(await page.getByTestId("stat-connections").textContent())).toBeGreaterThanOrEqual(2);
    await expect.poll(async () => Number(await page.getByTestId("stat-total").textContent())).toBeGreaterThanOrEqual(1);
    const members = page.locator(`[data-testid=admin-room][data-room="${room}"]`);
    await expect(members).toContainText("Ada");

    await members.getByRole("button", { name: "Remove Ada" }).click();
    await expect(page.getByTestId("admin-outcome")).toHaveText(`Removed Ada from #${room}.`);
    await expect(ada.page.getByTestId("removed")).toBeVisible();
    await expect(ada.send).toBeDisabled();
    await expect(bob.notice("Ada was removed by an admin")).toHaveCount(1);
    await expect(members).not.toContainText("Ada");
  });
});
