//! The few things the driver needs from a runtime: a clock, a timer, a way to spawn, and a random seed.

#![cfg_attr(not(any(target_arch = "wasm32", feature = "tokio")), allow(dead_code))]

#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
use crate::Millis;

#[cfg(target_arch = "wasm32")]
mod imp {
    use std::future::Future;
    use std::time::Duration;

    use crate::Millis;

    #[wasm_bindgen::prelude::wasm_bindgen]
    extern "C" {
        /// `performance.now()`: milliseconds since the page (or worker) started, on a clock that never goes back.
        #[wasm_bindgen(catch, js_namespace = performance, js_name = now)]
        fn performance_now() -> Result<f64, wasm_bindgen::JsValue>;
    }

    /// Monotonic milliseconds (`std::time::Instant` panics on wasm32-unknown-unknown). Not `Date.now()`: the
    /// wall clock jumps when the system's time is set, and a jump forward would fail the heartbeat at once, a
    /// jump back hold every deadline for as long as the jump. Without `performance` (no browser lacks it) the
    /// wall clock is all there is.
    pub fn now() -> Millis {
        let ms = performance_now().unwrap_or_else(|_| js_sys::Date::now());
        Millis(ms.max(0.0) as u64)
    }

    pub async fn sleep(duration: Duration) {
        // The browser's timer takes a signed 32-bit number of milliseconds: a longer wait (a server's heartbeat
        // settings add up to one) goes in steps, or it would fire at once, or gloo would throw.
        let mut left = duration;
        loop {
            let step = super::timer_step(left);
            gloo_timers::future::sleep(step).await;
            left -= step;
            if left.is_zero() {
                return;
            }
        }
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

/// The longest wait one browser timer can take (`setTimeout` takes an `i32` of milliseconds).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const LONGEST_TIMER: std::time::Duration = std::time::Duration::from_millis(i32::MAX as u64);

/// How much of `left` one browser timer waits.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn timer_step(left: std::time::Duration) -> std::time::Duration {
    left.min(LONGEST_TIMER)
}

/// Sleeps until `deadline`, or forever when there is none.
#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
pub async fn sleep_until(deadline: Option<Millis>) {
    match deadline {
        Some(at) => sleep(now().until(at)).await,
        None => std::future::pending().await,
    }
}

/// The driver's timer for its next deadline, kept from one wait to the next. The driver waits once for every
/// packet it receives, and a new timer each time was put into Tokio's timer wheel and taken out again for every
/// packet (about 1% of the load generator's core); the deadline itself changes only with a heartbeat or an ack.
#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
#[derive(Debug, Default)]
pub struct Timer {
    /// Made at the first wait, inside the driver's task (a Tokio timer needs the runtime), with its deadline.
    sleep: Option<(Millis, std::pin::Pin<Box<tokio::time::Sleep>>)>,
}

#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
impl Timer {
    pub fn new() -> Self {
        Self { sleep: None }
    }

    /// Sleeps until `deadline`, or forever when there is none, as [`sleep_until`] does.
    pub async fn until(&mut self, deadline: Option<Millis>) {
        let Some(at) = deadline else {
            return std::future::pending().await;
        };
        let when = || tokio::time::Instant::now() + now().until(at);
        match &mut self.sleep {
            Some((set, sleep)) if *set == at => sleep.as_mut().await,
            Some((set, sleep)) => {
                *set = at;
                sleep.as_mut().reset(when());
                sleep.as_mut().await;
            }
            None => {
                let sleep = self.sleep.insert((at, Box::pin(tokio::time::sleep_until(when()))));
                sleep.1.as_mut().await;
            }
        }
    }
}

/// In the browser each wait sets a timer of its own, as [`sleep_until`] does: gloo's timers cannot be moved.
#[cfg(target_arch = "wasm32")]
#[derive(Debug, Default)]
pub struct Timer;

#[cfg(target_arch = "wasm32")]
impl Timer {
    pub fn new() -> Self {
        Self
    }

    pub async fn until(&mut self, deadline: Option<Millis>) {
        sleep_until(deadline).await;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LONGEST_TIMER, timer_step};

    #[test]
    fn a_wait_longer_than_a_browser_timer_takes_goes_in_steps_that_add_up_to_it() {
        let mut left = Duration::from_millis(5_000_000_000); // about 58 days
        let mut steps = Vec::new();
        while !left.is_zero() {
            let step = timer_step(left);
            steps.push(step);
            left -= step;
        }
        assert_eq!(steps, [LONGEST_TIMER, LONGEST_TIMER, Duration::from_millis(5_000_000_000 - 2 * 2_147_483_647)]);
        assert_eq!(timer_step(Duration::from_secs(25)), Duration::from_secs(25));
    }
}
