//! The store side by side with raw sled, raw redb and SQLite, one criterion
//! group per workload: `cargo bench --bench compare`.
//!
//! Each group opens a fresh store for every engine this build has, a fresh
//! raw sled database, a fresh raw redb database and a fresh SQLite database, prepares the same workload
//! on each (see `common/workload.rs`), and measures them in turn.
//! `cargo run --release --example perf_report` prints the same comparison as
//! one table with ratios.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use sessionstore::{Clock, Engine, ManualClock, SystemClock};

#[allow(
    dead_code,
    reason = "shared with examples/perf_report.rs, which uses the rest"
)]
mod common;

use common::workload::{self, Workload};
use common::{Contender, RawRedb, RawSled, Sqlite, StoreContender};

/// Sessions the save, get, touch and regenerate workloads spread over.
const POPULATION: usize = 1_000;

/// `BENCH_BACKGROUND=1 cargo bench` opens the contenders of the
/// single-threaded workloads with background flushing instead of durable
/// writes. With sled, the store then risks sled's log deadlock (see "Stalls"
/// in src/contract.md).
fn background() -> bool {
    std::env::var_os("BENCH_BACKGROUND").is_some_and(|v| v == "1")
}

fn bench_one<C: Contender>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    contender: &C,
    w: Workload,
    clock: &ManualClock,
) {
    let mut run = workload::prepare(contender, w, POPULATION, clock);
    group.bench_function(contender.label(), |b| b.iter_custom(&mut run));
}

fn compare(c: &mut Criterion) {
    for &w in Workload::ALL {
        let manual = ManualClock::default();
        let clock: Arc<dyn Clock> = if w.needs_manual_clock() {
            Arc::new(manual.clone())
        } else {
            Arc::new(SystemClock)
        };
        let mut group = c.benchmark_group(w.name());
        group.throughput(Throughput::Elements(w.elements_per_op()));
        let mode = w.mode(background());
        for &engine in Engine::ALL {
            let store = StoreContender::new(engine, mode, clock.clone());
            bench_one(&mut group, &store, w, &manual);
        }
        bench_one(&mut group, &RawSled::new(mode, clock.clone()), w, &manual);
        bench_one(&mut group, &RawRedb::new(mode, clock.clone()), w, &manual);
        bench_one(&mut group, &Sqlite::new(mode, clock.clone()), w, &manual);
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = compare
}
criterion_main!(benches);
