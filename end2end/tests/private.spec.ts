import { expect, test } from "@playwright/test";
import { RoomPage, unique, withPeople } from "./fixtures/pages";
import { RESTRICTED_SERVER } from "./fixtures/servers";

test("a private message reaches only its recipient and the sender's tabs, marked as private", async ({ browser }) => {
  const room = unique("private");
  await withPeople(browser, 3, async ([ada, bob, carol]) => {
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");
    await carol.enter(room, "Carol");
    const adaTab2 = new RoomPage(await ada.page.context().newPage());
    await adaTab2.enter(room, "Ada");

    await ada.page.getByRole("button", { name: "Private message to Bob" }).click();
    await expect(ada.page.getByTestId("private-to")).toContainText("Bob");
    await expect(ada.composer).toBeFocused();
    await ada.say("psst, Bob");

    await expect(bob.message("psst, Bob")).toHaveAttribute("data-private", "true");
    await expect(bob.message("psst, Bob")).toContainText("Private from Ada");
    await expect(ada.message("psst, Bob")).toContainText("Private to Bob");
    await expect(adaTab2.message("psst, Bob")).toContainText("Private to Bob");

    // Carol's connection is in order: the public message comes after the private one, so had that leaked she
    // would have it by now.
    await bob.say("hello everyone");
    await expect(carol.message("hello everyone")).toHaveCount(1);
    await expect(carol.messages).toHaveCount(1);

    // Back to the room: the next message is public.
    await ada.page.getByRole("button", { name: "Back to the room" }).click();
    await expect(ada.composer).toBeFocused();
    await ada.say("public again");
    await expect(carol.message("public again")).not.toHaveAttribute("data-private", "true");
  });
});

test("a private message that cannot be delivered goes back into the box, with the reason", async ({ browser }) => {
  const room = unique("private-gone");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");
    await ada.page.getByRole("button", { name: "Private message to Bob" }).click();
    await bob.page.close();
    await expect(ada.member("Bob")).toHaveAttribute("data-online", "false");

    await ada.say("are you still there?");
    await expect(ada.page.getByRole("alert").filter({ hasText: "Not sent" })).toContainText("back in the box");
    await expect(ada.composer).toHaveValue("are you still there?");
    await expect(ada.messages).toHaveCount(0);
  });
});

test.describe("over long-polling", () => {
  // Every packet the page sends is an HTTP request that the test can see and hold back.
  test.use({ baseURL: RESTRICTED_SERVER });

  test("a private message left unanswered says it may have arrived, not that it was not sent", async ({ browser }) => {
    test.setTimeout(60_000);
    const room = unique("private-unanswered");
    await withPeople(browser, 2, async ([ada, bob]) => {
      await ada.enter(room, "Ada");
      await bob.enter(room, "Bob");
      // The private message leaves the page, and no answer ever comes back (the test drops it on its way).
      await ada.page.route("**/socket.io/**", (route) => {
        const request = route.request();
        if (request.method() === "POST" && request.postData()?.includes('["private"')) {
          return route.fulfill({ status: 200, contentType: "text/html", body: "ok" });
        }
        return route.continue();
      });
      await ada.page.getByRole("button", { name: "Private message to Bob" }).click();
      await ada.say("did this reach you?");

      const alert = ada.page.getByRole("alert").filter({ hasText: "did not" });
      await expect(alert).toContainText("Maybe not sent", { timeout: 20_000 });
      await expect(alert).toContainText("It may have arrived");
      await expect(ada.composer).toHaveValue("did this reach you?");
    });
  });
});
