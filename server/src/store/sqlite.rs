//! The default store: an embedded SQLite file, in WAL mode, with the migrations in `server/migrations/`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use protocol::{ChatMessage, ClientId, ImageKind, RoomName};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Appended, MessageStore, NewMessage, Page, SELECT_MESSAGES as SELECT, StoreError, StoreFuture, StoredImage,
    StoredRow, limit_param, page_of, seq_param,
};

/// Every migration, in order. Each runs once, in a transaction, and is recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] =
    &[(1, include_str!("../../migrations/0001_messages.sql")), (2, include_str!("../../migrations/0002_images.sql"))];

/// A SQLite database: a writer thread and a reader thread, each with its own connection to the file (WAL lets
/// them work at once: a read never waits for a commit's `fsync`, and sees only committed messages).
///
/// Writes go through the writer thread, which commits in groups: every message that arrived while the previous
/// commit was on its way to the disk goes into the next transaction, so a burst costs one `fsync`, not one per
/// message, and each sender is still answered only once its message is committed.
///
/// Reads go through the reader thread, one at a time, in the order asked. Before, reads shared the writer's
/// connection (behind a lock the writer holds through each commit, `fsync` included) from Tokio's blocking pool, so
/// a join waited for whatever commit was under way. A read is an indexed lookup of microseconds: one thread keeps
/// up with far more joins than the chat's core can answer (in a storm of 5,000 rejoins it used 2.5% of a core).
#[derive(Clone)]
pub struct SqliteStore {
    writer: std::sync::mpsc::Sender<Write>,
    reader: std::sync::mpsc::Sender<Read>,
}

/// Where the writer thread sends a message's outcome once committed.
type Reply = tokio::sync::oneshot::Sender<Result<Appended, StoreError>>;

/// A message for the writer thread, and where to answer.
type Write = (NewMessage, Reply);

/// A read for the reader thread: it runs the query and sends the answer itself.
type Read = Box<dyn FnOnce(&Connection) + Send>;

/// How long a connection waits for another process's lock on the file before the call fails.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// At most this many messages go into one transaction, so that the first of a huge burst is not kept waiting.
const MAX_BATCH: usize = 256;

/// A connection as the store uses them all: with SQLite's query planner stability guarantee (QPSG) on.
///
/// Without it, a plan that looked at a bound value marks the statement to be planned again when that value
/// changes, and rusqlite clears a cached statement's bindings each time it goes back to the cache: the check
/// for a duplicate and the query for the next `seq` were parsed and planned again for every message (49 runs of
/// 50 in the test below; parsing and planning were 4% of the server's core in a fan-out with SQLite). Our
/// queries are lookups by key, planned the same whatever the values.
fn configured(opened: rusqlite::Result<Connection>) -> Result<Connection, StoreError> {
    let connection = opened?;
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(connection)
}

impl SqliteStore {
    /// Opens (creating it, and its directory, if needed) the database file at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // SQLite's names for a database of one connection's own: a second connection would open another one.
        if path == Path::new(":memory:") || path.as_os_str().is_empty() {
            return Self::in_memory();
        }
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        }
        let mut connection = configured(Connection::open(path))?;
        // WAL: readers do not block the writer. FULL: a commit is on disk before `append` returns, so an
        // acknowledged message survives a power cut, not just a crash.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        migrate(&mut connection)?;
        // Opened after the migrations, so that it sees the tables; it only ever reads.
        let reads = configured(Connection::open(path))?;
        reads.busy_timeout(BUSY_TIMEOUT)?;
        reads.pragma_update(None, "query_only", true)?;
        let connection = Arc::new(Mutex::new(connection));
        Self::start(connection, Arc::new(Mutex::new(reads)))
    }

    /// A database in memory, gone with the store: for tests. Its one connection serves both threads (a second
    /// connection would open a second, empty, database).
    pub fn in_memory() -> Result<Self, StoreError> {
        let mut connection = configured(Connection::open_in_memory())?;
        migrate(&mut connection)?;
        let connection = Arc::new(Mutex::new(connection));
        Self::start(Arc::clone(&connection), connection)
    }

    fn start(writes: Arc<Mutex<Connection>>, reads: Arc<Mutex<Connection>>) -> Result<Self, StoreError> {
        let thread = |name: &str| std::thread::Builder::new().name(name.into());
        let (writer, queue) = std::sync::mpsc::channel();
        thread("sqlite-writer")
            .spawn(move || write_batches(&writes, &queue))
            .map_err(|source| StoreError::Open { path: "(writer thread)".into(), source })?;
        let (reader, queue) = std::sync::mpsc::channel::<Read>();
        thread("sqlite-reader")
            .spawn(move || {
                // Ends when every store handle, and so every sender, is gone.
                while let Ok(read) = queue.recv() {
                    // Uncontended for a file (this thread's own connection); shared with the writer in memory.
                    // A poisoned lock means a panic mid-call; SQLite rolled back whatever was open, so go on.
                    let connection = reads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    // A read that panics (none should: rows are checked, not unwrapped) fails alone, its asker
                    // told so by the dropped answer, and the thread goes on serving the others.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&connection)));
                }
            })
            .map_err(|source| StoreError::Open { path: "(reader thread)".into(), source })?;
        Ok(Self { writer, reader })
    }

    /// Runs `work` on the reader thread.
    fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            // The asker may have gone (its connection closed) by the time the answer is ready: nothing to do then.
            let read: Read = Box::new(move |connection| drop(reply.send(work(connection))));
            self.reader.send(read).map_err(|_| StoreError::Worker("the reader thread stopped".into()))?;
            answer.await.map_err(|_| StoreError::Worker("the reader thread dropped a read".into()))?
        })
    }
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (version, sql) in MIGRATIONS {
        let transaction = connection.transaction()?;
        let applied: Option<i64> = transaction
            .query_row("SELECT version FROM schema_migrations WHERE version = ?1", [version], |row| row.get(0))
            .optional()?;
        if applied.is_none() {
            transaction.execute_batch(sql)?;
            transaction
                .execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch())", [version])?;
            tracing::info!(version, "applied a database migration");
        }
        transaction.commit()?;
    }
    Ok(())
}

