//! Postgres, for several nodes sharing one chat: the same schema as SQLite (`server/migrations/postgres/`, the
//! same versions) and the same guarantees, held by the database rather than by one process:
//!
//! - **seq without gaps, across nodes**: each transaction takes a transaction-scoped advisory lock on its room,
//!   then inserts each message as the room's last seq plus one. Two nodes appending to one room take turns; a
//!   rolled-back append leaves no hole. On a node, a room's appends are committed together, as many as waited
//!   while the previous commit was under way (group commit, as with SQLite).
//! - **deduplication**: the insert does nothing when the unique index `messages_dedup` already holds the same
//!   (room, sender, client id); the earlier message is then returned instead.
//! - **durability**: the ack goes out after `COMMIT` returned (Postgres's `synchronous_commit`, on by default).

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use protocol::{ChatMessage, ClientId, ImageKind, RoomName};
use tokio_postgres::NoTls;

use super::{
    Appended, MessageStore, NewMessage, Page, SELECT_MESSAGES, StoreError, StoreFuture, StoredImage, StoredRow,
    limit_param, page_of, seq_param,
};

/// Every migration, in order, with the same versions as SQLite's. Each runs once, in a transaction, recorded in
/// `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_messages.sql")),
    (2, include_str!("../../migrations/postgres/0002_images.sql")),
];

/// Connections per node. A room's appends go through its one writer on the node (and then through the room's lock
/// across nodes), so a busy room holds one connection and the rest serve other rooms and reads.
const POOL_SIZE: usize = 16;

/// The longest any step may take: getting a connection, the room's lock, a statement.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// TCP keepalive on the database's connections: probes after this much silence, then every
/// [`KEEPALIVE_INTERVAL`], three times.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest one batch may take in all (a connection, the room's lock, its statements, the commit), whatever
/// the database does or fails to answer: past it, the batch's appends fail and the room's writer goes on.
const BATCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Any number held by the migrations' advisory lock, so that two nodes starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x00ca_5e71;

/// A Postgres database, through a pool of connections.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The appends waiting for their room's writer on this node, by room; a room is here while its writer runs.
    /// One writer per room (a task) takes what is waiting (up to [`MAX_BATCH`]) into one transaction under the
    /// room's lock, then the next: while a commit is on its way to the disk, the room's next messages gather for
    /// the one after, so that a busy room pays one commit for many messages, and holds one connection, never every
    /// pooled one.
    rooms: Rooms,
    /// [`BATCH_DEADLINE`], but in tests.
    batch_deadline: std::time::Duration,
}

/// An append waiting for its room's writer, and where to answer it.
type Waiting = (NewMessage, tokio::sync::oneshot::Sender<Result<Appended, StoreError>>);

/// The appends waiting for each room's writer on this node (see [`PostgresStore::rooms`]).
type Rooms = Arc<std::sync::Mutex<HashMap<RoomName, Vec<Waiting>>>>;

/// At most this many messages go into one transaction, so that the first of a huge burst is not kept waiting.
const MAX_BATCH: usize = 64;

/// Forgets a room's writer if its task ends without finishing (it panicked, or was dropped before it ran, as on
/// a runtime shutting down), so that the room's next append starts another one; the appends it held are answered
/// with an error by their dropped senders.
struct ForgetUnlessDone {
    rooms: Rooms,
    room: RoomName,
    /// Set by a writer that returned: it removed its room itself, and another writer may have started since.
    done: bool,
}

