// The reference peer of Causerie's benchmark: a Node.js Socket.IO 4.x chat server with Causerie's events and room
// semantics (docs/events.md), keeping everything in memory. The same load generator drives it and Causerie.
//
//   namespace "/"   auth {name, session?}: refused with connect_error when the name is missing or too long.
//     "join" {room, since?}        joins; ack {ok: {room, you, members, moreMembers?, history, hasMore}}, the
//                                  members cut to the first 32 by id ("members" {room, after} pages on), the history cut to
//                                  4096 bytes of JSON as Causerie cuts it; others get
//                                  "presence" when a member's first connection enters (and when their last leaves):
//                                  at once in a quiet room, else in bursts every 500 ms, 16 changes an event at most,
//                                  never about the recipient, as Causerie does.
//     "send" {room, body, clientId?}
//                                  stores the message with the room's next seq (a repeated clientId from the same
//                                  member returns the original); broadcasts "message" to the room except the
//                                  sender; ack {ok: {message}}. Errors: {error: {code, message}}.
//
// Environment: PORT (0: any free port). Prints "listening <port>" once it accepts connections.
"use strict";
const http = require("http");
const crypto = require("crypto");
const { Server } = require("socket.io");

const MAX_NAME = 32;
const MAX_BODY = 2000;
const MAX_HISTORY = 100;
const PAGE = 50;
// As Causerie's `HistoryPage::MAX_BYTES`: a join's history stops before this many bytes of messages as JSON,
// keeping the messages nearest to where it starts (at least one); `hasMore` then says there are more.
const PAGE_BYTES = 4096;

/** `messages` cut to PAGE_BYTES from the newest end (`newest`) or the oldest; whether any were cut. */
function within(messages, newest) {
  let bytes = 0;
  let fitting = 0;
  const order = newest ? [...messages].reverse() : messages;
  for (const message of order) {
    bytes += Buffer.byteLength(JSON.stringify(message));
    if (bytes > PAGE_BYTES) break;
    fitting += 1;
  }
  fitting = Math.max(fitting, Math.min(1, messages.length));
  const kept = newest ? messages.slice(messages.length - fitting) : messages.slice(0, fitting);
  return [kept, kept.length < messages.length];
}
// As Causerie's `Joined::MAX_MEMBERS`: a join, and each "members" page, lists this many members at most, in the
// order of their ids (each page by name), and says where the list goes on.
const MEMBERS_PAGE = 16;

