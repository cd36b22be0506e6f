//! The few things the driver needs from a runtime: a clock, a timer, a way to spawn, and a random seed.

#![cfg_attr(not(any(target_arch = "wasm32", feature = "tokio")), allow(dead_code))]

#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
use crate::Millis;

#[cfg(target_arch = "wasm32")]
mod imp {
    use std::future::Future;
    use std::time::Duration;

    use crate::Millis;

    /// Wall-clock milliseconds. `std::time::Instant` panics on wasm32-unknown-unknown.
    pub fn now() -> Millis {
        Millis(js_sys::Date::now().max(0.0) as u64)
    }

    pub async fn sleep(duration: Duration) {
        gloo_timers::future::sleep(duration).await;
    }

    pub fn spawn(future: impl Future<Output = ()> + 'static) {
        wasm_bindgen_futures::spawn_local(future);
    }

    pub fn seed() -> u64 {
        (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
    }
}

#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
mod imp {
    use std::future::Future;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use crate::Millis;

    static ORIGIN: OnceLock<Instant> = OnceLock::new();

    pub fn now() -> Millis {
        Millis(ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64)
    }

    pub async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(future);
    }

    pub fn seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        nanos ^ (std::process::id() as u64).rotate_left(32)
    }
}

#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
pub use imp::*;

/// Sleeps until `deadline`, or forever when there is none.
#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
pub async fn sleep_until(deadline: Option<Millis>) {
    match deadline {
        Some(at) => sleep(now().until(at)).await,
        None => std::future::pending().await,
    }
}

/// Runs `future` for at most `limit`; past it, a [`TransportError`](crate::transport::TransportError) says so.
#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
pub async fn within<T, E: std::fmt::Display>(
    limit: std::time::Duration,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, crate::transport::TransportError> {
    use futures::FutureExt as _;

    let future = future.fuse();
    let timer = sleep(limit).fuse();
    futures::pin_mut!(future, timer);
    futures::select_biased! {
        result = future => result.map_err(|e| crate::transport::TransportError(e.to_string())),
        () = timer => Err(crate::transport::TransportError(format!("no answer within {} ms", limit.as_millis()))),
    }
}