impl Drop for ForgetUnlessDone {
    fn drop(&mut self) {
        if !self.done {
            let mut rooms = self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            rooms.remove(&self.room);
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (postgres://…) and migrates it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| StoreError::Pool(format!("invalid URL: {e}")))?;
        // Nothing waits forever: a node that hangs mid-append would hold its room's lock for every node, and a
        // request would hold its sender's ack. An append that cannot get the lock or a connection fails, and the
        // client sends it again.
        config.connect_timeout(TIMEOUT);
        // A connection whose peer went silent (a cut link, a frozen host) is found dead within about 25 s rather
        // than the system's default of hours: a room's writer waiting on it would otherwise hold the room.
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(3);
        config.options(format!(
            "-c lock_timeout={ms} -c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}",
            ms = TIMEOUT.as_millis()
        ));
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = Self { pool, rooms: Arc::default(), batch_deadline: BATCH_DEADLINE };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Pool(e.to_string()))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // One transaction under one lock, the bookkeeping table included: nodes starting together migrate one
        // after the other. (Even `CREATE TABLE IF NOT EXISTS` fails when two sessions run it at the same instant.)
        let transaction = client.transaction().await?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
        for (version, sql) in MIGRATIONS {
            let applied =
                transaction.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version]).await?;
            if applied.is_none() {
                transaction.batch_execute(sql).await?;
                transaction
                    .execute(
                        "INSERT INTO schema_migrations (version, applied_at) \
                         VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)",
                        &[version],
                    )
                    .await?;
                tracing::info!(version, "applied a database migration");
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn query_messages(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let rows = client.query(&statement, params).await?;
        rows.iter().map(|row| row_of(row)?.into_message()).collect()
    }

    /// Queues `new` for its room's writer, starting one if none runs, and waits for its outcome.
    async fn append_now(&self, new: NewMessage) -> Result<Appended, StoreError> {
        let room = new.room.clone();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let start = {
            let mut rooms = self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match rooms.get_mut(&room) {
                Some(waiting) => {
                    waiting.push((new, reply));
                    false
                }
                None => {
                    rooms.insert(room.clone(), vec![(new, reply)]);
                    true
                }
            }
        };
        // A task of its own, not this caller's: a sender that goes away (its connection closed) must not take the
        // writing of the others' messages with it.
        if start {
            let forget = ForgetUnlessDone { rooms: Arc::clone(&self.rooms), room: room.clone(), done: false };
            tokio::spawn(self.clone().write_room(room, forget));
        }
        answer.await.map_err(|_| StoreError::Worker("the room's writer stopped before answering".into()))?
    }

    /// A room's writer: what is waiting for the room (up to [`MAX_BATCH`]) in one transaction, then again, until
    /// nothing is.
    async fn write_room(self, room: RoomName, mut forget: ForgetUnlessDone) {
        loop {
            let batch: Vec<Waiting> = {
                let mut rooms = self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let Some(waiting) = rooms.get_mut(&room) else {
                    forget.done = true;
                    return;
                };
                if waiting.is_empty() {
                    // Under the lock that appends queue under: the next one starts a new writer.
                    rooms.remove(&room);
                    forget.done = true;
                    return;
                }
                let take = waiting.len().min(MAX_BATCH);
                waiting.drain(..take).collect()
            };
            let (messages, replies): (Vec<NewMessage>, Vec<_>) = batch.into_iter().unzip();
            let outcomes = match self.append_within_deadline(&messages).await {
                Ok(outcomes) => outcomes,
                // One message's failure (a constraint, a value Postgres refused) rolled back the whole
                // transaction: each again on its own, so that it fails alone. Not for a failure of the database
                // or the way to it (no connection, a lock or statement timed out): each message would wait for it
                // again, one after the other, and they all fail together instead.
                Err(e) if messages.len() > 1 && e.is_one_messages_fault() => {
                    tracing::debug!(error = %e, messages = messages.len(), "a batch failed whole; appending one by one");
                    let mut outcomes = Vec::with_capacity(messages.len());
                    for message in &messages {
                        outcomes.push(match self.append_within_deadline(std::slice::from_ref(message)).await {
                            Ok(mut one) => one.pop().unwrap_or_else(|| Err(StoreError::Batch("no outcome".into()))),
                            Err(e) => Err(e),
                        });
                    }
                    outcomes
                }
                Err(e) => {
                    let text = e.to_string();
                    let mut outcomes = vec![Err(e)];
                    outcomes.extend((1..messages.len()).map(|_| Err(StoreError::Batch(text.clone()))));
                    outcomes
                }
            };
            for (outcome, reply) in outcomes.into_iter().zip(replies) {
                // The sender may have given up waiting (its connection closed); the message is stored anyway.
                let _ = reply.send(outcome);
            }
        }
    }

    /// [`Self::append_together`] on a pooled connection, given up after the store's batch deadline
    /// ([`BATCH_DEADLINE`]). A batch given up on while its commit was on its way may still have been stored: its
    /// senders, told it failed, send again, and a message with a client id is then recognised (a retry); one
    /// without may be stored twice.
    async fn append_within_deadline(
        &self,
        messages: &[NewMessage],
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let deadline = tokio::time::Instant::now() + self.batch_deadline;
        let gave_up = || {
            StoreError::Pool(format!("the database did not answer within {:.1} s", self.batch_deadline.as_secs_f64()))
        };
        let mut client = tokio::time::timeout_at(deadline, self.client()).await.map_err(|_| gave_up())??;
        match tokio::time::timeout_at(deadline, Self::append_together(&mut client, messages)).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                // Given up on mid-conversation, the connection still owes the answers to what this batch sent
                // (tokio-postgres queues the rollback behind them): back in the pool, the next batch would wait
                // behind a database that has not answered for the whole deadline. Out of the pool instead, never
                // reused; the next batch gets another connection. (It ends once the database answers, or
                // keepalive finds it dead.)
                drop(deadpool_postgres::Object::take(client));
                Err(gave_up())
            }
        }
    }

