//! The scenarios of issue #6, each run against one server: fan-out under rising load, idle connections, a connect
//! storm with a restart, durable sends, and the join page's server-side rendering.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use protocol::RoomName;
use serde::Serialize;
use sio_client::{SocketEvent, TransportKind};

use crate::stats::{Latency, Samples};
use crate::target::{Launcher, Server, Target, Usage};
use crate::users::{Probe, Recorder, User, now_micros, receive, wait_until};

/// Browsers' way: long-polling first, then the upgrade to WebSocket.
const BROWSER_TRANSPORTS: &[TransportKind] = &[TransportKind::Polling, TransportKind::WebSocket];
const WEBSOCKET_ONLY: &[TransportKind] = &[TransportKind::WebSocket];

fn room(name: &str) -> anyhow::Result<RoomName> {
    RoomName::parse(name).with_context(|| format!("room name {name:?}"))
}

/// Opens `count` users in rooms of `per_room`, `concurrency` at a time, each joined; returns them with the time
/// each took from opening to its join's answer. User `i` connects to `urls[i % urls.len()]`: with several nodes,
/// every room has people on each.
async fn connect_users(
    urls: &[String],
    count: u32,
    per_room: u32,
    transports: &[TransportKind],
    concurrency: usize,
    prefix: &str,
) -> anyhow::Result<(Vec<User>, Samples)> {
    let (users, connect, failures) = try_connect_users(urls, count, per_room, transports, concurrency, prefix).await?;
    if let Some(first) = failures.into_iter().next() {
        return Err(first);
    }
    Ok((users, connect))
}

/// As [`connect_users`], but users whose join failed are counted out instead of failing the run.
async fn try_connect_users(
    urls: &[String],
    count: u32,
    per_room: u32,
    transports: &[TransportKind],
    concurrency: usize,
    prefix: &str,
) -> anyhow::Result<(Vec<User>, Samples, Vec<anyhow::Error>)> {
    anyhow::ensure!(!urls.is_empty(), "no server to connect to");
    let mut users = Vec::with_capacity(count as usize);
    let mut failures = Vec::new();
    let mut connect = Samples::default();
    let indices: Vec<u32> = (0..count).collect();
    for wave in indices.chunks(concurrency.max(1)) {
        let joins = wave.iter().map(|&index| async move {
            let started = Instant::now();
            let url = &urls[index as usize % urls.len()];
            let user = User::open(url, index, &room(&format!("{prefix}{}", index / per_room.max(1)))?, transports)?;
            let joined = user.join(None).await.with_context(|| format!("user {index} joining"));
            anyhow::Ok(joined.map(|_| (user, started.elapsed())))
        });
        for joined in futures::future::join_all(joins).await {
            match joined? {
                Ok((user, took)) => {
                    connect.record(took);
                    users.push(user);
                }
                Err(e) => failures.push(e),
            }
        }
    }
    Ok((users, connect, failures))
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Fan-out under rising load

#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub rooms: u32,
    pub users_per_room: u32,
    pub step: Duration,
    /// Messages sent per second, all users together, one step each, until the p99 passes `stop_p99_ms`.
    pub rates: Vec<u32>,
    pub stop_p99_ms: f64,
    /// Once a step passes `stop_p99_ms`, how many more steps halve the gap between the last step within it and
    /// the first past it: the rates are a thousand apart, and a maximum found only to the step below understates a
    /// server by up to a step (and "Node's maximum load", where the p99s are compared, can then be one where Node
    /// is far from its limit).
    pub refine: u32,
    /// After the climb, how many more steps run at the rate where the p99s are compared: Node's maximum (its
    /// own, for Node). Near a server's limit its p99 jumps between a few milliseconds and a hundred from one step
    /// to the next (Node's, in one run: 97.1 ms at 10,000 sends/s, 8.5 ms at 10,250, 199 ms at 10,380), and the
    /// climb's maximum is by its making a step where that draw came out low; the comparison takes the median of
    /// that step and these.
    pub repeats: u32,
    /// Where the repeats run: another target's maximum (see [`Self::through`]); `None`, this target's own.
    pub compare_at: Option<u32>,
}

