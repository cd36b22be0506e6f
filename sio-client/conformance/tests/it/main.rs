//! sio-client against real servers: the reference Node.js Socket.IO server (npm `socket.io` 4.x) and socketioxide,
//! both started as processes on free loopback ports. Every scenario in `scenarios` runs against each.

// Test code: a failed unwrap fails the test, with the value in its message.
#![allow(clippy::unwrap_used)]

mod peers;
mod proxy;
mod scenarios;

/// The client's logs, shown for failed tests (`RUST_LOG` overrides the default `sio_client=debug`).
fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sio_client=debug"));
    // Another test of this binary may have installed it already: one subscriber serves them all.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

macro_rules! against_both_peers {
    ($($scenario:ident),* $(,)?) => {
        mod node {
            $(
                #[tokio::test]
                async fn $scenario() {
                    crate::log_to_test_output();
                    crate::scenarios::$scenario(crate::peers::Kind::Node).await;
                }
            )*
        }
        mod socketioxide {
            $(
                #[tokio::test]
                async fn $scenario() {
                    crate::log_to_test_output();
                    crate::scenarios::$scenario(crate::peers::Kind::Socketioxide).await;
                }
            )*
        }
    };
}

against_both_peers!(
    a_handshake_over_polling_is_upgraded_to_websocket,
    a_websocket_only_client_never_polls,
    a_polling_only_server_keeps_the_client_on_polling,
    a_polling_only_client_never_upgrades,
    a_blocked_websocket_leaves_the_client_on_polling,
    a_remembered_upgrade_reconnects_over_websocket_without_polling,
    a_remembered_websocket_that_is_blocked_now_falls_back_to_polling_and_is_forgotten,
    a_remembered_websocket_cut_before_its_first_frame_falls_back_to_polling_at_once,
    a_client_that_does_not_remember_polls_first_on_every_reconnection,
    heartbeats_keep_the_connection_and_a_silent_server_is_detected,
    an_ack_times_out_on_time_while_a_write_waits_for_a_server_that_stopped_reading,
    a_restarted_server_is_reconnected_with_backoff_on_every_namespace,
    emits_made_offline_are_delivered_once_after_reconnecting,
    acks_carry_the_answer_and_time_out_without_one,
    binary_data_travels_both_ways,
    binary_data_travels_over_polling,
    two_namespaces_share_one_connection,
    the_server_can_ask_the_client_for_an_ack,
    a_refused_auth_is_surfaced_and_not_retried,
    a_refused_namespace_leaves_the_others_connected,
    a_server_side_disconnect_is_not_retried,
    more_than_the_clients_limit_at_once_drops_the_connection_and_it_reconnects,
);