/// A row of [`SELECT`].
fn message(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ChatMessage, StoreError>> {
    let text = |i: usize| row.get::<_, String>(i);
    let image = match row.get::<_, Option<String>>(8)? {
        None => None,
        Some(image_id) => {
            Some((image_id, text(9)?, row.get::<_, i64>(10)?, row.get::<_, i64>(11)?, row.get::<_, i64>(12)?))
        }
    };
    let row = StoredRow {
        id: text(0)?,
        room: text(1)?,
        seq: row.get(2)?,
        sender_id: text(3)?,
        sender_name: text(4)?,
        body: text(5)?,
        sent_at: row.get(6)?,
        client_id: row.get(7)?,
        image,
    };
    Ok(row.into_message())
}

/// Runs a query of whole messages.
fn messages(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<ChatMessage>, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map(params, message)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// The writer thread: waits for a message, takes whatever else is already queued, and commits them all in one
/// transaction. Ends when every [`SqliteStore`] handle is gone.
fn write_batches(connection: &Mutex<Connection>, writes: &std::sync::mpsc::Receiver<Write>) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let (messages, replies): (Vec<NewMessage>, Vec<Reply>) = batch.into_iter().unzip();
        // In memory, the reader shares this connection: it waits for the commit, never sees half a batch. On a
        // file, the lock is the writer's alone.
        let mut connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A batch that panics fails alone (its senders are told), and the thread goes on with the next one: a
        // stopped writer would refuse every message until a restart.
        let outcomes =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit_batch(&mut connection, messages)))
                .unwrap_or_else(|_| Err(StoreError::Batch("the commit panicked".into())));
        drop(connection);
        match outcomes {
            Ok(outcomes) => {
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    // The sender may have given up waiting (its connection closed); the message is stored anyway.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "a batch of messages was not committed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Batch(e.to_string())));
                }
            }
        }
    }
}

/// The batch in one transaction, the outcome of each message in order. A message that fails must not take the
/// others with it, which needs a savepoint around each; but each savepoint is two more statements for SQLite to
/// parse and run, and in a fan-out run those were the biggest part of the writer's own work after the inserts. So
/// the batch goes in without them first, which is what happens unless a message fails, and only a batch where one
/// did is rolled back and written again, a savepoint per message.
fn commit_batch(
    connection: &mut Connection,
    messages: Vec<NewMessage>,
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    match commit_whole(connection, &messages) {
        Ok(outcomes) => Ok(outcomes),
        // Only a failure that can be one message's (a constraint): a busy, full or failing disk would fail the
        // rewrite as well, after as long again.
        Err(e) if messages.len() > 1 && e.is_one_messages_fault() => {
            tracing::debug!(error = %e, messages = messages.len(), "a batch failed whole; writing it message by message");
            commit_each(connection, &messages)
        }
        Err(e) => Err(e),
    }
}

/// Every message of the batch, or (rolled back) none.
fn commit_whole(
    connection: &mut Connection,
    messages: &[NewMessage],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    // IMMEDIATE: take the write lock at once, so that reading the last seq and inserting the next one cannot
    // interleave with another writer (another process on the same file).
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(messages.len());
    for new in messages {
        // The first failure ends it: dropping the transaction rolls it back.
        outcomes.push(Ok(insert(&transaction, new)?));
    }
    transaction.commit()?;
    Ok(outcomes)
}

