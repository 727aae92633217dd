//! Daemon events: what happened, recorded as `{"at":…,"data":…,"message":…}`.
//!
//! A leaf: it imports nothing above `util`, so every part (proxy, process,
//! plugins, lua, control, observability, daemon) can report through it.
//! - `record`: [`EventRecord`], the wire and ring form, and the `data!` macro;
//! - `ring`: [`EventRing`], the in-memory history;
//! - `sink`: [`EventSink`], the cloneable handle that emits, and its listeners.
//!
//! An [`EventSink`] writes through an [`EventRecorder`]; the daemon's is the
//! tracing event layer in `observability`, so the log and `rollbridge events`
//! cannot disagree.

mod record;
mod ring;
mod sink;

pub use record::EventRecord;
pub use ring::{EVENT_RING_CAPACITY, EventRing};
pub use sink::{EventRecorder, EventSink, LineWriter, Listener, ListenerGuard, RingWriter};
