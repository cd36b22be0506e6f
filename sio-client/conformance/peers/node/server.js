// The reference Node.js Socket.IO server for sio-client's conformance tests. It speaks the same small protocol as
// the socketioxide peer (src/bin/socketioxide-peer.rs), so that every scenario runs against both:
//
//   namespace "/"       auth {token}; the token "reject" is refused with connect_error "rejected".
//     "echo" ...args    emits "echo" back with the same arguments.
//     "echo-ack" ...    acknowledges with the same arguments (binary included).
//     "no-ack"          never acknowledges (for ack timeouts).
//     "record" {key,n}  remembers n under key;  "recorded" key -> ack with the list of n, in arrival order.
//     "disconnect-me"   the server disconnects this socket.
//     "ask-me" x        the server emits "question" x asking for an ack, then emits "answer" with the ack's value.
//   namespace "/admin"  auth {token: "secret"}, else connect_error "unauthorized"; same events.
//
// Environment: PORT (0: any free port), TRANSPORTS ("polling,websocket"), PING_INTERVAL and PING_TIMEOUT (ms).
// Prints "listening <port>" once it accepts connections.
const http = require("http");
const { Server } = require("socket.io");

const server = http.createServer();
const io = new Server(server, {
  transports: (process.env.TRANSPORTS || "polling,websocket").split(","),
  pingInterval: Number(process.env.PING_INTERVAL || 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT || 20000),
});

const recorded = new Map();

function handlers(socket) {
  socket.on("echo", (...args) => socket.emit("echo", ...args));
  socket.on("echo-ack", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack(...args);
  });
  socket.on("no-ack", () => {});
  socket.on("record", ({ key, n }) => {
    if (!recorded.has(key)) recorded.set(key, []);
    recorded.get(key).push(n);
  });
  socket.on("recorded", (key, ack) => ack(recorded.get(key) || []));
  socket.on("disconnect-me", () => socket.disconnect());
  socket.on("ask-me", async (question) => {
    const answer = await socket.timeout(10000).emitWithAck("question", question);
    socket.emit("answer", answer);
  });
}

io.use((socket, next) => (socket.handshake.auth?.token === "reject" ? next(new Error("rejected")) : next()));
io.on("connection", handlers);

const admin = io.of("/admin");
admin.use((socket, next) => (socket.handshake.auth?.token === "secret" ? next() : next(new Error("unauthorized"))));
admin.on("connection", handlers);

server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
