//! Turning a panic inside one request into an error for that request, so no
//! client is left waiting for a reply that a panicked task will never write.

use futures_util::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// Runs `future`; a panic inside it becomes `Err(<panic message>)`.
///
/// Unwind safety: the daemon's state sits behind mutexes whose poisoning is
/// ignored on purpose (every section leaves it consistent), and the caller
/// cleans up what the panicked command had started.
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| panic_message(payload.as_ref()))
}

/// The text a panic was raised with (`panic!("...")` or `.expect("...")`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_message_and_a_value_passes_through() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        let formatted = catch_panic(async {
            let ports: Vec<u16> = Vec::new();
            ports
                .first()
                .copied()
                .expect("the release has a proxied port")
        })
        .await;
        assert_eq!(formatted, Err("the release has a proxied port".to_string()));
        let owned = catch_panic(async { panic!("index {} out of range", 3) }).await;
        assert_eq!(owned, Err::<(), _>("index 3 out of range".to_string()));
        let opaque = catch_panic(async { std::panic::panic_any(42u8) }).await;
        assert_eq!(
            opaque,
            Err::<(), _>("a panic without a message".to_string())
        );
    }
}
