// A Causerie client in plain JavaScript, with npm's socket.io-client (see docs/events.md).
//
//   node chat.mjs <server-url> <name> <room> <message>
//
// Joins <room> as <name>, prints who is there, says <message>, then prints every message and notice of the room
// until someone says "bye".
import { io } from "socket.io-client";

const [url = "http://127.0.0.1:3000", name = "Eve", room = "general", text = "Hello from JavaScript!"] =
  process.argv.slice(2);

// Identity goes in the handshake's `auth`, once. `session` is optional: reuse one to be the same person on
// several connections; without it, this connection is a person of its own.
const socket = io(url, { auth: { name } });

/** Sends a request event and resolves with its `ok` value, or rejects with its `error`. */
async function request(event, payload) {
  const answer = await socket.timeout(10_000).emitWithAck(event, payload);
  if (answer.error) throw new Error(`${event} refused: ${answer.error.code}: ${answer.error.message}`);
  return answer.ok;
}

socket.on("connect_error", (err) => {
  console.error(`connection refused: ${err.message}`);
  process.exit(1);
});

socket.on("presence", ({ changes }) => {
  for (const { change, member } of changes) {
    if (change === "joined" || change === "left") console.log(`* ${member.name} ${change}`);
  }
});
let lastSeq = 0;
let sent = false;
const seen = new Set();

/** Prints a stored or live message once (a message can come both in a join's history and live). */
function show({ seq, from, body }) {
  if (seen.has(seq)) return;
  seen.add(seq);
  lastSeq = Math.max(lastSeq, seq);
  console.log(`${from.name}: ${body}`);
  if (body === "bye") {
    socket.close();
  }
}

socket.on("message", show);

socket.on("connect", async () => {
  try {
    // After a reconnection, `since` asks for exactly the messages missed meanwhile.
    const joined = await request("join", lastSeq ? { room, since: lastSeq } : { room });
    console.log(`joined #${joined.room} as ${joined.you.name} with ${joined.members.map((m) => m.name).join(", ")}`);
    joined.history.forEach(show);
    if (!sent) {
      // A clientId makes a retry safe: the server stores the message once and answers a retry with the original.
      const { message } = await request("send", { room, body: text, clientId: crypto.randomUUID() });
      sent = true;
      seen.add(message.seq);
      console.log(`sent #${message.seq} at ${new Date(message.sentAt).toISOString()}`);
    }
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
});
