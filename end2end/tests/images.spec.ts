import { expect, type Page, test } from "@playwright/test";
import { png } from "./fixtures/images";
import { type RoomPage, unique, withPeople } from "./fixtures/pages";
import { RESTRICTED_SERVER } from "./fixtures/servers";

/** The shared image in the message captioned `caption`. */
function image(person: RoomPage, caption: string) {
  return person.message(caption).getByTestId("image");
}

/** Whether the browser decoded the image (it has pixels), not just its element. */
async function decodedWidth(person: RoomPage, caption: string): Promise<number> {
  return image(person, caption).evaluate((img: HTMLImageElement) => (img.complete ? img.naturalWidth : 0));
}

test.describe("over long-polling", () => {
  test.use({ baseURL: RESTRICTED_SERVER });

  test("an image one person picks appears for another, served as an image for good", async ({ browser }) => {
    const room = unique("images");
    await withPeople(browser, 2, async ([ada, bob]) => {
      // Every local URL Ada's page makes for a file (the preview), to check that it lets go of them.
      await ada.page.addInitScript(() => {
        const made: string[] = [];
        const create = URL.createObjectURL.bind(URL);
        URL.createObjectURL = (file: Blob | MediaSource) => {
          const url = create(file);
          made.push(url);
          return url;
        };
        Object.assign(window, { previews: made });
      });
      await ada.enter(room, "Ada");
      await bob.enter(room, "Bob");
      await expect(ada.status).toContainText("polling");

      await ada.page.getByTestId("image-input").setInputFiles({
        name: "red square.png",
        mimeType: "image/png",
        buffer: png(40, 30),
      });
      await expect(image(bob, "red square.png")).toBeVisible();
      await expect.poll(() => decodedWidth(bob, "red square.png")).toBe(40);
      // Ada's preview gave way to the stored message.
      await expect(ada.message("red square.png")).not.toHaveAttribute("data-delivery", /.+/);
      await expect(ada.message("red square.png")).toHaveCount(1);
      // ...and the file the preview kept is released.
      const previews = await ada.page.evaluate(() => (window as unknown as { previews: string[] }).previews);
      expect(previews).toHaveLength(1);
      const readable = await ada.page.evaluate((url) => fetch(url).then(() => true, () => false), previews[0]);
      expect(readable, "the preview's file is still held").toBe(false);

      const src = await image(bob, "red square.png").getAttribute("src");
      expect(src).toMatch(/^\/media\/[0-9a-f-]{36}$/);
      const response = await bob.page.request.get(src!);
      expect(response.headers()["content-type"]).toBe("image/png");
      expect(response.headers()["cache-control"]).toBe("public, max-age=31536000, immutable");
      expect((await response.body()).equals(png(40, 30))).toBe(true);
    });
  });
});

/** Hands `file` to the page as a drop on `target` or a paste into it, the way the browser would. */
async function handOver(page: Page, how: "drop" | "paste", target: string, name: string, bytes: Buffer) {
  await page.evaluate(
    ({ how, target, name, bytes }) => {
      const data = new DataTransfer();
      data.items.add(new File([new Uint8Array(bytes)], name, { type: "image/png" }));
      const element = document.querySelector(target)!;
      const event =
        how === "drop"
          ? new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true })
          : new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
      element.dispatchEvent(event);
    },
    { how, target, name, bytes: [...bytes] },
  );
}

test("an image can be dropped or pasted, with the draft as its caption", async ({ browser }) => {
  const room = unique("drop");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");

    await handOver(ada.page, "drop", "[data-testid=conversation]", "dropped.png", png(20, 20, [40, 160, 40]));
    await expect.poll(() => decodedWidth(bob, "dropped.png")).toBe(20);

    await ada.composer.fill("look at this");
    await handOver(ada.page, "paste", "#message", "clipboard.png", png(10, 10, [40, 40, 200]));
    await expect.poll(() => decodedWidth(bob, "look at this")).toBe(10);
    await expect(ada.composer).toHaveValue("");
  });
});

test("a file that is not an image, or too large, is refused in words and nothing is sent", async ({ browser }) => {
  const room = unique("refused");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada");
    await bob.enter(room, "Bob");
    const input = ada.page.getByTestId("image-input");

    await input.setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("hello") });
    await expect(ada.page.getByRole("alert")).toHaveText("“notes.txt” is not a PNG, JPEG, GIF or WebP image.");

    const huge = Buffer.concat([png(10, 10), Buffer.alloc(3 * 1024 * 1024)]);
    await input.setInputFiles({ name: "huge.png", mimeType: "image/png", buffer: huge });
    await expect(ada.page.getByRole("alert")).toHaveText("That image is 3.0 MB; the limit is 2.0 MB. Send a smaller one.");

    await input.setInputFiles({ name: "fake.png", mimeType: "image/png", buffer: Buffer.from("GIF89a not a png") });
    await expect(ada.page.getByRole("alert")).toHaveText("That file says it is a PNG image, but its contents are a GIF image.");

    // Nothing went out: the next message is the first one Bob sees.
    await ada.say("only this");
    await expect(bob.message("only this")).toHaveCount(1);
    await expect(bob.messages).toHaveCount(1);
  });
});
