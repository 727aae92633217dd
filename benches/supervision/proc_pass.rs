//! One `/proc` pass three ways, to choose the reader of the supervision sampler
//! (benches/supervision/README.md): the hand-written parser that
//! `src/process/proc_table.rs` had, the `procfs` crate's own iterator
//! (`all_processes` + `stat`, which opens each `/proc/<pid>` directory first), and
//! the `procfs` parser fed by one plain read per process (what the sampler uses).
//!
//! Usage: proc_pass [ROUNDS]   (prints one JSON line: median µs per pass each way)
use std::time::Instant;

/// The parser `src/process/proc_table.rs` had before it moved to `procfs`
/// (pid, state, ppid, pgrp, session, start time), kept here for the comparison.
fn hand_parse(text: &str) -> Option<(i32, char, i32, i32, i32, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    Some((
        pid,
        field(3)?.chars().next()?,
        field(4)?.parse().ok()?,
        field(5)?.parse().ok()?,
        field(6)?.parse().ok()?,
        field(22)?.parse().ok()?,
    ))
}

fn hand_written() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|text| hand_parse(&text))
        .filter(|stat| stat.1 != 'Z')
        .count()
}

fn procfs_iterator() -> usize {
    procfs::process::all_processes()
        .map(|all| {
            all.filter_map(|p| p.ok()?.stat().ok())
                .filter(|s| s.state != 'Z')
                .count()
        })
        .unwrap_or(0)
}

fn procfs_parser() -> usize {
    rollbridge::process::snapshot::ProcSnapshot::read()
        .map(|snapshot| snapshot.len())
        .unwrap_or(0)
}

fn median_micros(rounds: usize, pass: fn() -> usize) -> (u128, usize) {
    let mut times = Vec::with_capacity(rounds);
    let mut seen = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        seen = pass();
        times.push(started.elapsed().as_micros());
    }
    times.sort_unstable();
    (times[rounds / 2], seen)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(51);
    let (hand, processes) = median_micros(rounds, hand_written);
    let (iterator, _) = median_micros(rounds, procfs_iterator);
    let (parser, _) = median_micros(rounds, procfs_parser);
    println!(
        "{{\"processes\":{processes},\"handWrittenUs\":{hand},\"procfsIteratorUs\":{iterator},\"procfsParserUs\":{parser}}}"
    );
}
