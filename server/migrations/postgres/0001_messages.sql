-- The same schema as ../0001_messages.sql (SQLite), in Postgres's types.
-- Messages, in the order of their room: (room, seq) is the key, 1, 2, 3… per room.
CREATE TABLE messages (
    room        TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT   NOT NULL UNIQUE,
    sender_id   TEXT   NOT NULL,
    sender_name TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    sent_at     BIGINT NOT NULL,
    client_id   TEXT,
    PRIMARY KEY (room, seq)
);

-- A retried send (same sender, same client id, same room) is the same message.
CREATE UNIQUE INDEX messages_dedup ON messages (room, sender_id, client_id) WHERE client_id IS NOT NULL;