/// The batch again, a savepoint per message, so that one that fails is rolled back alone.
fn commit_each(
    connection: &mut Connection,
    messages: &[NewMessage],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let mut transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(messages.len());
    for new in messages {
        let outcome = {
            let savepoint = transaction.savepoint()?;
            let outcome = insert(&savepoint, new);
            if outcome.is_ok() {
                savepoint.commit()?;
            }
            // Dropped here: rolled back to, when its message failed.
            outcome
        };
        outcomes.push(outcome);
        // Some failures (a full disk, an I/O error) make SQLite roll back the whole transaction itself. The next
        // savepoint would then begin one of its own, and commit its message alone while the batch's first ones
        // are gone: the batch fails as a whole instead.
        if transaction.is_autocommit() {
            return Err(StoreError::Batch("SQLite rolled back the transaction".into()));
        }
    }
    transaction.commit()?;
    Ok(outcomes)
}

/// The message a sender sent earlier with a client id, in a room.
static DUPLICATE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{SELECT} WHERE m.room = ?1 AND m.sender_id = ?2 AND m.client_id = ?3"));
/// A room's next `seq`.
const NEXT_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE room = ?1";

/// Stores one message inside the batch's transaction (see [`write_batches`]).
fn insert(transaction: &Connection, new: &NewMessage) -> Result<Appended, StoreError> {
    if let Some(client_id) = &new.client_id {
        let earlier = messages(transaction, &DUPLICATE, params![new.room.as_str(), new.from.id.0, client_id.as_str()])?;
        if let Some(original) = earlier.into_iter().next() {
            return Ok(Appended::Duplicate(original));
        }
    }
    let seq: i64 = transaction.prepare_cached(NEXT_SEQ)?.query_row([new.room.as_str()], |row| row.get(0))?;
    if let Some(image) = &new.image {
        transaction
            .prepare_cached(
                "INSERT INTO images (id, content_type, size, width, height, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                image.id,
                image.kind.content_type(),
                image.bytes.len() as i64,
                image.width,
                image.height,
                image.bytes.as_ref()
            ])?;
    }
    transaction
        .prepare_cached(
            "INSERT INTO messages (id, room, seq, sender_id, sender_name, body, sent_at, client_id, image_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            new.id.0,
            new.room.as_str(),
            seq,
            new.from.id.0,
            new.from.name.as_str(),
            new.body.as_str(),
            new.sent_at.0,
            new.client_id.as_ref().map(ClientId::as_str),
            new.image.as_ref().map(|image| image.id.as_str()),
        ])?;
    let seq = u64::try_from(seq).map_err(|e| StoreError::Corrupt(format!("seq {seq}: {e}")))?;
    Ok(Appended::New(new.stored_as(seq)))
}

