//! Two Causerie nodes sharing Redis and Postgres, behind nginx (docs/deploy/nginx.conf): people on different nodes
//! talk, whisper and see each other; a node's death loses nothing and its people are seen to leave or carry on.
//! Postgres, Redis and nginx are started from Debian's packages on free loopback ports (scripts/test-service).

// Helpers outside `#[test]` functions unwrap too: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use causerie_bench::Launcher;
use causerie_bench::chaos::{ChaosConfig, node_loss};
use causerie_bench::cluster::Cluster;
use futures::{FutureExt as _, Stream, StreamExt as _};
use protocol::{
    ADMIN_NAMESPACE, AdminAuth, CHAT_NAMESPACE, ChatAuth, ChatMessage, DisplayName, ErrorCode, JoinRoom, Joined,
    LOBBY_NAMESPACE, LeaveReason, Member, MemberChange, MessageBody, NameTaken, PresenceChanged, PrivateMessage,
    RemoveMember, Removed, RoomName, RoomsSnapshot, SendMessage, SendPrivate, SessionToken, Stats, Typing,
    TypingNotice,
};
use sio_client::{Client, RequestError, Socket};

const WAIT: Duration = Duration::from_secs(20);
const ADMIN_TOKEN: &str = "cluster-test-admin-token";

fn launcher() -> Launcher {
    let work_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cluster-{}", std::process::id()));
    Launcher::new(PathBuf::from(env!("CARGO_BIN_EXE_causerie-bench")), work_dir, None)
        .expect("the Node.js peer is installed (scripts/test runs `npm ci` in bench/peers/node)")
}

fn room() -> RoomName {
    RoomName::parse("general").unwrap()
}

/// Someone in a browser tab, connected to one node (`url`), under a session of their own.
struct Person {
    client: Client,
    chat: Socket,
}

impl Person {
    fn open(url: &str, name: &str, session: &str) -> Person {
        let client = Client::builder(url).connect();
        let auth =
            ChatAuth { name: DisplayName::parse(name).unwrap(), session: Some(SessionToken::parse(session).unwrap()) };
        let chat = client.socket_with_auth(CHAT_NAMESPACE, &auth).unwrap();
        Person { client, chat }
    }

    async fn join(&self) -> Result<Joined, RequestError> {
        self.join_room(room()).await
    }

    async fn join_room(&self, room: RoomName) -> Result<Joined, RequestError> {
        self.chat.request(&JoinRoom { room, since: None }, WAIT).await
    }
}

impl Drop for Person {
    fn drop(&mut self) {
        self.client.close();
    }
}

/// The next item of `stream` that satisfies `wanted`, within [`WAIT`].
async fn next_such<T>(stream: &mut (impl Stream<Item = T> + Unpin), what: &str, wanted: impl Fn(&T) -> bool) -> T {
    let found = async {
        while let Some(item) = stream.next().await {
            if wanted(&item) {
                return Some(item);
            }
        }
        None
    };
    match tokio::time::timeout(WAIT, found).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the stream ended before {what}"),
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}

fn names(members: &[protocol::Member]) -> Vec<&str> {
    members.iter().map(|member| member.name.as_str()).collect()
}

