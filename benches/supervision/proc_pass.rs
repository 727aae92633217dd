//! One `/proc` pass three ways, to choose the reader of the supervision sampler
//! (benches/supervision/README.md): the hand-written parser of
//! `src/process/proc_table.rs`, the `procfs` crate's own iterator
//! (`all_processes` + `stat`, which opens each `/proc/<pid>` directory first), and
//! the `procfs` parser fed by one plain read per process (what the sampler uses).
//!
//! Usage: proc_pass [ROUNDS]   (prints one JSON line: median µs per pass each way)
use std::time::Instant;

fn hand_written() -> usize {
    rollbridge::process::proc_table::scan_stats()
        .map(|stats| stats.iter().filter(|s| s.is_live()).count())
        .unwrap_or(0)
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