impl MessageStore for SqliteStore {
    fn append(&self, new: NewMessage) -> StoreFuture<'_, Appended> {
        let writer = self.writer.clone();
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            writer.send((new, reply)).map_err(|_| StoreError::Worker("the writer thread stopped".into()))?;
            answer.await.map_err(|_| StoreError::Worker("the writer thread dropped a message".into()))?
        })
    }

    fn latest(&self, room: RoomName, limit: usize) -> StoreFuture<'_, Page> {
        // Every seq is below the largest one there can be.
        self.before(room, u64::MAX, limit)
    }

    fn after(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        self.run(move |connection| {
            let sql = format!("{SELECT} WHERE m.room = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3");
            Ok(page_of(messages(connection, &sql, params![room.as_str(), seq_param(seq), limit_param(limit)])?, limit))
        })
    }

    fn before(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        self.run(move |connection| {
            let sql = format!("{SELECT} WHERE m.room = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3");
            let newest_first = messages(connection, &sql, params![room.as_str(), seq_param(seq), limit_param(limit)])?;
            let mut page = page_of(newest_first, limit);
            page.messages.reverse();
            Ok(page)
        })
    }

    fn image(&self, id: String) -> StoreFuture<'_, Option<StoredImage>> {
        self.run(move |connection| {
            let row = connection
                .prepare_cached("SELECT content_type, bytes FROM images WHERE id = ?1")?
                .query_row([&id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)))
                .optional()?;
            row.map(|(content_type, bytes)| {
                let kind = ImageKind::from_content_type(&content_type)
                    .map_err(|e| StoreError::Corrupt(format!("type of image {id}: {e}")))?;
                Ok(StoredImage { kind, bytes })
            })
            .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::new;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    crate::store::contract::store_contract!(SqliteStore::in_memory().unwrap());

    #[test]
    fn the_statements_a_message_runs_are_prepared_once_not_again_for_every_message() {
        let mut connection = configured(Connection::open_in_memory()).unwrap();
        migrate(&mut connection).unwrap();
        for i in 0..50 {
            let transaction = connection.transaction().unwrap();
            let from = if i % 2 == 0 { "Ada" } else { "Bob" };
            insert(&transaction, &new("a", from, "hi", Some(&format!("c-{i}")))).unwrap();
            transaction.commit().unwrap();
        }
        for sql in [DUPLICATE.as_str(), NEXT_SEQ] {
            let statement = connection.prepare_cached(sql).unwrap();
            assert_eq!(statement.get_status(rusqlite::StatementStatus::Run), 50, "{sql}");
            assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0, "{sql}");
        }
        // And the check for a duplicate still looks it up in its index, not through the table.
        let plan: String = connection
            .query_row(&format!("EXPLAIN QUERY PLAN {}", *DUPLICATE), ["a", "ada", "c-1"], |row| row.get(3))
            .unwrap();
        assert!(plan.contains("messages_dedup"), "{plan}");
    }

    /// The contract again on a file, where the reader has a connection of its own.
    mod on_a_file {
        use super::*;
        use crate::store::{Page, StoredImage};

        /// A store on a file of its own, deleted with it.
        struct FileStore {
            store: SqliteStore,
            dir: std::path::PathBuf,
        }

        impl FileStore {
            fn new() -> Self {
                let dir = std::env::temp_dir().join(format!("causerie-contract-{}", uuid::Uuid::new_v4()));
                FileStore { store: SqliteStore::open(&dir.join("chat.db")).unwrap(), dir }
            }
        }

        impl Drop for FileStore {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }

        impl MessageStore for FileStore {
            fn append(&self, message: NewMessage) -> StoreFuture<'_, Appended> {
                self.store.append(message)
            }
            fn latest(&self, room: RoomName, limit: usize) -> StoreFuture<'_, Page> {
                self.store.latest(room, limit)
            }
            fn after(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
                self.store.after(room, seq, limit)
            }
            fn before(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
                self.store.before(room, seq, limit)
            }
            fn image(&self, id: String) -> StoreFuture<'_, Option<StoredImage>> {
                self.store.image(id)
            }
        }

        crate::store::contract::store_contract!(FileStore::new());
    }

    #[test]
    fn a_message_that_fails_in_a_batch_is_refused_alone_and_the_others_are_stored() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&mut connection).unwrap();
        let first = new("a", "Ada", "first", Some("c-1"));
        // The same id as the first: the unique index refuses it.
        let mut clash = new("a", "Bob", "clash", Some("c-2"));
        clash.id = first.id.clone();
        let third = new("a", "Cy", "third", None);
        let outcomes = commit_batch(&mut connection, vec![first, clash, third]).unwrap();
        let seqs: Vec<Option<u64>> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(Appended::New(message)) => Some(message.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, vec![Some(1), None, Some(2)]);
        assert!(matches!(outcomes[1], Err(StoreError::Database(_))), "{:?}", outcomes[1]);
        let stored: Vec<String> = messages(&connection, &format!("{SELECT} WHERE m.room = ?1 ORDER BY m.seq"), ["a"])
            .unwrap()
            .into_iter()
            .map(|message| message.body.as_str().to_owned())
            .collect();
        assert_eq!(stored, ["first", "third"]);
    }

    #[test]
    fn a_batch_with_no_failure_is_stored_whole_in_order() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&mut connection).unwrap();
        let batch = vec![new("a", "Ada", "one", None), new("b", "Bob", "two", None), new("a", "Cy", "three", None)];
        let outcomes = commit_batch(&mut connection, batch).unwrap();
        let seqs: Vec<(String, u64)> = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(Appended::New(message)) => (message.room.as_str().to_owned(), message.seq),
                other => panic!("not stored: {other:?}"),
            })
            .collect();
        assert_eq!(seqs, [("a".to_owned(), 1), ("b".to_owned(), 1), ("a".to_owned(), 2)]);
    }

    #[tokio::test]
    async fn sqlites_name_for_a_database_in_memory_opens_one_whose_reads_see_its_writes() {
        let store = SqliteStore::open(Path::new(":memory:")).unwrap();
        store.append(new("a", "Ada", "seen", None)).await.unwrap();
        assert_eq!(store.latest(room("a"), 10).await.unwrap().messages.len(), 1);
    }

    #[tokio::test]
    async fn a_database_file_is_created_with_its_directory_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("causerie-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested").join("chat.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.append(new("a", "Ada", "kept", Some("c-1"))).await.unwrap();
        }
        let reopened = SqliteStore::open(&path).unwrap();
        let page = reopened.latest(room("a"), 10).await.unwrap();
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].body.as_str(), "kept");
        // Migrations ran once: reopening applied nothing twice and the dedup index is still there.
        assert!(matches!(reopened.append(new("a", "Ada", "kept", Some("c-1"))).await.unwrap(), Appended::Duplicate(_)));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
