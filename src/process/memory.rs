//! Memory supervision and `children`: the daemon's sampler (`sampler.rs`) hands
//! each process the members of its tree after every pass; every `checkIntervalMs`
//! their resident memory is judged: a warning once per crossing of `warnBytes`, a
//! restart through the full graceful stop when `limitBytes` is exceeded.
//!
//! RSS counts shared pages in every process that maps them, so a group of forked
//! workers reports more than it really uses; we report RSS because that is what
//! the limit is defined on.

use super::definition::StartReason;
use super::managed::ManagedProcess;
use super::proc_table::GroupMember;
use super::sampler::{Member, OnSample};
use crate::config::model::MemoryConfig;
use crate::events::ProcessEvent;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often `children` is refreshed for a process without a `memory` block.
const CHILDREN_REFRESH: Duration = Duration::from_secs(2);

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
    /// Subscribes the child of `generation` to the daemon's sampler: every pass
    /// refreshes `children`; with a `memory` block, every `checkIntervalMs` the
    /// RSS is judged. The subscription ends with the child (or a stop).
    pub(super) fn start_sampling(self: &Arc<Self>, generation: u64) {
        let (group, config) = {
            let inner = self.lock();
            (inner.group.clone(), inner.def.config.memory.clone())
        };
        let Some(group) = group else {
            return;
        };
        let every = config
            .as_ref()
            .map(|c| Duration::from_millis(c.check_interval_ms.max(1)))
            .unwrap_or(CHILDREN_REFRESH);
        let process = Arc::downgrade(self);
        let runtime = tokio::runtime::Handle::current();
        let on_sample: OnSample = Arc::new(move |members: &[Member], due: bool| {
            if let Some(process) = process.upgrade() {
                process.take_sample(generation, members, due, config.as_ref(), &runtime);
            }
        });
        let subscription = group.tracked().subscribe(every, on_sample);
        let mut inner = self.lock();
        if inner.generation == generation && inner.child.is_some() {
            inner.sampling = Some(subscription);
        }
    }

    /// One pass's result for this process: `children` always; the memory
    /// verdict when `due` and memory is supervised.
    fn take_sample(
        self: &Arc<Self>,
        generation: u64,
        members: &[Member],
        due: bool,
        config: Option<&MemoryConfig>,
        runtime: &tokio::runtime::Handle,
    ) {
        if members.is_empty() {
            return;
        }
        let children: Vec<GroupMember> = members
            .iter()
            .map(|m| GroupMember {
                pid: m.pid,
                command: m.command.clone(),
                rss_bytes: m.rss_bytes,
            })
            .collect();
        let rss = group_rss(&children);
        let (verdict, id, config) = {
            let mut inner = self.lock();
            if inner.generation != generation || inner.child.is_none() {
                return;
            }
            inner.children = children;
            let Some(config) = config else {
                return;
            };
            if !due || inner.memory_restarting || inner.sampling.is_none() {
                return;
            }
            let Some(rss) = rss else {
                return;
            };
            inner.rss_bytes = Some(rss);
            let mut warned = inner.memory_warned;
            let verdict = judge_sample(rss, config, &mut warned);
            inner.memory_warned = warned;
            (verdict, inner.def.instance_id.clone(), config)
        };
        let rss = rss.unwrap_or_default();
        match verdict {
            MemoryVerdict::Fine => {}
            MemoryVerdict::Warn => self.emit(ProcessEvent::MemoryWarning {
                id,
                rss_bytes: rss,
                warn_bytes: config.warn_bytes,
            }),
            MemoryVerdict::OverLimit => {
                self.emit(ProcessEvent::MemoryLimitExceeded {
                    id,
                    limit_bytes: config.limit_bytes,
                    rss_bytes: rss,
                });
                let me = self.clone();
                runtime.spawn(async move { me.memory_restart().await });
            }
        }
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
            self.emit(ProcessEvent::MemoryRestartFailed {
                error: e.to_string(),
                id,
            });
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
        use super::super::proc_table::group_members;
        let own_group = nix::unistd::getpgrp().as_raw();
        assert!(group_rss(&group_members(own_group)).unwrap() > 0);
        assert_eq!(group_rss(&group_members(2_147_483_646)), None);
    }
}
