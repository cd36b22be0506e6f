import { chromium } from "@playwright/test";
const base = "http://127.0.0.1:3010";
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu"] });
const mk = async () => (await browser.newContext({ viewport: { width: 1100, height: 640 } })).newPage();
const [ada, bob, cy] = [await mk(), await mk(), await mk()];
async function enter(p, name) {
  await p.goto(`${base}/r/general?name=${name}`);
  await p.locator("[data-hydrated=true]").waitFor();
  await p.getByRole("button", { name: "Send" }).waitFor({ state: "visible" });
  await p.waitForFunction(() => !document.querySelector("button[type=submit]").disabled);
}
async function say(p, text) { const c = p.getByLabel("Message", { exact: true }); await c.fill(text); await c.press("Enter"); }
await enter(ada, "Ada"); await enter(bob, "Bob");
await say(bob, "Morning! Has anyone tried the new release?");
await say(ada, "Yes, the notes are at https://example.org/release-notes (long-polling works behind the proxy now)");
await say(ada, "Upgrading our staging box this afternoon.");
await enter(cy, "Cy");
await say(cy, "Hi both 👋");
await bob.getByRole("button", { name: "Private message to Ada" }).click();
await say(bob, "Can you send me the staging password later?");
await ada.getByText("Can you send me").waitFor();
await cy.getByLabel("Message", { exact: true }).pressSequentially("I'll join the upgr");
await ada.getByText("Cy is typing").waitFor();
await ada.screenshot({ path: "../docs/screenshot.png" });
await browser.close();
