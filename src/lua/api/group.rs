//! Helpers acting on the hook's process group: `signal`, `alive`, `wait_exit`,
//! `children`. A group is alive while any member runs (zombies do not count).

use super::{millis, raise};
use crate::lua::ctx::{CallScope, HookCtx};
use crate::process::ProcessGroup;
use crate::process::proc_table::{read_cmdline, read_rss_bytes, scan_stats};
use crate::util::signals::parse_signal;
use mlua::{Lua, Table, UserDataMethods};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::sync::Arc;

pub(super) fn add_methods<M: UserDataMethods<HookCtx>>(methods: &mut M) {
    methods.add_method("signal", |_, this, name: String| {
        let signal = parse_signal(&name).ok_or_else(|| {
            raise(
                "signal",
                format!("unknown signal name {name:?}; use a name such as \"TERM\" or \"SIGTSTP\""),
            )
        })?;
        let Some(group) = group_of(&this.scope, "signal")? else {
            return Ok(false);
        };
        if group.known_gone() {
            return Ok(false);
        }
        match kill(Pid::from_raw(-group.pgid()), signal) {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(error) => Err(raise(
                "signal",
                format!(
                    "could not send {} to process group {}: {}",
                    signal.as_str(),
                    group.pgid(),
                    error.desc()
                ),
            )),
        }
    });

    methods.add_async_method("alive", |_, this, ()| {
        let group = group_of(&this.scope, "alive");
        async move {
            let Some(group) = group? else {
                return Ok(false);
            };
            Ok(tokio::task::spawn_blocking(move || group.alive())
                .await
                .unwrap_or(false))
        }
    });

    methods.add_async_method("wait_exit", |_, this, ms: Option<f64>| {
        let scope = this.scope.clone();
        async move {
            let group = group_of(&scope, "wait_exit")?;
            let asked = millis("wait_exit", "the time to wait", ms)?;
            let bound = asked
                .unwrap_or_else(|| scope.remaining())
                .min(scope.remaining());
            let Some(group) = group else {
                return Ok(true);
            };
            Ok(group.wait_empty(Some(bound)).await)
        }
    });

    methods.add_async_method("children", |lua, this, ()| {
        let group = group_of(&this.scope, "children");
        async move {
            let members = match group? {
                Some(group) => {
                    let pgid = group.pgid();
                    tokio::task::spawn_blocking(move || live_members(pgid))
                        .await
                        .unwrap_or_default()
                }
                None => Vec::new(),
            };
            members_table(&lua, &members)
        }
    });
}

/// The hook's group; an error for matchers, which have no managed process.
fn group_of(scope: &CallScope, helper: &str) -> mlua::Result<Option<Arc<ProcessGroup>>> {
    if scope.process.is_none() {
        return Err(raise(
            helper,
            "matchers have no managed process to act on; use the pid in the proc argument",
        ));
    }
    Ok(scope.group())
}

struct Member {
    pid: i32,
    ppid: i32,
    command: String,
    cmdline: String,
    rss_bytes: Option<u64>,
}

/// Every live (non-zombie) process of group `pgid`, leader included, by pid.
fn live_members(pgid: i32) -> Vec<Member> {
    let Ok(stats) = scan_stats() else {
        return Vec::new();
    };
    stats
        .into_iter()
        .filter(|stat| stat.pgrp == pgid && stat.is_live())
        .map(|stat| Member {
            pid: stat.pid,
            ppid: stat.ppid,
            cmdline: read_cmdline(stat.pid, &stat.comm),
            rss_bytes: read_rss_bytes(stat.pid),
            command: stat.comm,
        })
        .collect()
}

fn members_table(lua: &Lua, members: &[Member]) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(members.len(), 0)?;
    for member in members {
        let entry = lua.create_table_with_capacity(0, 5)?;
        entry.raw_set("pid", member.pid)?;
        entry.raw_set("ppid", member.ppid)?;
        entry.raw_set("command", member.command.as_str())?;
        entry.raw_set("cmdline", member.cmdline.as_str())?;
        entry.raw_set("rssBytes", member.rss_bytes)?;
        list.raw_push(entry)?;
    }
    Ok(list)
}