    /// `messages`, all of one room, in one transaction under the room's lock: each one's outcome in order, or an
    /// error when any statement failed (the transaction is then rolled back, nothing stored).
    async fn append_together(
        client: &mut deadpool_postgres::Object,
        messages: &[NewMessage],
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let Some(first) = messages.first() else { return Ok(Vec::new()) };
        // Prepared once per connection (deadpool caches them), so that below each statement is one message.
        let lock = client.prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").await?;
        let insert_image = client.prepare_cached(INSERT_IMAGE).await?;
        let insert_message = client.prepare_cached(INSERT_MESSAGE).await?;
        let transaction = client.transaction().await?;
        let room = first.room.as_str();
        let inserts = async {
            let mut rows = Vec::with_capacity(messages.len());
            for new in messages {
                let mut image_stored = false;
                if let Some(image) = &new.image {
                    let size = i64::try_from(image.bytes.len()).unwrap_or(i64::MAX);
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
                        &image.id,
                        &image.kind.content_type(),
                        &size,
                        &i64::from(image.width),
                        &i64::from(image.height),
                        &image.bytes.as_ref(),
                    ];
                    // 0 when the id is taken: a retry carrying the very image its original stored.
                    image_stored = transaction.execute(&insert_image, &params).await? == 1;
                }
                let client_id = new.client_id.as_ref().map(ClientId::as_str);
                let image_id = new.image.as_ref().map(|image| image.id.as_str());
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                    &new.id.0,
                    &room,
                    &new.from.id.0,
                    &new.from.name.as_str(),
                    &new.body.as_str(),
                    &new.sent_at.0,
                    &client_id,
                    &image_id,
                ];
                rows.push((transaction.query_opt(&insert_message, &params).await?, image_stored));
            }
            Ok::<_, tokio_postgres::Error>(rows)
        };
        // Pipelined: the lock and the first insert go out together and run in this order (`biased`: polled, hence
        // sent, in order), so that the room's lock is held before any insert reads the room's last seq.
        let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&room];
        let (locked, rows) = tokio::join!(biased; transaction.execute(&lock, &lock_params), inserts);
        locked?;
        let mut outcomes = Vec::with_capacity(messages.len());
        for (new, (row, image_stored)) in messages.iter().zip(rows?) {
            let Some(row) = row else {
                // Nothing inserted: the sender already sent this client id to this room (the dedup index), before
                // or earlier in this batch. Under the room's lock nothing else can conflict.
                let client_id = new.client_id.as_ref().map(ClientId::as_str);
                let sql = format!("{SELECT_MESSAGES} WHERE m.room = $1 AND m.sender_id = $2 AND m.client_id = $3");
                let original = transaction.query_opt(&sql, &[&room, &new.from.id.0, &client_id]).await?;
                if let Some(image) = new.image.as_ref().filter(|_| image_stored) {
                    // The retry's own copy of the image, stored just above under an id of its own: the original's
                    // is the one kept. (The transaction is committed for the batch's other messages.)
                    transaction.execute("DELETE FROM images WHERE id = $1", &[&image.id]).await?;
                }
                match original {
                    Some(row) => outcomes.push(Ok(Appended::Duplicate(row_of(&row)?.into_message()?))),
                    None => return Err(StoreError::Corrupt(format!("message {} conflicted with nothing", new.id.0))),
                }
                continue;
            };
            let seq: i64 = row.try_get(0)?;
            let seq = u64::try_from(seq).map_err(|e| StoreError::Corrupt(format!("seq {seq}: {e}")))?;
            outcomes.push(Ok(Appended::New(new.stored_as(seq))));
        }
        transaction.commit().await?;
        Ok(outcomes)
    }
}

/// Nothing when the id is taken: a retry carrying the very image its original stored (whose message insert then
/// does nothing either; the retry's own image, under a new id, is deleted again in the batch's transaction).
const INSERT_IMAGE: &str = "INSERT INTO images (id, content_type, size, width, height, bytes) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";