fn admin(url: &str) -> (Client, impl Stream<Item = Stats> + Unpin, Socket) {
    let client = Client::builder(url).connect();
    let socket = client.socket_with_auth(ADMIN_NAMESPACE, &AdminAuth { token: ADMIN_TOKEN.into() }).unwrap();
    (client, socket.on::<Stats>(), socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_on_two_nodes_chat_whisper_type_and_see_each_other_as_one_room() {
    let extra = ["--admin-token", ADMIN_TOKEN].map(String::from);
    let cluster = Cluster::start(&launcher(), 2, &extra).await.expect("the cluster starts");
    let (one, two) = (cluster.nodes[0].url(), cluster.nodes[1].url());

    let ada = Person::open(&one, "Ada", "session-ada-000001");
    let (mut ada_joins, mut ada_lefts) = (arrivals(&ada.chat), departures(&ada.chat));
    let (mut ada_messages, mut ada_typing) = (ada.chat.on::<ChatMessage>(), ada.chat.on::<TypingNotice>());
    assert_eq!(names(&ada.join().await.unwrap().members), ["Ada"]);

    // Node two hears of Ada (its lobby counts her) before Bob joins there.
    let lobby = Client::builder(&two).connect();
    let mut snapshots = lobby.socket(LOBBY_NAMESPACE).on::<RoomsSnapshot>();
    next_such(&mut snapshots, "Ada in node two's lobby", |s| s.rooms.iter().any(|r| r.room == room() && r.online == 1))
        .await;

    let bob = Person::open(&two, "Bob", "session-bob-000001");
    let mut bob_private = bob.chat.on::<PrivateMessage>();
    let bob_joined = bob.join().await.unwrap();
    assert_eq!(names(&bob_joined.members), ["Ada", "Bob"], "one room across both nodes");
    let notice = next_such(&mut ada_joins, "Bob's arrival at Ada's", |_| true).await;
    assert_eq!(notice, bob_joined.you);

    let body = MessageBody::parse("hello from node two").unwrap();
    let sent = bob.chat.request(&SendMessage { room: room(), body, client_id: None }, WAIT).await.unwrap();
    assert_eq!(next_such(&mut ada_messages, "Bob's message at Ada's", |_| true).await, sent.message);
    assert_eq!(sent.message.seq, 1);

    let whisper =
        SendPrivate { room: room(), to: bob_joined.you.id.clone(), body: MessageBody::parse("psst").unwrap() };
    ada.chat.request(&whisper, WAIT).await.unwrap();
    let private = next_such(&mut bob_private, "Ada's private message at Bob's", |_| true).await;
    assert_eq!((private.from.name.as_str(), private.body.as_str()), ("Ada", "psst"));

    bob.chat.emit(&Typing { room: room() }).unwrap();
    let typing = next_such(&mut ada_typing, "Bob typing, at Ada's", |_| true).await;
    assert_eq!(typing.member.name.as_str(), "Bob");

    // A name is one person's in the whole room, whichever node they came through.
    let impostor = Person::open(&two, "ADA", "session-imp-000001");
    match impostor.join().await {
        Err(RequestError::Rejected(error)) => assert_eq!(error.code, ErrorCode::NameInUse),
        other => panic!("an impostor on the other node was let in: {other:?}"),
    }
    drop(impostor);

    // Bob opens a second tab, on node one: still one Bob, and nobody is told he arrived again.
    let bob_again = Person::open(&one, "Bob", "session-bob-000001");
    assert_eq!(names(&bob_again.join().await.unwrap().members), ["Ada", "Bob"]);
    // He closes the first, on node two: node two's admin sees its connections go...
    let (_admin_two, mut stats_two, _socket) = admin(&two);
    drop(bob);
    next_such(&mut stats_two, "node two with no chat connection left", |stats| stats.connections == 0).await;
    // ...and once Cy's arrival there reaches Ada (node two's reports arrive in order), Bob was never said to leave.
    let cy = Person::open(&two, "Cy", "session-cy-0000001");
    let mut cy_removed = cy.chat.on::<Removed>();
    let cy_joined = cy.join().await.unwrap();
    assert_eq!(names(&cy_joined.members), ["Ada", "Bob", "Cy"]);
    let arrival = next_such(&mut ada_joins, "Cy's arrival at Ada's", |_| true).await;
    assert_eq!(arrival.name.as_str(), "Cy");
    assert!(ada_lefts.next().now_or_never().is_none(), "Bob is still here through node one");

    // An admin on node one removes Cy, who is on node two: Cy is told, Ada sees the removal once.
    let (_admin_one, _stats_one, admin_one) = admin(&one);
    let remove = RemoveMember { room: room(), member: cy_joined.you.id.clone() };
    admin_one.request(&remove, WAIT).await.expect("the admin removes Cy");
    next_such(&mut cy_removed, "Cy told of the removal", |removed| removed.room == room()).await;
    let left = next_such(&mut ada_lefts, "Cy's removal at Ada's", |_| true).await;
    assert_eq!((left.0.name.as_str(), left.1), ("Cy", LeaveReason::Removed));
}

/// Bob joins on node two, then Ada on node one, and Bob hears of her arrival. Returns them, and Bob's arrivals
/// (for later ones). `suffix` makes their sessions this test's own.
async fn ada_on_one_seen_by_bob_on_two(
    cluster: &Cluster,
    suffix: &str,
) -> (Person, Person, impl Stream<Item = Member> + Unpin + use<>) {
    let bob = Person::open(&cluster.nodes[1].url(), "Bob", &format!("session-bob-{suffix}"));
    let mut bob_joins = arrivals(&bob.chat);
    bob.join().await.unwrap();
    let ada = Person::open(&cluster.nodes[0].url(), "Ada", &format!("session-ada-{suffix}"));
    ada.join().await.unwrap();
    next_such(&mut bob_joins, "Ada's arrival at Bob's", |member| member.name.as_str() == "Ada").await;
    (ada, bob, bob_joins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_taking_one_name_on_two_nodes_at_the_same_moment_end_with_the_same_one_of_them_on_both() {
    let cluster = Cluster::start(&launcher(), 2, &[]).await.expect("the cluster starts");
    let (one, two) = (cluster.nodes[0].url(), cluster.nodes[1].url());
    // Many pairs at once, each in a room of its own, so that some joins land within the few milliseconds in which
    // neither node has heard of the other's: those both get in, and the nodes must settle the clash.
    const PAIRS: usize = 40;
    let rooms: Vec<RoomName> = (0..PAIRS).map(|i| RoomName::parse(&format!("clash-{i}")).unwrap()).collect();
    let people: Vec<[Person; 2]> = (0..PAIRS)
        .map(|i| {
            [
                Person::open(&one, "Ada", &format!("session-one-{i:06}")),
                Person::open(&two, "ADA", &format!("session-two-{i:06}")),
            ]
        })
        .collect();
    let mut taken: Vec<[_; 2]> = people.iter().map(|pair| pair.each_ref().map(|p| p.chat.on::<NameTaken>())).collect();
    let joins = people
        .iter()
        .zip(&rooms)
        .map(|(pair, room)| futures::future::join(pair[0].join_room(room.clone()), pair[1].join_room(room.clone())));
    let outcomes = futures::future::join_all(joins).await;

    let mut settled_after = 0;
    for (i, (first, second)) in outcomes.into_iter().enumerate() {
        let room = &rooms[i];
        let (winner, loser) = match (first, second) {
            (Ok(a), Err(RequestError::Rejected(e))) | (Err(RequestError::Rejected(e)), Ok(a)) => {
                assert_eq!(e.code, ErrorCode::NameInUse, "pair {i}");
                (a.you, None)
            }
            (Ok(a), Ok(b)) => {
                // Both got in: the one whose member id sorts first keeps the name, and the other is told so.
                let (a_first, (winner, loser)) =
                    if a.you.id < b.you.id { (true, (a.you, b.you)) } else { (false, (b.you, a.you)) };
                let lost = &mut taken[i][usize::from(a_first)];
                let notice = next_such(lost, "the loser's name_taken", |_| true).await;
                assert_eq!((&notice.room, notice.name.as_str()), (room, loser.name.as_str()), "pair {i}");
                settled_after += 1;
                (winner, Some(loser))
            }
            other => panic!("pair {i}: neither kept the name: {other:?}"),
        };
        // Whoever kept it was not told otherwise, and someone new on either node finds that one person under it.
        let winner_index = usize::from(winner.name.as_str() == "ADA");
        assert!(
            taken[i][winner_index].next().now_or_never().is_none(),
            "pair {i}: the winner was told the name was taken"
        );
        for (node, url) in [("one", &one), ("two", &two)] {
            let observer =
                Person::open(url, &format!("Observer on {node}"), &format!("session-observer-{node}-{i:06}"));
            let mut lefts = departures(&observer.chat);
            let joined = observer.join_room(room.clone()).await.unwrap();
            if let Some(loser) = &loser
                && joined.members.iter().any(|m| m.id == loser.id)
            {
                // Heard of the loser before their own node took them out: their leaving is on its way.
                next_such(&mut lefts, "the loser's departure", |(m, _)| m.id == loser.id).await;
            }
            let ids: Vec<&protocol::MemberId> =
                joined.members.iter().filter(|m| m.name.same_as(&winner.name)).map(|m| &m.id).collect();
            assert!(ids.contains(&&winner.id), "pair {i}, node {node}: {:?}", joined.members);
        }
    }
    eprintln!("{settled_after} of {PAIRS} pairs both got in and were settled afterwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_dies_its_people_are_seen_leaving_from_the_other_node() {
    let mut cluster = Cluster::start(&launcher(), 2, &[]).await.expect("the cluster starts");
    let (_ada, bob, _) = ada_on_one_seen_by_bob_on_two(&cluster, "000002").await;
    let mut bob_lefts = departures(&bob.chat);
    let two = cluster.nodes[1].url();

    // Node one crashes. Ada's client only knows node one and cannot come back through the other.
    cluster.nodes[0].kill().await.unwrap();
    let left = next_such(&mut bob_lefts, "Ada's departure at Bob's", |_| true).await;
    assert_eq!((left.0.name.as_str(), left.1), ("Ada", LeaveReason::Left));
    let cy = Person::open(&two, "Cy", "session-cy-0000002");
    assert_eq!(names(&cy.join().await.unwrap().members), ["Bob", "Cy"], "no ghost of Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_outage_the_nodes_share_presence_and_messages_again_and_nothing_stored_is_lost() {
    let mut cluster = Cluster::start(&launcher(), 2, &[]).await.expect("the cluster starts");
    let (ada, bob, mut bob_joins) = ada_on_one_seen_by_bob_on_two(&cluster, "000003").await;
    let mut bob_messages = bob.chat.on::<ChatMessage>();
    let one = cluster.nodes[0].url();

    cluster.stop_redis();
    // Node one carries on alone: Cy joins, Ada's message is stored and acknowledged.
    let cy = Person::open(&one, "Cy", "session-cy-0000003");
    let mut cy_messages = cy.chat.on::<ChatMessage>();
    cy.join().await.unwrap();
    let body = MessageBody::parse("said while Redis was down").unwrap();
    let during = ada.chat.request(&SendMessage { room: room(), body, client_id: None }, WAIT).await.unwrap();
    // Live on Ada's own node, even with no Redis to carry it further.
    next_such(&mut cy_messages, "Ada's message at Cy's, on the same node", |m| m.id == during.message.id).await;

    cluster.start_redis().await.unwrap();
    // Node one's snapshot after the outage tells node two about Cy.
    next_such(&mut bob_joins, "Cy's arrival at Bob's, after the outage", |member| member.name.as_str() == "Cy").await;
    // Broadcasts cross again once both nodes' adapters have reconnected and subscribed again (about a second):
    // Ada sends until one reaches Bob live. Each is stored whether or not it crossed.
    let mut sent = vec![during.message];
    let crossed = async {
        loop {
            let body = MessageBody::parse(&format!("after the outage, #{}", sent.len())).unwrap();
            let accepted = ada.chat.request(&SendMessage { room: room(), body, client_id: None }, WAIT).await.unwrap();
            sent.push(accepted.message.clone());
            let arrived = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(message) = bob_messages.next().await {
                    if message.id == accepted.message.id {
                        return;
                    }
                }
            });
            if arrived.await.is_ok() {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, crossed).await.expect("broadcasts cross again within 20 s of Redis coming back");
    // And everything said meanwhile is in the room's history, in order, for Bob's next resume.
    let rejoined = bob.chat.request(&JoinRoom { room: room(), since: Some(0) }, WAIT).await.unwrap();
    let stored: Vec<_> = rejoined.history.iter().map(|m| (m.seq, m.id.clone())).collect();
    let expected: Vec<_> = sent.iter().map(|m| (m.seq, m.id.clone())).collect();
    assert_eq!(stored, expected, "every acknowledged message is stored, numbered without gaps");
    assert_eq!(stored.first().map(|(seq, _)| *seq), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_conversation_loses_nothing_and_its_people_carry_on_through_nginx() {
    let config = ChaosConfig {
        clients: 40,
        per_room: 4,
        messages_per_room: 20,
        messages_per_second: 4.0,
        cut_every: Duration::from_secs(3600),
        offline_for: Duration::ZERO,
        restart_after: Some(Duration::from_secs(2)),
        recovery: true,
        request_timeout: Duration::from_secs(2),
    };
    let result = node_loss(&launcher(), &config).await.expect("the run completes");
    assert!(result.disconnects > 0, "some clients were on the node that died: {result:?}");
    assert_eq!(result.acknowledged, 10 * 20, "every message was acknowledged in the end: {result:?}");
    assert_eq!(result.abandoned, 0);
    assert_eq!(result.delivered, result.expected, "every acknowledged message reached everyone: {result:?}");
    assert_eq!((result.duplicates, result.order_violations), (0, 0), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_nodes_against_one_benchmark_runs_every_setup_and_loses_nothing() {
    let options = causerie_bench::Options::smoke();
    let results = causerie_bench::cluster::fanout_comparison(&launcher(), &options.fanout).await.unwrap();
    assert_eq!(results.len(), causerie_bench::cluster::SETUPS.len());
    for (setup, fanout) in &results {
        assert_eq!(fanout.steps.len(), options.fanout.rates.len(), "{} ran every step", setup.label);
        for step in &fanout.steps {
            assert!(step.accepted > 0, "{} accepted messages", setup.label);
            assert_eq!(
                (step.lost, step.duplicates, step.failed),
                (0, 0, 0),
                "{} at {}",
                setup.label,
                step.sends_per_second
            );
        }
    }
    let machine = causerie_bench::report::Machine::read(&launcher());
    let markdown = causerie_bench::cluster::markdown(&machine, &options.fanout, &results);
    assert!(markdown.contains("| 2 nodes, Postgres + Redis |"), "{markdown}");
    assert!(markdown.contains("## Every step"));
}

/// The members whose arrival `socket` hears of, in order, however the server grouped them into events.
fn arrivals(socket: &Socket) -> impl Stream<Item = Member> + Unpin + use<> {
    presence_changes(socket).filter_map(|change| std::future::ready(change.joined()))
}

/// The members whose departure `socket` hears of, in order, with why they left.
fn departures(socket: &Socket) -> impl Stream<Item = (Member, LeaveReason)> + Unpin + use<> {
    presence_changes(socket).filter_map(|change| std::future::ready(change.left()))
}

fn presence_changes(socket: &Socket) -> impl Stream<Item = MemberChange> + Unpin + use<> {
    socket.on::<PresenceChanged>().flat_map(|event| futures::stream::iter(event.changes))
}
