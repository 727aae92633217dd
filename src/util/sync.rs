//! Locks that survive a panic elsewhere. A thread that panicked while holding a
//! lock leaves it poisoned; rollbridge's shared state stays consistent across
//! such a panic (every section that holds a lock is short and does not leave
//! half-done work behind), so the lock is taken anyway instead of spreading the
//! panic to every other thread.

use std::sync::LockResult;

/// `mutex.lock().unpoisoned()`, `rwlock.read().unpoisoned()`,
/// `condvar.wait(guard).unpoisoned()`: the guard, poisoned or not.
pub trait Unpoisoned<G> {
    fn unpoisoned(self) -> G;
}

impl<G> Unpoisoned<G> for LockResult<G> {
    fn unpoisoned(self) -> G {
        self.unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_poisoned_mutex_still_hands_out_its_value() {
        let shared = Arc::new(Mutex::new(1));
        let clone = shared.clone();
        let _ = std::thread::spawn(move || {
            let _guard = clone.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(shared.is_poisoned());
        *shared.lock().unpoisoned() += 1;
        assert_eq!(*shared.lock().unpoisoned(), 2);
    }
}
