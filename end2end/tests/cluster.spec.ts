import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { expect, test } from "@playwright/test";
import { JoinPage, unique, withPeople } from "./fixtures/pages";
import { CLUSTER_BALANCER, CLUSTER_NODE_ONE, CLUSTER_NODE_TWO, CLUSTER_REDIS_URL_FILE } from "./fixtures/servers";

/** Says `message` on the nodes' presence channel as a node called `node` would (see server/src/cluster.rs). */
function speakAsNode(node: string, message: unknown): void {
  const redis = readFileSync(CLUSTER_REDIS_URL_FILE, "utf8").trim();
  execFileSync("redis-cli", ["-u", redis, "PUBLISH", "causerie-presence", JSON.stringify({ node, message })]);
}

test("people in browsers on two different nodes talk, whisper, type and see each other", async ({ browser }) => {
  const room = unique("two-nodes");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada", CLUSTER_NODE_ONE);
    await bob.enter(room, "Bob", CLUSTER_NODE_TWO);
    await expect(ada.member("Bob")).toHaveAttribute("data-online", "true");
    await expect(bob.member("Ada")).toHaveAttribute("data-online", "true");
    await expect(ada.notice("Bob joined")).toHaveCount(1);

    await bob.say("hello from node two");
    await expect(ada.message("hello from node two")).toHaveCount(1);
    await ada.say("and back from node one");
    await expect(bob.message("and back from node one")).toHaveCount(1);

    await ada.page.getByRole("button", { name: "Private message to Bob" }).click();
    await ada.say("psst, across nodes");
    await expect(bob.message("psst, across nodes")).toContainText("Private from Ada");

    await bob.composer.pressSequentially("typing on node two");
    await expect(ada.typing).toContainText("Bob is typing");

    await bob.page.close();
    await expect(ada.notice("Bob left")).toHaveCount(1);
    await expect(ada.member("Bob")).toHaveAttribute("data-online", "false");
  });
});

// Which node each browser lands on is up to nginx's hash of its cookie: all three may share one. What this shows is
// that sessions stay whole through the balancer (long-polling, then the upgrade); the spec above shows the nodes
// sharing one room.
test("through nginx, each browser keeps its session whole and everyone shares the room", async ({ browser }) => {
  const room = unique("balanced");
  await withPeople(browser, 3, async (people) => {
    const names = ["Ada", "Bob", "Cy"];
    for (const [i, person] of people.entries()) {
      await person.enter(room, names[i], CLUSTER_BALANCER);
    }
    for (const [i, person] of people.entries()) {
      await person.say(`hello from ${names[i]}`);
    }
    for (const person of people) {
      for (const name of names) {
        await expect(person.message(`hello from ${name}`)).toHaveCount(1);
      }
      await expect(person.members.and(person.page.locator("[data-online=true]"))).toHaveCount(3);
    }
  });
});

test("two people who take one name on two nodes at the same moment end with one of them, the other back at the form", async ({
  browser,
}) => {
  const room = unique("clash");
  await withPeople(browser, 2, async ([ada, bob]) => {
    await ada.enter(room, "Ada", CLUSTER_NODE_ONE);
    await bob.enter(room, "Bob", CLUSTER_NODE_TWO);
    await expect(bob.member("Ada")).toHaveAttribute("data-online", "true");

    // What a third node says when it let another Ada in before hearing of this one: its report of her arrival.
    // The nodes settle such a clash the same way everywhere, for whoever's member id sorts first, and no id sorts
    // before this one.
    const other = { id: "00000000000000000000", name: "ADA" };
    speakAsNode("e2e-third-node", { report: { type: "entered", room, member: other } });

    // Ada of node one is out of the room, and back at the form, which says why and keeps what she typed.
    const form = new JoinPage(ada.page);
    await expect(form.error("Name in use")).toBeVisible();
    await expect(form.name).toHaveValue("Ada");
    // The room has one Ada online, the third node's; node one's is listed as gone.
    await expect(bob.member("ADA")).toHaveAttribute("data-online", "true");
    await expect(bob.member("Ada")).toHaveAttribute("data-online", "false");
  });
});
