import { expect, test } from "@playwright/test";
import { unique, withPeople } from "./fixtures/pages";
import { ADMIN_SERVER } from "./fixtures/servers";

test("a tab that goes silent is dropped by the heartbeat and announced as gone", async ({ browser }) => {
  const room = unique("heartbeat");
  await withPeople(browser, 2, async ([bob, ada]) => {
    await bob.enter(room, "Bob", ADMIN_SERVER);
    await ada.enter(room, "Ada", ADMIN_SERVER);
    await expect(bob.member("Ada")).toHaveAttribute("data-online", "true");

    // Stop Ada's tab in the debugger, as a hung tab or a suspended laptop would: its connection stays open, but
    // its script (which answers the server's pings) runs no more.
    const cdp = await ada.page.context().newCDPSession(ada.page);
    await cdp.send("Debugger.enable");
    await cdp.send("Debugger.pause");

    await expect(bob.notice("Ada left")).toHaveCount(1);
    await expect(bob.member("Ada")).toHaveAttribute("data-online", "false");
  });
});
