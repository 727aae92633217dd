//! A fake systemd `NOTIFY_SOCKET`: binds the datagram socket and reads every
//! notification on a thread of its own, as systemd does. (Reading only while a
//! test waits would let the kernel's small datagram queue fill up, and the
//! daemon's next notification would block.)

use super::wait::{LONG_PATIENCE, poll};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct NotifySocket {
    received: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    pub fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, stopped) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(length) = socket.recv(&mut buffer) {
                    let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
                    into.lock().unwrap().push(message);
                }
            }
        });
        NotifySocket { received, stop }
    }

    /// Every notification so far, oldest first.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for a message containing `needle` at index `after` or later;
    /// returns its index.
    pub fn wait_for(&self, needle: &str, after: usize) -> usize {
        let found = poll(LONG_PATIENCE, || {
            let received = self.received.lock().unwrap();
            let later = received.get(after..).unwrap_or_default();
            later
                .iter()
                .position(|m| m.contains(needle))
                .map(|i| after + i)
        });
        found.unwrap_or_else(|| {
            panic!(
                "no {needle:?} from message {after} on among {:?}",
                self.received()
            )
        })
    }

    /// Waits until `seen` holds for the notifications so far.
    pub fn until(&self, what: &str, seen: impl Fn(&[String]) -> bool) {
        let found = poll(LONG_PATIENCE, || {
            seen(&self.received.lock().unwrap()).then_some(())
        });
        assert!(found.is_some(), "{what}; received {:?}", self.received());
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
