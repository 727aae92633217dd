//! Memory supervision: sample the resident memory of the whole process group every
//! `checkIntervalMs`, warn once per crossing of `warnBytes`, and restart through
//! the full graceful stop when `limitBytes` is exceeded.
//!
//! RSS counts shared pages in every process that maps them, so a group of forked
//! workers reports more than it really uses; we report RSS because that is what
//! the limit is defined on.

use super::definition::StartReason;
use super::managed::ManagedProcess;
use super::proc_table::{GroupMember, group_members};
use crate::config::model::MemoryConfig;
use crate::data;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::{MissedTickBehavior, interval_at};

/// The sum of the readable RSS values, or `None` when no member had one.
pub fn group_rss(members: &[GroupMember]) -> Option<u64> {
    members
        .iter()
        .filter_map(|m| m.rss_bytes)
        .reduce(|a, b| a.saturating_add(b))
}

/// What one memory sample calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryVerdict {
    Fine,
    Warn,
    OverLimit,
}

/// Pure decision for one sample. `warned` is the latch: a warning is given once,
/// and re-armed only when the RSS falls back to `warnBytes` or below.
pub fn judge_sample(rss: u64, config: &MemoryConfig, warned: &mut bool) -> MemoryVerdict {
    if rss > config.limit_bytes {
        return MemoryVerdict::OverLimit;
    }
    if config.warn_bytes > 0 && rss > config.warn_bytes {
        if *warned {
            return MemoryVerdict::Fine;
        }
        *warned = true;
        return MemoryVerdict::Warn;
    }
    *warned = false;
    MemoryVerdict::Fine
}

impl ManagedProcess {
    /// Starts sampling for the child of `generation`; the task ends by itself when
    /// that child is gone.
    pub(super) fn start_memory_monitor(self: &Arc<Self>, generation: u64) {
        let Some(config) = self.lock().def.config.memory.clone() else {
            return;
        };
        let every = Duration::from_millis(config.check_interval_ms.max(1));
        let process = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut ticker = interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(process) = process.upgrade() else {
                    return;
                };
                if !process.sample_memory(generation, &config).await {
                    return;
                }
            }
        });
        let mut inner = self.lock();
        if inner.generation == generation && inner.child.is_some() {
            if let Some(old) = inner.memory_monitor.replace(task.abort_handle()) {
                old.abort();
            }
        } else {
            task.abort();
        }
    }

    /// Takes one sample. Returns false when the monitor should end.
    async fn sample_memory(self: &Arc<Self>, generation: u64, config: &MemoryConfig) -> bool {
        let pid = {
            let inner = self.lock();
            match &inner.child {
                Some(child) if inner.generation == generation => {
                    if inner.memory_restarting {
                        return true;
                    }
                    child.pid
                }
                _ => return false,
            }
        };
        let members = tokio::task::spawn_blocking(move || group_members(pid))
            .await
            .unwrap_or_default();
        if members.is_empty() {
            return true;
        }
        let rss = group_rss(&members);
        let (verdict, id) = {
            let mut inner = self.lock();
            if inner.generation != generation || inner.child.is_none() {
                return false;
            }
            inner.children = members;
            let Some(rss) = rss else {
                return true;
            };
            inner.rss_bytes = Some(rss);
            let mut warned = inner.memory_warned;
            let verdict = judge_sample(rss, config, &mut warned);
            inner.memory_warned = warned;
            (verdict, inner.def.instance_id.clone())
        };
        let rss = rss.unwrap_or_default();
        match verdict {
            MemoryVerdict::Fine => {}
            MemoryVerdict::Warn => self.emit(
                "memory warning",
                data! { "id" => id, "rssBytes" => rss, "warnBytes" => config.warn_bytes },
            ),
            MemoryVerdict::OverLimit => {
                self.emit(
                    "memory limit exceeded",
                    data! { "id" => id, "limitBytes" => config.limit_bytes, "rssBytes" => rss },
                );
                let me = self.clone();
                tokio::spawn(async move { me.memory_restart().await });
            }
        }
        true
    }

    /// Restarts the process because of its memory: the full graceful stop, then a
    /// start with reason `memory` if the owner still wants the process. Not counted
    /// as a crash restart. A second call while one runs does nothing.
    pub async fn memory_restart(self: &Arc<Self>) {
        {
            let mut inner = self.lock();
            if inner.memory_restarting {
                return;
            }
            inner.memory_restarting = true;
        }
        self.stop().await;
        let outcome = if (self.supervision.should_restart)() {
            {
                let mut inner = self.lock();
                inner.memory_restarts += 1;
                inner.last_memory_restart_at = Some(SystemTime::now());
                inner.memory_warned = false;
            }
            self.start(StartReason::Memory).await
        } else {
            Ok(())
        };
        self.lock().memory_restarting = false;
        if let Err(e) = outcome {
            let id = self.instance_id();
            self.emit(
                "memory restart failed",
                data! { "error" => e.to_string(), "id" => id },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(limit: u64, warn: u64) -> MemoryConfig {
        MemoryConfig {
            limit_bytes: limit,
            warn_bytes: warn,
            check_interval_ms: 1000,
        }
    }

    #[test]
    fn warning_is_latched_until_memory_falls_back() {
        let cfg = config(1000, 500);
        let mut warned = false;
        assert_eq!(judge_sample(400, &cfg, &mut warned), MemoryVerdict::Fine);
        assert_eq!(judge_sample(600, &cfg, &mut warned), MemoryVerdict::Warn);
        assert_eq!(judge_sample(700, &cfg, &mut warned), MemoryVerdict::Fine);
        assert_eq!(judge_sample(500, &cfg, &mut warned), MemoryVerdict::Fine);
        assert_eq!(judge_sample(501, &cfg, &mut warned), MemoryVerdict::Warn);
        assert_eq!(
            judge_sample(1001, &cfg, &mut warned),
            MemoryVerdict::OverLimit
        );
        assert!(warned, "exceeding the limit leaves the latch alone");
    }

    #[test]
    fn no_warning_without_warn_bytes() {
        let cfg = config(1000, 0);
        let mut warned = false;
        assert_eq!(judge_sample(999, &cfg, &mut warned), MemoryVerdict::Fine);
        assert_eq!(
            judge_sample(1000, &cfg, &mut warned),
            MemoryVerdict::Fine,
            "the limit must be exceeded, not reached"
        );
    }

    #[test]
    fn rss_sums_only_readable_members() {
        let member = |pid, rss| GroupMember {
            pid,
            command: "x".into(),
            rss_bytes: rss,
        };
        assert_eq!(group_rss(&[member(1, Some(10)), member(2, None)]), Some(10));
        assert_eq!(group_rss(&[member(1, None)]), None);
        assert_eq!(group_rss(&[]), None);
    }

    #[test]
    fn a_live_group_has_resident_memory_and_an_empty_one_has_none() {
        let own_group = nix::unistd::getpgrp().as_raw();
        assert!(group_rss(&group_members(own_group)).unwrap() > 0);
        assert_eq!(group_rss(&group_members(2_147_483_646)), None);
    }
}
