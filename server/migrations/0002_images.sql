-- Images shared in rooms, kept with their messages: one file to back up. Written once, never changed, served
-- with their content type and cached for good.
CREATE TABLE images (
    id           TEXT    PRIMARY KEY,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    bytes        BLOB    NOT NULL
);

-- The image a message shares, if any; its body is then the image's caption.
ALTER TABLE messages ADD COLUMN image_id TEXT REFERENCES images (id);
