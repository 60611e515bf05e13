//! `lynk demo`: the original quickstart's two threads contending for
//! "my lock", on the in-memory backend or (with `--table`) on DynamoDB.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lynk_core::{Clock, SystemClock};

use crate::cli::{DemoArgs, Global};
use crate::exit::{self, Failure};
use crate::output::{fmt_duration, fmt_measured};

/// The blocking factory the demo runs on: in memory, or over `--table`
/// (after checking the table, so a typo fails at once with a clear message).
fn factory(global: &Global, args: &DemoArgs) -> Result<lynk_core::blocking::LockFactory, Failure> {
    let Some(table) = &args.table else {
        return Ok(lynk_testkit::get_lock_factory("lynk-quickstart")?);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::FAILURE, format!("could not start a runtime: {e}")))?;
    crate::connect::check_names(global, [&args.lock])?;
    runtime.block_on(crate::connect::checked_backend(global, table))?;
    drop(runtime);
    let builder = lynk_dynamo::DynamoBackend::builder(table.clone())
        .options(crate::connect::aws_options(global))
        .layout(crate::connect::layout(global)?);
    Ok(lynk_dynamo::get_lock_factory_with(builder)?)
}

/// Runs the demo and returns the exit code.
pub fn run(global: &Global, args: DemoArgs) -> i32 {
    let factory = match factory(global, &args) {
        Ok(f) => f,
        Err(e) => {
            e.print();
            return e.code;
        }
    };
    let clock = SystemClock;
    let started = clock.now();
    let last_release: Arc<Mutex<Option<Instant>>> = Arc::default();
    let handovers: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let workers: Vec<_> = (1..=args.workers)
        .map(|i| {
            let factory = factory.clone();
            let last_release = last_release.clone();
            let handovers = handovers.clone();
            let (hold, lease, name) = (args.hold, args.lease, args.lock.clone());
            std::thread::Builder::new()
                .name(format!("Thread-{i}"))
                .spawn(move || -> Result<(), lynk_core::LockError> {
                    let me = format!("Thread-{i}");
                    println!("{me} - Starting");
                    let lock = factory.create_lock(name).with_lease(lease);
                    let guard = lock.acquire()?;
                    let acquired = clock.now();
                    let handover = last_release
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .map(|r| acquired.saturating_duration_since(r));
                    match handover {
                        Some(h) => {
                            handovers.lock().unwrap_or_else(|e| e.into_inner()).push(h);
                            println!(
                                "{me} - Lock acquired (token {}, handover {})",
                                guard.fencing_token(),
                                fmt_measured(h)
                            );
                        }
                        None => println!("{me} - Lock acquired (token {})", guard.fencing_token()),
                    }
                    factory.block_on(clock.sleep(hold));
                    *last_release.lock().unwrap_or_else(|e| e.into_inner()) = Some(clock.now());
                    guard.release()?;
                    println!("{me} - Lock released");
                    Ok(())
                })
        })
        .collect();
    let mut code = exit::OK;
    for w in workers {
        match w {
            Ok(handle) => match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let failure = Failure::from_lock(&e);
                    failure.print();
                    code = failure.code;
                }
                // A worker's panic (a closed stdout, or a bug the panic hook
                // already reported) ends lynk as one in the main thread does.
                Err(payload) => std::panic::resume_unwind(payload),
            },
            Err(e) => {
                eprintln!("error: could not start a worker thread: {e}");
                code = exit::FAILURE;
            }
        }
    }
    let total = clock.now() - started;
    let handovers = handovers.lock().unwrap_or_else(|e| e.into_inner());
    println!();
    for (i, h) in handovers.iter().enumerate() {
        println!(
            "handover {}: {} from release to the next acquire",
            i + 1,
            fmt_measured(*h)
        );
    }
    let n = args.workers;
    println!(
        "finished in {} for {} workers holding {} each (the original lynk needs about {}: it sleeps a full lease before each handover)",
        fmt_measured(total),
        n,
        fmt_duration(args.hold),
        fmt_duration(args.hold * n + args.lease * n.saturating_sub(1)),
    );
    let report = factory.shutdown();
    if !report.is_clean() {
        code = exit::FAILURE;
    }
    code
}