impl FanoutConfig {
    /// The same climb, passing through `rate` too (another target's maximum, to compare the two there), and
    /// repeating that rate after it.
    pub fn through(&self, rate: u32) -> Self {
        let mut config = self.clone();
        if !config.rates.contains(&rate) {
            config.rates.push(rate);
            config.rates.sort_unstable();
        }
        config.compare_at = Some(rate);
        config
    }
}

/// The rate halfway between the highest that was within the limit and the lowest that was not, to the nearest
/// ten sends a second; `None` once the two are too close to split.
fn halfway(within: u32, past: u32) -> Option<u32> {
    let mid = (within + (past.saturating_sub(within)) / 2 + 5) / 10 * 10;
    (mid > within && mid < past).then_some(mid)
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutStep {
    pub sends_per_second: u32,
    pub offered_deliveries_per_second: f64,
    pub deliveries_per_second: f64,
    pub latency: Latency,
    pub ack: Latency,
    pub accepted: u64,
    pub failed: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub cpu_percent: f64,
    /// The server's CPU time per delivery: what the server spends, whatever the load generator can keep up with.
    pub cpu_micros_per_delivery: f64,
    pub rss_bytes: u64,
}

impl FanoutStep {
    /// A step for tests: its rate, p99 and server CPU as given, 9 deliveries a send, everything else zero.
    #[cfg(test)]
    pub(crate) fn sample(sends_per_second: u32, p99: f64, cpu_percent: f64) -> Self {
        FanoutStep {
            sends_per_second,
            offered_deliveries_per_second: 0.0,
            deliveries_per_second: f64::from(sends_per_second) * 9.0,
            latency: Latency { p99, ..Latency::default() },
            ack: Latency::default(),
            accepted: 0,
            failed: 0,
            lost: 0,
            duplicates: 0,
            cpu_percent,
            cpu_micros_per_delivery: 0.0,
            rss_bytes: 0,
        }
    }

    /// Every message delivered once, none refused, p99 within the limit.
    pub fn within(&self, p99_ms: f64) -> bool {
        self.lost == 0 && self.failed == 0 && self.duplicates == 0 && self.latency.p99 <= p99_ms
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutResult {
    pub target: Target,
    pub connections: u32,
    pub connect: Latency,
    pub steps: Vec<FanoutStep>,
    /// The steps run again after the climb, at the rate where the p99s are compared (see
    /// [`FanoutConfig::repeats`]).
    pub repeats: Vec<FanoutStep>,
}

impl FanoutResult {
    /// The p99s measured at `rate`, in the climb and in the repeats, in the order they ran.
    pub fn p99s_at(&self, rate: u32) -> Vec<f64> {
        let at = |s: &&FanoutStep| s.sends_per_second == rate;
        self.steps.iter().filter(at).chain(self.repeats.iter().filter(at)).map(|s| s.latency.p99).collect()
    }

    /// The median of [`Self::p99s_at`] (of the middle two, for an even count); `None` if `rate` never ran.
    pub fn median_p99_at(&self, rate: u32) -> Option<f64> {
        let mut p99s = self.p99s_at(rate);
        p99s.sort_by(f64::total_cmp);
        let n = p99s.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(p99s[n / 2]),
            _ => Some((p99s[n / 2 - 1] + p99s[n / 2]) / 2.0),
        }
    }

    /// The highest step with every message delivered and p99 within `p99_ms`.
    pub fn best(&self, p99_ms: f64) -> Option<&FanoutStep> {
        self.steps.iter().filter(|s| s.within(p99_ms)).max_by(|a, b| {
            a.deliveries_per_second.partial_cmp(&b.deliveries_per_second).unwrap_or(std::cmp::Ordering::Equal)
        })
    }
}

pub async fn fanout(launcher: &Launcher, target: Target, config: &FanoutConfig) -> anyhow::Result<FanoutResult> {
    let server = Server::start(launcher, target).await?;
    fanout_on(target, &[&server], config).await
}

/// The fan-out against servers already running: the users spread over them, their CPU and memory added up.
pub async fn fanout_on(target: Target, servers: &[&Server], config: &FanoutConfig) -> anyhow::Result<FanoutResult> {
    let urls: Vec<String> = servers.iter().map(|server| server.url()).collect();
    let total = config.rooms * config.users_per_room;
    let (mut users, connect) =
        connect_users(&urls, total, config.users_per_room, WEBSOCKET_ONLY, 200, "fanout-").await?;
    let recorder = Arc::new(Recorder::default());
    let receivers: Vec<_> = users.iter_mut().filter_map(|user| receive(user, recorder.clone())).collect();
    let users: Vec<Arc<User>> = users.into_iter().map(Arc::new).collect();
    let mut steps = Vec::new();
    let mut step = 0u32;
    // The climb: `within` is the highest rate within the limit so far, `past` the first one beyond it.
    let mut within = None;
    let mut past = None;
    for &rate in &config.rates {
        let result = fanout_step(servers, &users, &recorder, step, rate, config).await?;
        step += 1;
        let ok = result.within(config.stop_p99_ms);
        steps.push(result);
        if !ok {
            past = Some(rate);
            break;
        }
        within = Some(rate);
    }
    // Then closer to the limit, between the last step within it and the first past it.
    if let (Some(mut low), Some(mut high)) = (within, past) {
        for _ in 0..config.refine {
            let Some(rate) = halfway(low, high) else { break };
            let result = fanout_step(servers, &users, &recorder, step, rate, config).await?;
            step += 1;
            if result.within(config.stop_p99_ms) {
                low = rate;
            } else {
                high = rate;
            }
            steps.push(result);
        }
    }
    // Then the rate where the p99s are compared, again: by now the target has run past its limit at least once,
    // and each repeat starts once the step before it has delivered everything (as every step does).
    let compare_at = config.compare_at.or_else(|| {
        let within = steps.iter().filter(|s| s.within(config.stop_p99_ms));
        within.map(|s| s.sends_per_second).max()
    });
    let mut repeats = Vec::new();
    if let Some(rate) = compare_at {
        for _ in 0..config.repeats {
            repeats.push(fanout_step(servers, &users, &recorder, step, rate, config).await?);
            step += 1;
        }
    }
    steps.sort_by_key(|s| s.sends_per_second);
    drop(users);
    for receiver in receivers {
        receiver.abort();
    }
    Ok(FanoutResult { target, connections: total, connect: connect.summary(), steps, repeats })
}

/// Where in the sending interval user `index` (of room `index / per_room`) sends, from 0 to `per_room × rooms`:
/// room by room in turn, so that a room's members are spread over the interval as people on their own
/// schedules are, and not ten in a row.
fn phase_slot(index: u32, per_room: u32, rooms: u32) -> u32 {
    let per_room = per_room.max(1);
    (index % per_room) * rooms + index / per_room
}

async fn fanout_step(
    servers: &[&Server],
    users: &[Arc<User>],
    recorder: &Arc<Recorder>,
    step: u32,
    rate: u32,
    config: &FanoutConfig,
) -> anyhow::Result<FanoutStep> {
    let count = users.len() as f64;
    // Each user sends every `interval`, the users' phases spread evenly over it.
    let interval = Duration::from_secs_f64(count / f64::from(rate.max(1)));
    let sends_each = ((config.step.as_secs_f64() / interval.as_secs_f64()).round() as u32).max(1);
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(std::sync::Mutex::new(Samples::default()));
    let before = Usage::total(servers)?;
    let started = tokio::time::Instant::now();
    let senders: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let (user, accepted, failed, acks) = (user.clone(), accepted.clone(), failed.clone(), acks.clone());
            let slot = phase_slot(i as u32, config.users_per_room, config.rooms);
            let phase = interval.mul_f64(f64::from(slot) / count);
            tokio::spawn(async move {
                let mut pending = tokio::task::JoinSet::new();
                for n in 0..sends_each {
                    tokio::time::sleep_until(started + phase + interval * n).await;
                    // The sends already acknowledged are let go of as the step goes. Kept to the end, the 60,000
                    // finished tasks of a step at 12,000 sends/s were all joined and freed in its last few
                    // milliseconds, on the generator's one core, and the deliveries sent then waited up to 60 ms:
                    // the step's p99.9 was 33-38 ms for that alone (4-5 ms since).
                    while pending.try_join_next().is_some() {}
                    let probe = Probe { step, sent_micros: now_micros(), sender: user.index, n };
                    let (user, accepted, failed, acks) = (user.clone(), accepted.clone(), failed.clone(), acks.clone());
                    // Sent without waiting for the previous ack: the offered load does not slow down with the server.
                    pending.spawn(async move {
                        let sent = Instant::now();
                        match user.send(probe.body()).await {
                            Ok(_) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                                acks.lock().unwrap_or_else(|p| p.into_inner()).record(sent.elapsed());
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
                while pending.join_next().await.is_some() {}
            })
        })
        .collect();
    for sender in futures::future::join_all(senders).await {
        sender.context("a sender task failed")?;
    }
    let per_message = u64::from(config.users_per_room.saturating_sub(1));
    let expected = accepted.load(Ordering::Relaxed) * per_message;
    wait_until(Duration::from_secs(10), || recorder.unique(step) >= expected).await;
    let after = Usage::total(servers)?;
    let received = recorder.take(step);
    let elapsed = received
        .last_at
        .map(|at| at.saturating_duration_since(started.into_std()))
        .unwrap_or(config.step)
        .max(config.step / 2);
    let ack = acks.lock().unwrap_or_else(|p| p.into_inner()).summary();
    let result = FanoutStep {
        sends_per_second: rate,
        offered_deliveries_per_second: f64::from(rate) * per_message as f64,
        deliveries_per_second: received.unique as f64 / elapsed.as_secs_f64(),
        latency: received.latencies.summary(),
        ack,
        accepted: accepted.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        lost: expected.saturating_sub(received.unique),
        duplicates: received.duplicates,
        cpu_percent: after.cpu_percent_since(&before),
        cpu_micros_per_delivery: (after.cpu_seconds - before.cpu_seconds) * 1e6 / (received.unique.max(1) as f64),
        rss_bytes: after.rss_bytes,
    };
    eprintln!(
        "  {:>6} sends/s: {:>9.0} deliveries/s, p50 {:.1} ms, p99 {:.1} ms, lost {}, cpu {:.0}%",
        rate, result.deliveries_per_second, result.latency.p50, result.latency.p99, result.lost, result.cpu_percent
    );
    Ok(result)
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Idle connections

#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub target: Target,
    /// Messages each room held before anyone joined: every join's answer carried them.
    pub history: u32,
    /// How many messages a join's answer carried, asked again once the figures are taken: `history`, or fewer
    /// where the server cuts its answers (to a number of messages, or of bytes).
    pub history_seen: usize,
    /// Connections that joined (and were measured).
    pub connections: u32,
    /// Joins that got no answer: counted out, reported.
    pub failed: u32,
    pub rss_before: u64,
    pub rss_after: u64,
    pub bytes_per_connection: f64,
    pub connect: Latency,
    pub seconds_to_connect_all: f64,
    /// The server's CPU use while everyone sat idle, in percent of one core (heartbeats, timers).
    pub idle_cpu_percent: f64,
}

/// Users per room in the idle scenario.
const IDLE_PER_ROOM: u32 = 100;

/// `connections` idle users in rooms of [`IDLE_PER_ROOM`], each room holding `history` messages before they join.
pub async fn idle(
    launcher: &Launcher,
    target: Target,
    connections: u32,
    history: u32,
    idle_for: Duration,
) -> anyhow::Result<IdleResult> {
    let server = Server::start(launcher, target).await?;
    // One connection first, so that the baseline includes whatever the first connection initialises.
    let (warm, _) = connect_users(&[server.url()], 1, 1, WEBSOCKET_ONLY, 1, "warm-").await?;
    // The history goes in before the baseline: what is measured is what each joined connection holds, not the
    // stored messages.
    seed_history(&server.url(), connections.div_ceil(IDLE_PER_ROOM), "idle-", history).await?;
    let before = server.usage()?;
    let started = Instant::now();
    let (users, connect, failures) =
        try_connect_users(&[server.url()], connections, IDLE_PER_ROOM, WEBSOCKET_ONLY, 200, "idle-").await?;
    if let Some(first) = failures.first() {
        eprintln!("  {} of {connections} joins failed, the first: {first:#}", failures.len());
    }
    let connections = users.len() as u32;
    let seconds_to_connect_all = started.elapsed().as_secs_f64();
    // Idle: nobody sends anything, heartbeats only.
    let quiet_from = server.usage()?;
    tokio::time::sleep(idle_for).await;
    let after = server.usage()?;
    let history_seen = match users.first() {
        Some(user) => user.join(None).await.context("joining again to count the history")?.history.len(),
        None => 0,
    };
    drop(users);
    drop(warm);
    Ok(IdleResult {
        target,
        history,
        history_seen,
        connections,
        failed: failures.len() as u32,
        rss_before: before.rss_bytes,
        rss_after: after.rss_bytes,
        bytes_per_connection: after.rss_bytes.saturating_sub(before.rss_bytes) as f64 / f64::from(connections.max(1)),
        connect: connect.summary(),
        seconds_to_connect_all,
        idle_cpu_percent: after.cpu_percent_since(&quiet_from),
    })
}

/// Puts `messages` messages of a typical length in each of the rooms `{prefix}0` to `{prefix}{rooms - 1}`, one
/// sender per room (all rooms at once), each sent after the previous one's ack; the senders then leave.
async fn seed_history(url: &str, rooms: u32, prefix: &str, messages: u32) -> anyhow::Result<()> {
    if messages == 0 {
        return Ok(());
    }
    // A chat line of 100 characters: longer than most, shorter than a paragraph.
    let line = "A line of chat as people write it, a little longer than most: this one is one hundred characters.";
    let body = protocol::MessageBody::parse(&format!("{line:<100}")).context("the seeded message")?;
    let seeders = (0..rooms).map(|index| {
        let body = body.clone();
        async move {
            // Names far above the idle users' (`u0`, `u1`…), so that nobody's join is refused as a name in use.
            let user = User::open(url, 1_000_000 + index, &room(&format!("{prefix}{index}"))?, WEBSOCKET_ONLY)?;
            user.join(None).await.with_context(|| format!("the sender seeding room {index} joining"))?;
            for _ in 0..messages {
                user.send(body.clone()).await.with_context(|| format!("seeding room {index}"))?;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(seeders).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Connect storm, and again after a restart

#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    pub target: Target,
    pub clients: u32,
    /// From all clients starting at once to the last one joined.
    pub seconds_all_joined: f64,
    /// From the restarted server accepting connections to the last client joined again.
    pub seconds_all_back: f64,
    pub back: u32,
    /// Messages acknowledged before the restart, one per room, and how many of them the rooms still had.
    pub acked_before: u32,
    pub kept_after_restart: u32,
    /// Messages sent after everyone was back: deliveries expected, and missing.
    pub expected_after: u64,
    pub lost_after: u64,
    /// Joins that got no answer in time and were asked again: each one is a server that dropped a request.
    pub join_retries: u64,
    /// The server's CPU time until everyone had joined, and again from its restart until everyone was back: less
    /// noisy than the wall-clock times when comparing two builds on a shared machine.
    pub server_cpu_seconds_joining: f64,
    pub server_cpu_seconds_back: f64,
}

pub async fn storm(launcher: &Launcher, target: Target, clients: u32, per_room: u32) -> anyhow::Result<StormResult> {
    let mut server = Server::start(launcher, target).await?;
    let url = server.url();
    let recorder = Arc::new(Recorder::default());
    let (joins_tx, mut joins) = futures::channel::mpsc::unbounded::<Rejoined>();
    let mut users = Vec::with_capacity(clients as usize);
    let mut tasks = Vec::new();
    let join_retries = Arc::new(AtomicU64::new(0));
    let cpu_at_start = server.usage()?.cpu_seconds;
    let started = Instant::now();
    // Everyone at once, browser-style (long-polling, then WebSocket). Each user joins its room on every connect,
    // as the app does: the first time, and again after each reconnection.
    for index in 0..clients {
        let mut user =
            User::open(&url, index, &room(&format!("storm-{}", index / per_room.max(1)))?, BROWSER_TRANSPORTS)?;
        tasks.extend(receive(&mut user, recorder.clone()));
        let mut lifecycle = user.take_lifecycle().context("a user's lifecycle")?;
        let user = Arc::new(user);
        let joins_tx = joins_tx.clone();
        let me = user.clone();
        let retries = join_retries.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = lifecycle.next().await {
                if let SocketEvent::Connected { .. } = event {
                    let retried = || {
                        retries.fetch_add(1, Ordering::Relaxed);
                    };
                    if let Some(joined) =
                        me.join_while_connected(|| None, crate::users::REQUEST_TIMEOUT, JOIN_ATTEMPTS, retried).await
                    {
                        // The collector stops listening once everyone is counted: nothing to tell then.
                        let _ = joins_tx.unbounded_send((me.index, Instant::now(), joined));
                    }
                }
            }
        }));
        users.push(user);
    }
    let deadline = Duration::from_secs(120);
    let first = collect_joins(&mut joins, clients, started, deadline).await;
    if first.len() < clients as usize {
        bail!("{}: only {} of {clients} clients joined within {deadline:?}", target.label(), first.len());
    }
    let seconds_all_joined = first.iter().map(|(_, at, _)| at.duration_since(started)).max().unwrap_or_default();
    let server_cpu_seconds_joining = server.usage()?.cpu_seconds - cpu_at_start;

    // One acknowledged message per room, then a crash.
    let leaders: Vec<&Arc<User>> = users.iter().filter(|u| u.index % per_room.max(1) == 0).collect();
    let acked_before = each_sends(&leaders, 0).await;
    let back_from = server.restart().await?;
    let cpu_at_restart = server.usage()?.cpu_seconds;
    let back = collect_joins(&mut joins, clients, back_from, deadline).await;
    let server_cpu_seconds_back = server.usage()?.cpu_seconds - cpu_at_restart;
    let seconds_all_back =
        back.iter().map(|(_, at, _)| at.saturating_duration_since(back_from)).max().unwrap_or_default();
    let kept_after_restart = back
        .iter()
        .filter(|(index, _, _)| index % per_room.max(1) == 0)
        .filter(|(_, _, joined)| {
            joined.history.iter().any(|m| Probe::parse(m.body.as_str()).is_some_and(|p| p.step == 0))
        })
        .count() as u32;

    // Then everyone talks again: nothing sent now may go missing.
    let accepted = each_sends(&leaders, 1).await;
    let expected_after = u64::from(accepted) * u64::from(per_room.saturating_sub(1));
    wait_until(Duration::from_secs(10), || recorder.unique(1) >= expected_after).await;
    let lost_after = expected_after.saturating_sub(recorder.unique(1)) + (leaders.len() as u64 - u64::from(accepted));
    drop(users);
    for task in tasks {
        task.abort();
    }
    Ok(StormResult {
        target,
        clients,
        seconds_all_joined: seconds_all_joined.as_secs_f64(),
        seconds_all_back: seconds_all_back.as_secs_f64(),
        back: back.len() as u32,
        acked_before,
        kept_after_restart,
        expected_after,
        lost_after,
        join_retries: join_retries.load(Ordering::Relaxed),
        server_cpu_seconds_joining,
        server_cpu_seconds_back,
    })
}

/// How many times a storm user asks to join before giving up on that connection.
const JOIN_ATTEMPTS: u32 = 3;

/// A user's successful join: who, when the answer came, and the answer.
type Rejoined = (u32, Instant, protocol::Joined);

/// Each user sends one message (one at a time); returns how many were acknowledged.
async fn each_sends(users: &[&Arc<User>], step: u32) -> u32 {
    let mut acked = 0;
    for user in users {
        if user.send(Probe { step, sent_micros: now_micros(), sender: user.index, n: 0 }.body()).await.is_ok() {
            acked += 1;
        }
    }
    acked
}

/// Collects the first join of each of `clients` users after `since`, until all are in or `deadline`.
async fn collect_joins(
    joins: &mut futures::channel::mpsc::UnboundedReceiver<Rejoined>,
    clients: u32,
    since: Instant,
    deadline: Duration,
) -> Vec<Rejoined> {
    let mut seen = std::collections::HashMap::new();
    let until = tokio::time::Instant::from_std(since + deadline);
    while seen.len() < clients as usize {
        match tokio::time::timeout_at(until, joins.next()).await {
            Ok(Some((index, at, joined))) if at >= since => {
                seen.entry(index).or_insert((index, at, joined));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    seen.into_values().collect()
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Durable sends

#[derive(Debug, Clone, Serialize)]
pub struct DurableResult {
    pub target: Target,
    /// One user sending one message at a time: each send waits for the previous ack.
    pub single: Latency,
    pub single_per_second: f64,
    /// Many users doing the same at once.
    pub users: u32,
    pub concurrent: Latency,
    pub concurrent_per_second: f64,
    pub failed: u64,
}

pub async fn durable(
    launcher: &Launcher,
    target: Target,
    users: u32,
    run_for: Duration,
) -> anyhow::Result<DurableResult> {
    let server = Server::start(launcher, target).await?;
    let (alone, _) = connect_users(&[server.url()], 1, 1, WEBSOCKET_ONLY, 1, "alone-").await?;
    let (single, mut failed) = closed_loop(&alone, run_for).await;
    let (many, _) = connect_users(&[server.url()], users, 10, WEBSOCKET_ONLY, 200, "durable-").await?;
    let (concurrent, failed_many) = closed_loop(&many, run_for).await;
    failed += failed_many;
    Ok(DurableResult {
        target,
        single: single.summary(),
        single_per_second: single.len() as f64 / run_for.as_secs_f64(),
        users,
        concurrent: concurrent.summary(),
        concurrent_per_second: concurrent.len() as f64 / run_for.as_secs_f64(),
        failed,
    })
}

/// Every user sends, waits for the ack, sends again, for `run_for`. Returns the ack latencies and the failures.
async fn closed_loop(users: &[User], run_for: Duration) -> (Samples, u64) {
    let until = Instant::now() + run_for;
    let loops = users.iter().map(|user| async move {
        let (mut samples, mut failed, mut n) = (Samples::default(), 0u64, 0u32);
        while Instant::now() < until {
            let sent = Instant::now();
            match user.send(Probe { step: 9, sent_micros: now_micros(), sender: user.index, n }.body()).await {
                Ok(_) => samples.record(sent.elapsed()),
                Err(_) => failed += 1,
            }
            n += 1;
        }
        (samples, failed)
    });
    let mut all = Samples::default();
    let mut failed = 0;
    for (samples, f) in futures::future::join_all(loops).await {
        all.extend(samples);
        failed += f;
    }
    (all, failed)
}

// ---------------------------------------------------------------------------------------------------------------
// 5. The join page, rendered on the server

#[derive(Debug, Clone, Serialize)]
pub struct PageResult {
    pub path: String,
    pub latency: Latency,
    /// The page's size as sent, in `encoding`.
    pub bytes: usize,
    /// How the server compressed it for a browser's `Accept-Encoding` (`br`), or `identity`.
    pub encoding: String,
}

/// What Chromium asks for, over HTTPS or from 127.0.0.1.
pub const BROWSER_ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

pub async fn page(launcher: &Launcher, path: &str, requests: u32) -> anyhow::Result<PageResult> {
    use http_body_util::BodyExt as _;
    let server = Server::start(launcher, Target::Causerie).await?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("{}{path}", server.url()).parse().context("the page's address")?;
    let mut samples = Samples::default();
    let mut bytes = 0;
    let mut encoding = String::new();
    // The first request warms up connections and caches; it is not counted.
    for i in 0..=requests {
        // As a browser asks: the time includes compressing the page.
        let request = hyper::Request::get(uri.clone())
            .header(hyper::header::ACCEPT_ENCODING, BROWSER_ACCEPT_ENCODING)
            .body(http_body_util::Empty::new())
            .context("the page's request")?;
        let started = Instant::now();
        let response = client.request(request).await.context("requesting the page")?;
        if !response.status().is_success() {
            bail!("GET {path} answered {}", response.status());
        }
        encoding = response
            .headers()
            .get(hyper::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity")
            .to_owned();
        let body = response.into_body().collect().await.context("reading the page")?.to_bytes();
        if i > 0 {
            samples.record(started.elapsed());
        }
        bytes = body.len();
    }
    Ok(PageResult { path: path.to_owned(), latency: samples.summary(), bytes, encoding })
}

// ---------------------------------------------------------------------------------------------------------------
// 6. The browser's download

#[derive(Debug, Clone, Serialize)]
pub struct WasmSize {
    pub path: String,
    pub bytes: u64,
    pub gzip_bytes: u64,
    /// The size of the file's brotli twin (`cargo leptos build --release --precompress`), which the server sends
    /// to a browser that accepts brotli; `None` when the site was built without it.
    pub brotli_bytes: Option<u64>,
}

pub fn wasm_size(path: &std::path::Path) -> anyhow::Result<WasmSize> {
    use std::io::Write as _;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&bytes)?;
    let gzip_bytes = gzip.finish()?.len() as u64;
    let mut brotli = path.as_os_str().to_owned();
    brotli.push(".br");
    let brotli_bytes = match std::fs::metadata(&brotli) {
        Ok(twin) => Some(twin.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", std::path::Path::new(&brotli).display())),
    };
    Ok(WasmSize { path: path.display().to_string(), bytes: bytes.len() as u64, gzip_bytes, brotli_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasm_size_reports_the_brotli_twin_only_when_the_site_has_one() {
        let dir = std::env::temp_dir().join(format!("causerie-bench-wasm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let wasm = dir.join("causerie.wasm");
        std::fs::write(&wasm, vec![7_u8; 10_000]).expect("writing the bundle");
        let plain = wasm_size(&wasm).expect("measuring the bundle");
        assert_eq!((plain.bytes, plain.brotli_bytes), (10_000, None));
        assert!(plain.gzip_bytes < 1_000, "{} bytes gzipped", plain.gzip_bytes);
        std::fs::write(dir.join("causerie.wasm.br"), [1_u8; 42]).expect("writing the twin");
        assert_eq!(wasm_size(&wasm).expect("measuring the bundle").brotli_bytes, Some(42));
        std::fs::remove_dir_all(&dir).expect("removing the temporary directory");
    }

    #[test]
    fn every_user_gets_a_slot_of_its_own_and_room_mates_are_spread_over_the_interval() {
        let (per_room, rooms) = (10, 20);
        let mut slots: Vec<u32> = (0..per_room * rooms).map(|i| phase_slot(i, per_room, rooms)).collect();
        // Room 3's members, one interval apart from each other by a twentieth of it.
        let room_3: Vec<u32> = (30..40).map(|i| phase_slot(i, per_room, rooms)).collect();
        assert_eq!(room_3, (0..10).map(|k| k * rooms + 3).collect::<Vec<_>>());
        slots.sort_unstable();
        assert_eq!(slots, (0..per_room * rooms).collect::<Vec<_>>(), "a permutation");
    }

    #[test]
    fn the_climb_closes_in_on_the_limit_by_halving_the_gap_to_ten_sends_a_second() {
        assert_eq!(halfway(4_000, 5_000), Some(4_500));
        assert_eq!(halfway(4_500, 5_000), Some(4_750));
        assert_eq!(halfway(4_750, 5_000), Some(4_880));
        assert_eq!(halfway(12_000, 14_000), Some(13_000));
        // The third halving of a thousand, after 4,500 (within) and 4,750 (past).
        assert_eq!(halfway(4_500, 4_750), Some(4_630));
        assert_eq!(halfway(4_990, 5_000), None, "nothing between them to the nearest ten");
        assert_eq!(halfway(5_000, 5_000), None);
        assert_eq!(halfway(5_000, 4_000), None, "a gap the wrong way round is not split");
    }

    #[test]
    fn the_p99_compared_at_a_rate_is_the_median_of_the_climbs_step_and_its_repeats_there() {
        let step = |rate: u32, p99: f64| FanoutStep::sample(rate, p99, 0.0);
        let result = FanoutResult {
            target: Target::Node,
            connections: 2,
            connect: Latency::default(),
            steps: vec![step(1_000, 1.0), step(2_000, 8.5), step(3_000, 150.0)],
            repeats: vec![step(2_000, 97.1), step(2_000, 60.0)],
        };
        assert_eq!(result.p99s_at(2_000), vec![8.5, 97.1, 60.0], "the climb's step first, then the repeats");
        assert_eq!(result.median_p99_at(2_000), Some(60.0));
        assert_eq!(result.median_p99_at(1_000), Some(1.0), "a rate never repeated is its one step");
        assert_eq!(result.median_p99_at(2_500), None);
        let even = FanoutResult { repeats: vec![step(2_000, 10.0)], ..result };
        assert_eq!(even.median_p99_at(2_000), Some(9.25), "the middle two's mean");
    }

    #[test]
    fn a_climb_through_another_targets_maximum_runs_that_rate_in_its_place_and_only_once() {
        let config = FanoutConfig {
            rooms: 1,
            users_per_room: 2,
            step: Duration::from_secs(1),
            rates: vec![1_000, 2_000, 3_000],
            stop_p99_ms: 100.0,
            refine: 0,
            repeats: 0,
            compare_at: None,
        };
        assert_eq!(config.through(2_380).rates, vec![1_000, 2_000, 2_380, 3_000]);
        assert_eq!(config.through(2_000).rates, vec![1_000, 2_000, 3_000]);
        assert_eq!(config.through(9_000).rates, vec![1_000, 2_000, 3_000, 9_000]);
    }
}
