import { expect, type Route, test } from "@playwright/test";
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

test("a connection that drops and comes back while a join waits to be retried joins at once, and once", async ({
  browser,
}) => {
  test.setTimeout(60_000);
  const room = unique("retry-drop");
  await withPeople(browser, 1, async ([bob]) => {
    // As above, the first join is lost on the way; every join that reaches the server is counted. The polls go
    // through the test, so that it can cut the one in flight, as a dropped connection would.
    let joins = 0;
    const polls = new Set<Route>();
    await bob.page.route("**/socket.io/**", async (route) => {
      const request = route.request();
      if (request.method() === "GET") {
        polls.add(route);
        const response = await route.fetch({ timeout: 60_000 }).catch(() => null);
        if (!polls.delete(route)) return; // cut meanwhile
        return response ? route.fulfill({ response }) : route.abort();
      }
      if (request.method() === "POST" && request.postData()?.includes('"join"')) {
        joins += 1;
        if (joins === 1) return route.fulfill({ status: 200, contentType: "text/html", body: "ok" });
      }
      return route.continue();
    });
    await bob.page.goto(`/r/${encodeURIComponent(room)}?name=Bob`);
    await expect(bob.page.getByRole("alert")).toHaveText(/Trying again in 2 s\./, { timeout: 20_000 });

    // During the pause before the next try, the connection drops, and the client reconnects on its own.
    expect(polls.size, "a poll in flight").toBe(1);
    for (const poll of polls) await poll.abort("connectionreset");
    polls.clear();

    // The new connection joins as soon as it is up, and nothing undoes that join: one more join, not two (a join
    // made after the pause, then undone by the drop it had not yet heard of, then made again).
    await expect(bob.send).toBeEnabled();
    await bob.say("in after the drop");
    await expect(bob.message("in after the drop")).not.toHaveAttribute("data-delivery", /.+/);
    expect(joins).toBe(2);
  });
});