/// The next seq of the room, computed in the insert itself; nothing when the (room, sender, client id) is taken.
const INSERT_MESSAGE: &str = "INSERT INTO messages (id, room, seq, sender_id, sender_name, body, sent_at, client_id, image_id) \
     SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5, $6, $7, $8 FROM messages WHERE room = $2 \
     ON CONFLICT (room, sender_id, client_id) WHERE client_id IS NOT NULL DO NOTHING RETURNING seq";

/// A row of [`SELECT_MESSAGES`].
fn row_of(row: &tokio_postgres::Row) -> Result<StoredRow, StoreError> {
    let image = match row.try_get::<_, Option<String>>(8)? {
        None => None,
        Some(image_id) => Some((image_id, row.try_get(9)?, row.try_get(10)?, row.try_get(11)?, row.try_get(12)?)),
    };
    Ok(StoredRow {
        id: row.try_get(0)?,
        room: row.try_get(1)?,
        seq: row.try_get(2)?,
        sender_id: row.try_get(3)?,
        sender_name: row.try_get(4)?,
        body: row.try_get(5)?,
        sent_at: row.try_get(6)?,
        client_id: row.try_get(7)?,
        image,
    })
}

impl MessageStore for PostgresStore {
    fn append(&self, new: NewMessage) -> StoreFuture<'_, Appended> {
        Box::pin(self.append_now(new))
    }

    fn latest(&self, room: RoomName, limit: usize) -> StoreFuture<'_, Page> {
        self.before(room, u64::MAX, limit)
    }

    fn after(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        Box::pin(async move {
            let sql = format!("{SELECT_MESSAGES} WHERE m.room = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3");
            let messages = self.query_messages(&sql, &[&room.as_str(), &seq_param(seq), &limit_param(limit)]).await?;
            Ok(page_of(messages, limit))
        })
    }

    fn before(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        Box::pin(async move {
            let sql = format!("{SELECT_MESSAGES} WHERE m.room = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3");
            let newest_first =
                self.query_messages(&sql, &[&room.as_str(), &seq_param(seq), &limit_param(limit)]).await?;
            let mut page = page_of(newest_first, limit);
            page.messages.reverse();
            Ok(page)
        })
    }

    fn image(&self, id: String) -> StoreFuture<'_, Option<StoredImage>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client.query_opt("SELECT content_type, bytes FROM images WHERE id = $1", &[&id]).await?;
            row.map(|row| {
                let content_type: String = row.try_get(0)?;
                let kind = ImageKind::from_content_type(&content_type)
                    .map_err(|e| StoreError::Corrupt(format!("type of image {id}: {e}")))?;
                Ok(StoredImage { kind, bytes: row.try_get(1)? })
            })
            .transpose()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Child, ChildStdin, Command, Stdio};
    use std::sync::{Mutex, OnceLock};

    use super::*;
    use crate::store::contract::new;

    /// One Postgres server for this test process, started by `scripts/test-service` (which stops it when this
    /// process ends and closes its stdin). Its stdin and the child are kept here for that.
    static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();

    /// The server's port, and what keeps it running: the script's process and the write end of its stdin.
    struct TestServer {
        port: u16,
        _running: Mutex<(Child, ChildStdin)>,
    }

    fn server_port() -> u16 {
        let server = SERVER.get_or_init(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-service");
            let mut child = Command::new(script)
                .arg("postgres")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("could not run {script}: {e}"))?;
            let stdin = child.stdin.take().ok_or("no stdin")?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
            let port = line.strip_prefix("ready ").and_then(|port| port.trim().parse().ok()).ok_or_else(|| {
                format!("{script} postgres did not start (it said {line:?}): is postgresql installed?")
            })?;
            Ok(TestServer { port, _running: Mutex::new((child, stdin)) })
        });
        match server {
            Ok(server) => server.port,
            Err(e) => panic!("{e}"),
        }
    }

    /// A new, empty database on the test server, and its URL.
    pub async fn empty_database() -> String {
        let port = server_port();
        let admin = format!("postgres://causerie@127.0.0.1:{port}/postgres");
        let (client, connection) = tokio_postgres::connect(&admin, NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let name = format!("t{}", uuid::Uuid::new_v4().simple());
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        drop(client);
        let _ = connection.await;
        format!("postgres://causerie@127.0.0.1:{port}/{name}")
    }

    async fn store() -> PostgresStore {
        PostgresStore::connect(&empty_database().await).await.unwrap()
    }

    crate::store::contract::store_contract!(store().await);

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    /// The bodies of the latest ten messages of `name`, oldest first.
    async fn bodies(store: &PostgresStore, name: &str) -> Vec<String> {
        let page = store.latest(room(name), 10).await.unwrap();
        page.messages.into_iter().map(|m| m.body.as_str().to_owned()).collect()
    }

    #[tokio::test]
    async fn two_nodes_appending_to_one_room_share_one_sequence_and_one_dedup() {
        let url = empty_database().await;
        let (a, b) = (PostgresStore::connect(&url).await.unwrap(), PostgresStore::connect(&url).await.unwrap());
        let mut sends = Vec::new();
        for i in 0..30 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            sends.push(tokio::spawn(async move { store.append(new("r", "Ada", &format!("m{i}"), None)).await }));
        }
        // The same retried message arriving at both nodes at once is stored once.
        let (first, second) = tokio::join!(
            a.append(new("r", "Bob", "once", Some("c-1"))),
            b.append(new("r", "Bob", "once", Some("c-1")))
        );
        let mut seqs = Vec::new();
        for send in sends {
            seqs.push(crate::store::contract::stored(send.await.unwrap().unwrap()).seq);
        }
        let outcomes = [first.unwrap(), second.unwrap()];
        assert_eq!(outcomes.iter().filter(|o| matches!(o, Appended::New(_))).count(), 1, "{outcomes:?}");
        seqs.push(outcomes.iter().find_map(|o| if let Appended::New(m) = o { Some(m.seq) } else { None }).unwrap());
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=31).collect::<Vec<u64>>());
        assert_eq!(a.latest(room("r"), 100).await.unwrap().messages.len(), 31);
    }

    #[tokio::test]
    async fn appends_to_one_room_at_once_are_committed_together_and_one_that_fails_fails_alone() {
        let store = store().await;
        let first = new("r", "Ada", "first", None);
        // The same id as the first: the unique index on ids refuses it, and with it the transaction it is in.
        let mut clash = new("r", "Bob", "clash", None);
        clash.id = first.id.clone();
        // Queued together (each append queues before it waits), so the room's writer takes them in one batch.
        let (a, b, c) =
            tokio::join!(store.append(first), store.append(clash), store.append(new("r", "Cy", "third", None)));
        assert_eq!(crate::store::contract::stored(a.unwrap()).seq, 1);
        assert!(matches!(b, Err(StoreError::Postgres(_))), "{b:?}");
        assert_eq!(crate::store::contract::stored(c.unwrap()).seq, 2);
        assert_eq!(bodies(&store, "r").await, ["first", "third"]);
        // The room's writer is gone once it had nothing left, and the next append starts another.
        assert!(store.rooms.lock().unwrap().is_empty());
        assert_eq!(crate::store::contract::stored(store.append(new("r", "Ada", "later", None)).await.unwrap()).seq, 3);
    }

    #[tokio::test]
    async fn a_retry_in_the_same_batch_as_its_original_is_a_duplicate_and_leaves_no_image_behind() {
        use crate::store::NewImage;
        let store = store().await;
        let with_image = |id: &str| {
            let mut message = new("r", "Ada", "cat.png", Some("c-1"));
            message.image = Some(NewImage {
                id: id.into(),
                kind: ImageKind::Png,
                width: 1,
                height: 1,
                bytes: bytes::Bytes::from_static(b"png"),
            });
            message
        };
        let (original, retry) = tokio::join!(store.append(with_image("img-a")), store.append(with_image("img-b")));
        let original = crate::store::contract::stored(original.unwrap());
        assert_eq!(retry.unwrap(), Appended::Duplicate(original));
        assert!(store.image("img-a".into()).await.unwrap().is_some());
        assert!(store.image("img-b".into()).await.unwrap().is_none(), "the retry's image was kept");
    }

    #[test]
    fn a_room_writer_that_ends_without_finishing_is_forgotten_and_its_appends_are_told() {
        let rooms: Rooms = Arc::default();
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        rooms.lock().unwrap().insert(room("r"), vec![(new("r", "Ada", "queued", None), reply)]);
        // Finished: the writer removed its room itself, and a new writer's entry must stay.
        drop(ForgetUnlessDone { rooms: Arc::clone(&rooms), room: room("r"), done: true });
        assert!(rooms.lock().unwrap().contains_key(&room("r")));
        // Dropped before it finished (a panic, a runtime shutting down): the room is free for a new writer.
        drop(ForgetUnlessDone { rooms: Arc::clone(&rooms), room: room("r"), done: false });
        assert!(rooms.lock().unwrap().is_empty());
        let heard = answer.try_recv();
        assert!(
            matches!(heard, Err(tokio::sync::oneshot::error::TryRecvError::Closed)),
            "the queued append hears that its writer is gone"
        );
    }

    #[tokio::test]
    async fn reconnecting_to_a_migrated_database_migrates_nothing_twice() {
        let url = empty_database().await;
        PostgresStore::connect(&url).await.unwrap().append(new("a", "Ada", "kept", Some("c-1"))).await.unwrap();
        let again = PostgresStore::connect(&url).await.unwrap();
        assert!(matches!(again.append(new("a", "Ada", "kept", Some("c-1"))).await.unwrap(), Appended::Duplicate(_)));
        assert_eq!(again.latest(room("a"), 10).await.unwrap().messages.len(), 1);
    }

    #[tokio::test]
    async fn nodes_starting_together_on_a_new_database_all_migrate_it() {
        for _ in 0..5 {
            let url = empty_database().await;
            let nodes: Vec<_> = (0..4).map(|_| PostgresStore::connect(&url)).collect();
            for node in futures::future::join_all(nodes).await {
                node.unwrap();
            }
        }
    }

    /// A TCP relay to the test server that can stop passing bytes, as a database host that hangs or a link that
    /// goes silent would, while both connections stay open.
    struct Relay {
        port: u16,
        frozen: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Relay {
        async fn start(target: u16) -> Relay {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (frozen, watch) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let ((client_in, client_out), (server_in, server_out)) = (client.into_split(), server.into_split());
                    tokio::spawn(Self::pass(client_in, server_out, watch.clone()));
                    tokio::spawn(Self::pass(server_in, client_out, watch.clone()));
                }
            });
            Relay { port, frozen, task }
        }

        async fn pass(
            mut from: tokio::net::tcp::OwnedReadHalf,
            mut to: tokio::net::tcp::OwnedWriteHalf,
            mut frozen: tokio::sync::watch::Receiver<bool>,
        ) {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut buffer = vec![0; 16 * 1024];
            loop {
                // Nothing is read while frozen, nor is what was read passed on.
                if frozen.wait_for(|frozen| !frozen).await.is_err() {
                    return;
                }
                let read = match from.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                if frozen.wait_for(|frozen| !frozen).await.is_err() || to.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
        }

        fn freeze(&self, frozen: bool) {
            self.frozen.send_replace(frozen);
        }
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    #[tokio::test]
    async fn a_batch_the_database_never_answers_fails_at_the_deadline_and_the_room_goes_on_afterwards() {
        let direct = empty_database().await;
        let relay = Relay::start(server_port()).await;
        let url = direct.replace(&format!(":{}/", server_port()), &format!(":{}/", relay.port));
        let mut store = PostgresStore::connect(&url).await.unwrap();
        store.batch_deadline = std::time::Duration::from_millis(500);
        crate::store::contract::stored(store.append(new("r", "Ada", "before", None)).await.unwrap());

        let pooled = store.pool.status().size;
        relay.freeze(true);
        // The test's own limit, far past the deadline: without the deadline the append would wait for good.
        let frozen =
            tokio::time::timeout(std::time::Duration::from_secs(20), store.append(new("r", "Ada", "lost", None)))
                .await
                .expect("the append is answered once its deadline passes");
        let err = frozen.expect_err("nothing answered, so nothing is acknowledged");
        assert!(err.to_string().contains("did not answer within 0.5 s"), "{err}");
        // Its BEGIN still unanswered: pooled again, the next batch would wait behind it.
        assert_eq!(store.pool.status().size, pooled - 1, "the connection given up on is not pooled again");

        relay.freeze(false);
        let after = store.append(new("r", "Ada", "after", None)).await.unwrap();
        assert_eq!(crate::store::contract::stored(after).seq, 2, "the given-up batch stored nothing");
        assert_eq!(bodies(&store, "r").await, ["before", "after"]);
    }

    #[tokio::test]
    async fn an_unreachable_database_is_a_clear_error() {
        let err = PostgresStore::connect("postgres://causerie@127.0.0.1:1/nowhere").await.err().unwrap();
        assert!(err.to_string().starts_with("no Postgres connection"), "{err}");
    }
}