/** The members of room `r` whose ids come after `after` (all, for null): a page by name, and the next cursor. */
function membersAfter(r, after) {
  const ids = [...r.members.keys()].filter((id) => after === null || id > after).sort();
  const page = ids.slice(0, MEMBERS_PAGE);
  const more = ids.length > MEMBERS_PAGE ? page[page.length - 1] : null;
  const members = page.map((id) => r.members.get(id).member);
  members.sort((a, b) => a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
  return [members, more];
}

const NOTICE_INTERVAL_MS = 500;
const CHANGES_PER_EVENT = 8;

const server = http.createServer();
const io = new Server(server, { maxHttpBufferSize: 3e6 });

// room name -> {messages: [ChatMessage], members: Map<memberId, {member, sockets: Set<sid>}>, sent: Map<key, seq>}
const rooms = new Map();

function room(name) {
  let r = rooms.get(name);
  if (!r) {
    r = { messages: [], members: new Map(), sent: new Map() };
    rooms.set(name, r);
  }
  return r;
}

function text(value, max) {
  if (typeof value !== "string") return null;
  const trimmed = value.trim();
  return trimmed.length >= 1 && [...trimmed].length <= max ? trimmed : null;
}

const error = (code, message) => ({ error: { code, message } });

// The Socket.IO rooms of a chat room's connections, and of one member's connections in it. Both prefixed, as
// Causerie's are: a chat room named like a member room must not catch that member's traffic.
const chatRoom = (name) => `room:${name}`;
const memberRoom = (name, id) => `member:${name}:${id}`;

// room name -> the presence changes waiting for the room's next burst; a room is listed while a burst lasts.
const bursts = new Map();

function announce(name, change) {
  const waiting = bursts.get(name);
  if (waiting) {
    waiting.push(change);
    return;
  }
  bursts.set(name, []);
  sendChanges(name, [change]);
  const tick = () => {
    const burst = bursts.get(name);
    if (burst.length === 0) {
      bursts.delete(name);
      return;
    }
    bursts.set(name, []);
    for (let i = 0; i < burst.length; i += CHANGES_PER_EVENT) {
      sendChanges(name, burst.slice(i, i + CHANGES_PER_EVENT));
    }
    setTimeout(tick, NOTICE_INTERVAL_MS);
  };
  setTimeout(tick, NOTICE_INTERVAL_MS);
}

// Everyone in the room gets the changes, except that nobody's copy has the ones about themselves.
function sendChanges(name, changes) {
  const about = [...new Set(changes.map((c) => c.member.id))];
  io.to(chatRoom(name))
    .except(about.map((id) => memberRoom(name, id)))
    .emit("presence", { room: name, changes });
  if (about.length < 2) return;
  for (const id of about) {
    const others = changes.filter((c) => c.member.id !== id);
    io.to(memberRoom(name, id)).emit("presence", { room: name, changes: others });
  }
}

io.use((socket, next) => {
  const name = text(socket.handshake.auth && socket.handshake.auth.name, MAX_NAME);
  if (!name) return next(new Error("Invalid sign-in: a display name of 1 to 32 characters is needed"));
  const session = socket.handshake.auth.session;
  const id = crypto
    .createHash("sha256")
    .update(typeof session === "string" ? session : socket.id)
    .digest("hex")
    .slice(0, 16);
  socket.data.member = { id, name };
  socket.data.rooms = new Set();
  next();
});

io.on("connection", (socket) => {
  const me = socket.data.member;

  socket.on("join", (request, ack) => {
    if (typeof ack !== "function") return;
    const name = text(request && request.room, MAX_NAME);
    if (!name) return ack(error("invalid_payload", "Invalid request: a room name of 1 to 32 characters"));
    const r = room(name);
    let entry = r.members.get(me.id);
    const entered = !entry;
    if (!entry) {
      entry = { member: me, sockets: new Set() };
      r.members.set(me.id, entry);
    }
    entry.sockets.add(socket.id);
    socket.data.rooms.add(name);
    socket.join([chatRoom(name), memberRoom(name, me.id)]);
    if (entered) announce(name, { change: "joined", member: me });
    const since = Number.isInteger(request.since) ? request.since : null;
    let history, hasMore;
    let cut;
    if (since === null) {
      [history, cut] = within(r.messages.slice(-PAGE), true);
      hasMore = cut || r.messages.length > PAGE;
    } else {
      [history, cut] = within(r.messages.slice(since, since + MAX_HISTORY), false);
      hasMore = cut || r.messages.length > since + MAX_HISTORY;
    }
    const [members, more] = membersAfter(r, null);
    const answer = { room: name, you: me, members, history, hasMore };
    if (more !== null) answer.moreMembers = more;
    ack({ ok: answer });
  });

  socket.on("members", (request, ack) => {
    if (typeof ack !== "function") return;
    const name = request && request.room;
    if (typeof (request && request.after) !== "string") {
      return ack(error("invalid_payload", "Invalid request: `after`, the member id the page starts after"));
    }
    if (!socket.data.rooms.has(name)) return ack(error("not_in_room", `Join #${name} to see who is there.`));
    const [members, more] = membersAfter(room(name), request.after);
    ack({ ok: more === null ? { members } : { members, more } });
  });

  socket.on("send", (request, ack) => {
    if (typeof ack !== "function") return;
    const name = request && request.room;
    if (!socket.data.rooms.has(name)) return ack(error("not_in_room", `Join #${name} before sending to it.`));
    const body = text(request.body, MAX_BODY);
    if (!body) return ack(error("invalid_payload", "Invalid request: a message of 1 to 2000 characters"));
    const r = room(name);
    const clientId = typeof request.clientId === "string" ? request.clientId : undefined;
    const key = clientId && `${me.id}\u0000${clientId}`;
    if (key && r.sent.has(key)) return ack({ ok: { message: r.messages[r.sent.get(key) - 1] } });
    const message = {
      id: crypto.randomUUID(),
      room: name,
      seq: r.messages.length + 1,
      from: me,
      body,
      sentAt: Date.now(),
    };
    if (clientId) message.clientId = clientId;
    r.messages.push(message);
    if (key) r.sent.set(key, message.seq);
    socket.to(chatRoom(name)).emit("message", message);
    ack({ ok: { message } });
  });

  socket.on("disconnect", () => {
    for (const name of socket.data.rooms) {
      const r = rooms.get(name);
      const entry = r && r.members.get(me.id);
      if (!entry) continue;
      entry.sockets.delete(socket.id);
      if (entry.sockets.size === 0) {
        r.members.delete(me.id);
        announce(name, { change: "left", member: me, reason: "left" });
      }
    }
  });
});

server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
