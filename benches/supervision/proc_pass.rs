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

/// Runs the three ways in turn, `rounds` times, so that a change in the
/// machine's load hits all of them alike; returns each way's median in µs.
fn medians(rounds: usize, ways: [fn() -> usize; 3]) -> ([u128; 3], usize) {
    let mut times: [Vec<u128>; 3] = Default::default();
    let mut seen = 0;
    for _ in 0..rounds {
        for (way, pass) in ways.iter().enumerate() {
            let started = Instant::now();
            seen = pass();
            times[way].push(started.elapsed().as_micros());
        }
    }
    let median = |list: &mut Vec<u128>| {
        list.sort_unstable();
        list[list.len() / 2]
    };
    let [a, b, c] = &mut times;
    ([median(a), median(b), median(c)], seen)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(51);
    let ([hand, iterator, parser], processes) =
        medians(rounds, [hand_written, procfs_iterator, procfs_parser]);
    println!(
        "{{\"processes\":{processes},\"handWrittenUs\":{hand},\"procfsIteratorUs\":{iterator},\"procfsParserUs\":{parser}}}"
    );
}
