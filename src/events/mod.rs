//! Daemon events: what happened, recorded as `{"at":…,"data":…,"message":…}`.
//!
//! A leaf: it imports nothing above `util`, so every part (proxy, process,
//! plugins, lua, control, observability, daemon) can report through it.
//! - `kinds`: [`Event`], every event as a type, and where its name and data
//!   keys are spelled (the one place to add an event); `golden` pins each
//!   event's line to the bytes the daemon wrote before events were typed;
//! - `record`: [`EventRecord`], the wire and ring form, and the `data!` macro;
//! - `ring`: [`EventRing`], the in-memory history;
//! - `sink`: [`EventSink`], the cloneable handle that emits, and its listeners
//!   ([`EventSink::listen`]: a callback on the emitting task);
//! - `subscription`: [`EventSink::subscribe`], a bounded queue for a task that
//!   consumes events at its own pace;
//! - `output_tap`: [`EventSink::subscribe_output`], process output lines for
//!   `logs --follow` (not events: they never reach the ring or the log).
//!
//! An [`EventSink`] writes through an [`EventRecorder`]; the daemon's is the
//! tracing event layer in `observability`, so the log and `rollbridge events`
//! cannot disagree.

#[cfg(test)]
mod golden;
mod kinds;
mod output_tap;
mod record;
mod ring;
mod rollout;
mod sink;
mod subscription;

pub use kinds::{
    CommandHookOutcome, Event, NON_UTF8_ENV_HINT, ORPHANS_HINT, ProcessEvent, ProcessScope,
    StartReason, StartupProcessStatus,
};
pub use output_tap::{OutputLine, OutputSubscription};
pub use record::EventRecord;
pub use ring::{EVENT_RING_CAPACITY, EventRing};
pub use rollout::TrafficEvent;
pub use sink::{EventRecorder, EventSink, LineWriter, Listener, ListenerGuard, RingWriter};
pub use subscription::Subscription;
