import { expect, test } from "@playwright/test";
import { unique, withPeople } from "./fixtures/pages";
import { RESTRICTED_SERVER } from "./fixtures/servers";

// Long-polling only: every packet the page sends is an HTTP request that the test can see and hold back.
test.use({ baseURL: RESTRICTED_SERVER });

test("a join that goes unanswered is asked again on its own, and the page gets in", async ({ browser }) => {
  const room = unique("retry");
  await withPeople(browser, 1, async ([bob]) => {
    // The first join never reaches the server (as if lost on the way): the page hears nothing back.
    let held = 0;
    await bob.page.route("**/socket.io/**", async (route) => {
      const request = route.request();
      if (request.method() === "POST" && held === 0 && request.postData()?.includes('"join"')) {
        held += 1;
        return route.fulfill({ status: 200, contentType: "text/html", body: "ok" });
      }
      return route.continue();
    });
    await bob.page.goto(`/r/${encodeURIComponent(room)}?name=Bob`);
    const alert = bob.page.getByRole("alert");
    // After the page's ten seconds of waiting for an answer, it says so, and when it will try again.
    await expect(alert).toHaveText(/Could not join the room \(.+\)\. Trying again in 2 s\./, { timeout: 20_000 });
    await expect(bob.send).toBeDisabled();
    expect(held, "one join was held back").toBe(1);

    // The next try reaches the server: the page gets in, and the error goes.
    await expect(bob.send).toBeEnabled();
    await expect(alert).toHaveCount(0);
    await bob.say("in at last");
    await expect(bob.message("in at last")).not.toHaveClass(/pending/);
  });
});
