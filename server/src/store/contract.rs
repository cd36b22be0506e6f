//! What every [`MessageStore`](super::MessageStore) must do, as tests that each store runs against itself with
//! `store_contract!(<expression making an empty store>)`.

use protocol::{ChatMessage, ClientId, DisplayName, Member, MemberId, MessageBody, MessageId, RoomName, UnixMillis};

use super::{Appended, NewMessage};

pub fn new(room: &str, from: &str, body: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        id: MessageId(uuid::Uuid::new_v4().to_string()),
        room: RoomName::parse(room).unwrap(),
        from: Member { id: MemberId(from.to_lowercase()), name: DisplayName::parse(from).unwrap() },
        body: MessageBody::parse(body).unwrap(),
        sent_at: UnixMillis(1_700_000_000_000),
        client_id: client_id.map(|c| ClientId::parse(c).unwrap()),
        image: None,
    }
}

pub fn stored(appended: Appended) -> ChatMessage {
    match appended {
        Appended::New(message) => message,
        Appended::Duplicate(message) => panic!("unexpected duplicate {message:?}"),
    }
}

macro_rules! store_contract {
    ($make:expr) => {
        mod contract {
            use protocol::{
                ClientId, DisplayName, ImageKind, Member, MemberId, MessageBody, MessageId, RoomName, UnixMillis,
            };

            #[allow(unused_imports)]
            use super::*;
            use crate::store::contract::{new, stored};
            use crate::store::{Appended, MessageStore, NewImage, NewMessage, Page};

            fn room(name: &str) -> RoomName {
                RoomName::parse(name).unwrap()
            }

            #[tokio::test]
            async fn each_room_numbers_its_messages_from_one_without_gaps() {
                let store = $make;
                let mut seqs = Vec::new();
                for (room, body) in [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3"), ("b", "2")] {
                    seqs.push((room, stored(store.append(new(room, "Ada", body, None)).await.unwrap()).seq));
                }
                assert_eq!(seqs, vec![("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]);
            }

            #[tokio::test]
            async fn concurrent_appends_to_one_room_get_distinct_consecutive_numbers() {
                let store = std::sync::Arc::new($make);
                let sends = (0..40).map(|i| {
                    let store = store.clone();
                    tokio::spawn(
                        async move { stored(store.append(new("a", "Ada", &format!("m{i}"), None)).await.unwrap()) },
                    )
                });
                let mut seqs = Vec::new();
                for send in sends {
                    seqs.push(send.await.unwrap().seq);
                }
                seqs.sort_unstable();
                assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
            }

            #[tokio::test]
            async fn a_retried_client_id_returns_the_original_and_stores_nothing_new() {
                let store = $make;
                let original = stored(store.append(new("a", "Ada", "hello", Some("c-1"))).await.unwrap());
                let again = store.append(new("a", "Ada", "hello", Some("c-1"))).await.unwrap();
                assert_eq!(again, Appended::Duplicate(original.clone()));
                // The same client id from someone else, or in another room, is another message.
                assert_eq!(stored(store.append(new("a", "Bob", "hello", Some("c-1"))).await.unwrap()).seq, 2);
                assert_eq!(stored(store.append(new("b", "Ada", "hello", Some("c-1"))).await.unwrap()).seq, 1);
                assert_eq!(store.latest(room("a"), 10).await.unwrap().messages.len(), 2);
            }

            #[tokio::test]
            async fn pages_come_oldest_first_and_say_whether_there_is_more() {
                let store = $make;
                for i in 1..=5 {
                    store.append(new("a", "Ada", &format!("m{i}"), None)).await.unwrap();
                }
                let bodies = |page: &Page| page.messages.iter().map(|m| m.body.to_string()).collect::<Vec<_>>();
                let latest = store.latest(room("a"), 2).await.unwrap();
                assert_eq!((bodies(&latest), latest.has_more), (vec!["m4".into(), "m5".into()], true));
                let after = store.after(room("a"), 2, 2).await.unwrap();
                assert_eq!((bodies(&after), after.has_more), (vec!["m3".into(), "m4".into()], true));
                let rest = store.after(room("a"), 4, 10).await.unwrap();
                assert_eq!((bodies(&rest), rest.has_more), (vec!["m5".into()], false));
                let past_the_end = store.after(room("a"), 9, 10).await.unwrap();
                assert_eq!(past_the_end, Page::default());
                let before = store.before(room("a"), 3, 10).await.unwrap();
                assert_eq!((bodies(&before), before.has_more), (vec!["m1".into(), "m2".into()], false));
                let before_all = store.before(room("a"), 1, 10).await.unwrap();
                assert_eq!(before_all, Page::default());
                assert_eq!(store.latest(room("empty"), 10).await.unwrap(), Page::default());
            }

            #[tokio::test]
            async fn an_image_is_stored_with_its_message_once_and_read_back_whole() {
                let store = $make;
                let bytes = bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n-not-really-pixels");
                let image =
                    NewImage { id: "img-1".into(), kind: ImageKind::Png, width: 3, height: 2, bytes: bytes.clone() };
                let new = NewMessage {
                    id: MessageId("m-1".into()),
                    room: RoomName::parse("a").unwrap(),
                    from: Member { id: MemberId("ada".into()), name: DisplayName::parse("Ada").unwrap() },
                    body: MessageBody::parse("cat.png").unwrap(),
                    sent_at: UnixMillis(1),
                    client_id: Some(ClientId::parse("c-1").unwrap()),
                    image: Some(image),
                };
                let Appended::New(message) = store.append(new.clone()).await.unwrap() else { panic!("a duplicate") };
                let reference = message.image.clone().unwrap();
                assert_eq!(
                    (reference.url.as_str(), reference.size, reference.width),
                    ("/media/img-1", bytes.len() as u64, 3)
                );
                // A retry under the same client id stores no second image (the image's id would collide if it did).
                assert_eq!(store.append(new).await.unwrap(), Appended::Duplicate(message.clone()));
                assert_eq!(store.latest(RoomName::parse("a").unwrap(), 10).await.unwrap().messages, vec![message]);
                let stored = store.image("img-1".into()).await.unwrap().unwrap();
                assert_eq!((stored.kind, stored.bytes.as_slice()), (ImageKind::Png, bytes.as_ref()));
                assert!(store.image("nope".into()).await.unwrap().is_none());
            }
        }
    };
}

pub(crate) use store_contract;
