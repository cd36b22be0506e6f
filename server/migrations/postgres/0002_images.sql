-- The same schema as ../0002_images.sql (SQLite), in Postgres's types.
-- Images shared in rooms, kept with their messages. Written once, never changed.
CREATE TABLE images (
    id           TEXT   PRIMARY KEY,
    content_type TEXT   NOT NULL,
    size         BIGINT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    bytes        BYTEA  NOT NULL
);

-- The image a message shares, if any; its body is then the image's caption.
ALTER TABLE messages ADD COLUMN image_id TEXT REFERENCES images (id);
