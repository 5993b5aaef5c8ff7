//! Throughput: verbs per second with many environments served at once on
//! all cores, and with one environment served by one task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envpack_host::{Pack, Runtime};
use envpack_model::Environment;

use crate::stats::{Figure, value};
use crate::{BenchError, Shape, call_ok, fail, scenario};

/// Verbs per second with many environments served at once on all cores
/// (`throughput.verbs_per_second`), and with one environment served by one
/// task (`throughput.one-task`): how far the first is from cores x the second.
pub async fn measure(
    host: &Arc<Runtime>,
    pack: &Arc<Pack>,
    shape: &Shape<'_>,
    duration: Duration,
) -> Result<Vec<Figure>, BenchError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut envs = Vec::new();
    for i in 0..cores * 4 {
        let env = shape.environment(&format!("throughput-{i}"), 10);
        for request in scenario::setup() {
            call_ok(host, pack, &env, &request).await?;
        }
        envs.push(env);
    }
    let one = serve(host, pack, envs[..1].to_vec(), duration / 3).await?;
    let all = serve(host, pack, envs, duration).await?;
    Ok(vec![
        value("throughput.verbs_per_second", "1/s", all),
        value("throughput.one-task", "1/s", one),
    ])
}

/// Verbs per second, one task per environment, for `duration`.
async fn serve(
    host: &Arc<Runtime>,
    pack: &Arc<Pack>,
    envs: Vec<Arc<Environment>>,
    duration: Duration,
) -> Result<f64, BenchError> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for env in envs {
        let (host, pack) = (host.clone(), pack.clone());
        tasks.spawn(async move {
            let mut done = 0u64;
            let mix = scenario::mix();
            while started.elapsed() < duration {
                for request in &mix {
                    call_ok(&host, &pack, &env, request).await?;
                    done += 1;
                }
            }
            Ok::<u64, BenchError>(done)
        });
    }
    let mut total = 0;
    while let Some(result) = tasks.join_next().await {
        total += result.map_err(|e| fail("throughput task")(e.to_string()))??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
