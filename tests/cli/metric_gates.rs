//! Rollouts judged by a real Prometheus: the local-process pack's
//! `prometheus-targets.json` lets Prometheus find each revision with its
//! labels; a metric gate asks it about the canary alone while a load loop
//! sends real traffic through nginx. Slots 7 and up: the other
//! local-process tests and the bench use the ports below.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::common::prometheus::Prometheus;
use crate::common::rollout::{finished, split_text};
use crate::common::{Sandbox, json, ok};
use crate::local_process::{Reaper, artifacts, distribution, get, lifecycle, local_env, processes_under, stage};

/// The work directory of environment `env` (the host names it
/// `env-<first 16 hex digits of the id's sha256>`).
fn work_dir(sb: &Sandbox, env: &str) -> PathBuf {
    let hash = hex::encode(Sha256::digest(env.as_bytes()));
    sb.state_dir().join("work").join(format!("env-{}", &hash[..16]))
}

/// What the pack's `prometheus-targets.json` lists: (revision, deployment,
/// environment, target) per entry, in the file's order.
fn scrape_targets(path: &Path) -> Vec<[String; 4]> {
    let groups: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let text = |v: &serde_json::Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("not a string: {groups}"))
            .to_string()
    };
    groups
        .as_array()
        .unwrap_or_else(|| panic!("not a list of target groups: {groups}"))
        .iter()
        .map(|g| {
            assert_eq!(g["targets"].as_array().map(Vec::len), Some(1), "{groups}");
            let labels = &g["labels"];
            [
                text(&labels["revision"]),
                text(&labels["deployment"]),
                text(&labels["environment"]),
                text(&g["targets"][0]),
            ]
        })
        .collect()
}

/// A real Prometheus pointed at nothing but the pack's
/// `prometheus-targets.json` finds both revisions of a 50/50 split and
/// counts, per revision, exactly what the client got through nginx: every
/// request once, the failing revision's 500s and none of the other's. A
/// drained revision leaves the targets, and Prometheus stops scraping it.
#[test]
fn prometheus_finds_the_revisions_from_the_packs_targets_and_counts_their_answers() {
    use crate::common::prometheus::{Prometheus, sample};
    use std::collections::BTreeMap;
    let (sb, listen, _) = local_env(14);
    let _reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    stage(&sb, "R1", &art.tarball, &["run=/usr/bin/python3 app.py"], "5");
    stage(
        &sb,
        "R2",
        &art.executable,
        &["env.FAIL_RATIO=0.3", "env.FAIL_SEED=1"],
        "5",
    );
    let targets = work_dir(&sb, "site").join("prometheus-targets.json");
    ok(&sb, &["revision", "warm", "site", "R1"]);
    ok(&sb, &["revision", "warm", "site", "R2"]);
    ok(&sb, &["traffic", "set", "site", "web", "R1=5000", "R2=5000"]);
    let listed = scrape_targets(&targets);
    let names: Vec<[&str; 3]> = listed
        .iter()
        .map(|[r, d, e, _]| [r.as_str(), d.as_str(), e.as_str()])
        .collect();
    assert_eq!(names, [["R1", "web", "site"], ["R2", "web", "site"]], "{listed:?}");

    let mut prometheus = Prometheus::start(&sb.dir.path().join("prometheus"), &targets);
    prometheus.wait_until("both revisions scraped", "up{job=\"revisions\"} == 1", |r| r.len() == 2);
    let sent = 200;
    let mut answered: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for _ in 0..sent {
        let (status, body) = get(listen, "/");
        *answered.entry((body, status)).or_insert(0) += 1;
    }
    // Scraped every second: wait until the last requests are in.
    prometheus.wait_until("every request counted", "sum(app_requests_total)", |r| {
        r.first().is_some_and(|s| sample(s) >= sent as f64)
    });
    let by_revision: BTreeMap<String, usize> = prometheus
        .vector("sum by (revision) (app_requests_total)")
        .iter()
        .map(|s| {
            (
                s["metric"]["revision"].as_str().unwrap_or("").to_string(),
                sample(s) as usize,
            )
        })
        .collect();
    let by_code: BTreeMap<(String, u16), usize> = prometheus
        .vector("sum by (revision, code) (app_requests_total)")
        .iter()
        .map(|s| {
            let label = |k: &str| s["metric"][k].as_str().unwrap_or("").to_string();
            (
                (label("revision"), label("code").parse().unwrap_or(0)),
                sample(s) as usize,
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let client: BTreeMap<String, usize> = answered.iter().fold(BTreeMap::new(), |mut m, ((r, _), n)| {
        *m.entry(r.clone()).or_insert(0) += n;
        m
    });
    assert_eq!(
        by_revision.keys().collect::<Vec<_>>(),
        ["R1", "R2"],
        "Prometheus found both revisions: {by_revision:?}"
    );
    assert_eq!(by_revision.values().sum::<usize>(), sent, "{by_revision:?}");
    assert_eq!(
        by_revision, client,
        "Prometheus counts what the client got: {answered:?}"
    );
    assert_eq!(by_code, answered, "per revision and status code, too");
    assert!(
        !by_code.contains_key(&("R1".to_string(), 500)),
        "R1 never failed: {by_code:?}"
    );
    let r2_failed = by_code.get(&("R2".to_string(), 500)).copied().unwrap_or(0) as f64 / by_revision["R2"] as f64;
    assert!(
        (0.15..=0.45).contains(&r2_failed),
        "FAIL_RATIO=0.3 made {r2_failed} of R2's answers 500s: {by_code:?}"
    );

    ok(&sb, &["traffic", "set", "site", "web", "R1=10000", "R2=0"]);
    ok(&sb, &["revision", "drain", "site", "R2"]);
    let left: Vec<String> = scrape_targets(&targets).into_iter().map(|[r, ..]| r).collect();
    assert_eq!(left, ["R1"], "the drained R2 left the targets");
    prometheus.wait_until("R2 no longer scraped", "up{revision=\"R2\"}", |r| r.is_empty());
    assert_eq!(prometheus.vector("up{revision=\"R1\"}").len(), 1, "R1 is still scraped");
    // Prometheus down: stopped, it answers nothing.
    prometheus.stop();
    assert!(
        TcpStream::connect(("127.0.0.1", prometheus.port())).is_err(),
        "a stopped Prometheus answers nothing"
    );

    ok(&sb, &["env", "remove", "site", "--force"]);
    let left = processes_under(&sb.state_dir());
    assert!(left.is_empty(), "env remove left processes: {left:?}");
}

/// Real users: GETs through nginx every few milliseconds on a thread of
/// its own until dropped (connection errors, as during a reload, skipped).
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sent = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = write!(stream, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                    let _ = stream.read_to_end(&mut Vec::new());
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The canary's own error ratio over the last 4 s, for the metric gate.
const ERROR_RATIO: &str = "sum(rate(app_requests_total{environment=\"{{environment}}\",revision=\"{{revision}}\",code=\"500\"}[4s])) / sum(rate(app_requests_total{environment=\"{{environment}}\",revision=\"{{revision}}\"}[4s]))";

/// `site` on `slot` with R1 serving all of `web` through nginx, R2 staged
/// with `r2` settings, a Prometheus on the pack's targets that already
/// scrapes R1, and users sending requests.
struct Canary {
    // Dropped first (fields drop in order): the reaper finds the processes
    // under the state directory before the sandbox deletes it.
    _reaper: Reaper,
    _load: Load,
    sb: Sandbox,
    listen: u16,
    prometheus: Prometheus,
}

fn canary(slot: u16, r2: &[&str]) -> Canary {
    let (sb, listen, _) = local_env(slot);
    let reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    stage(&sb, "R1", &art.executable, &[], "2");
    ok(&sb, &["revision", "warm", "site", "R1"]);
    ok(&sb, &["traffic", "set", "site", "web", "R1=10000"]);
    stage(&sb, "R2", &art.executable, r2, "2");
    let targets = work_dir(&sb, "site").join("prometheus-targets.json");
    let prometheus = Prometheus::start(&sb.dir.path().join("prometheus"), &targets);
    prometheus.wait_until("R1 scraped", "up{revision=\"R1\"} == 1", |r| r.len() == 1);
    let load = Load::start(listen);
    Canary {
        sb,
        listen,
        prometheus,
        _load: load,
        _reaper: reaper,
    }
}

impl Canary {
    fn gate(&self, extra: &str) -> String {
        format!(
            "prometheus={},max=0.1,min-samples=3,failures=2,inconclusive=30{extra},query={ERROR_RATIO}",
            self.prometheus.url()
        )
    }

    /// `rollout start site web --to R2 ARGS... --analysis GATE` in the background.
    fn start(&self, args: &str, gate: &str) -> std::process::Child {
        let mut all = vec!["rollout", "start", "site", "web", "--to", "R2", "--interval", "500ms"];
        all.extend(args.split(' '));
        all.extend(["--analysis", gate]);
        crate::common::spawn(&self.sb, &all)
    }

    fn rollout(&self) -> serde_json::Value {
        json(&self.sb, &["rollout", "status", "site", "web", "--json"])[0].clone()
    }

    /// Every generation of web's split, oldest first.
    fn generations(&self) -> Vec<String> {
        self.sb
            .sql_rows("SELECT entries FROM split_generations WHERE deployment = 'web' ORDER BY generation")
            .into_iter()
            .map(|row| split_text(&serde_json::from_str(&row[0]).unwrap()))
            .collect()
    }

    fn wait_for_soak(&self, label: &str) {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while !self.rollout()["steps"].as_array().is_some_and(|steps| {
            steps.iter().any(|s| {
                s["action"]["kind"] == "soak"
                    && s["state"] == "started"
                    && s["action"]["label"].as_str().unwrap_or("").contains(label)
            })
        }) {
            assert!(
                std::time::Instant::now() < until,
                "no soak {label}: {:#}",
                self.rollout()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn remove(self) {
        ok(&self.sb, &["env", "remove", "site", "--force"]);
    }
}

/// One seeded canary that fails 30% of its requests, then one healthy
/// canary, on `slot`: (where the bad one stopped, the healthy one's exit).
fn seeded_pair(slot: u16, seed: u32) -> (String, i32) {
    let seed_setting = format!("env.FAIL_SEED={seed}");
    let bad = canary(slot, &["env.FAIL_RATIO=0.3", &seed_setting]);
    let child = bad.start("--steps 50,100 --soak 8s", &bad.gate(""));
    let (code, stderr) = finished(child);
    let r = bad.rollout();
    assert_eq!(code, 1, "seed {seed}: the bad canary rolled back: {stderr}");
    assert_eq!(r["state"], "rolled-back", "{r:#}");
    assert!(r["reason"].as_str().unwrap().contains("bad results in a row"), "{r:#}");
    assert_eq!(bad.generations().last().unwrap(), "R1=10000");
    assert_eq!(distribution(bad.listen, 10), [("R1".to_string(), 10)].into());
    let failed = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "failed")
        .map(|s| s["action"]["label"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    bad.remove();

    let good = canary(slot, &[]);
    let child = good.start("--steps 50,100 --soak 3s", &good.gate(""));
    let (code, stderr) = finished(child);
    let r = good.rollout();
    assert!(code != 0 || r["state"] == "succeeded", "{r:#}");
    if code == 0 {
        assert_eq!(good.generations().last().unwrap(), "R2=10000");
        assert_eq!(lifecycle(&good.sb, "R1"), "inactive");
    } else {
        eprintln!("seed {seed}: the healthy canary ended {code}: {stderr}\n{r:#}");
    }
    good.remove();
    (failed, code)
}

/// The bar: a canary failing 30% of its users' requests is rolled
/// back by the metric gate before 100% in at least 4 of 5 seeded runs
/// (and by the end in all), while a healthy one promotes in 5 of 5.
#[test]
fn a_metric_gate_rolls_back_a_bad_canary_before_100_and_promotes_a_healthy_one() {
    let runs: Vec<_> = (0..5u16)
        .map(|i| std::thread::spawn(move || seeded_pair(7 + i, u32::from(i) + 1)))
        .collect();
    let results: Vec<(String, i32)> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!("where each bad canary was rolled back, and each healthy one's exit: {results:?}");
    let before_100 = results.iter().filter(|(label, _)| label.contains("50%")).count();
    assert!(before_100 >= 4, "rolled back at 50% in {before_100} of 5: {results:?}");
    let promoted = results.iter().filter(|(_, code)| *code == 0).count();
    assert_eq!(promoted, 5, "healthy canaries promoted: {results:?}");
}

/// Bad only after the switch: the bake at 100% catches it, the old
/// revision (kept warm) gets the traffic back, and users see it serve.
#[test]
fn a_canary_that_turns_bad_during_the_bake_is_rolled_back_after_100() {
    let trigger = std::env::temp_dir().join(format!("envpack-bad-{}", std::process::id()));
    let _ = std::fs::remove_file(&trigger);
    let when = format!("env.FAIL_WHEN_FILE={}", trigger.display());
    let c = canary(12, &[&when]);
    let child = c.start("--steps 100 --soak 3s --bake 60s", &c.gate(""));
    c.wait_for_soak("bake at 100%");
    assert_eq!(c.generations().last().unwrap(), "R2=10000");
    assert_eq!(lifecycle(&c.sb, "R1"), "ready", "kept warm through the bake");
    std::fs::write(&trigger, "").unwrap();
    let (code, stderr) = finished(child);
    let _ = std::fs::remove_file(&trigger);
    assert_eq!(code, 1, "{stderr}");
    let r = c.rollout();
    assert_eq!(r["state"], "rolled-back", "{r:#}");
    assert!(r["reason"].as_str().unwrap().contains("bake at 100%"), "{r:#}");
    assert_eq!(c.generations(), ["R1=10000", "R2=10000", "R1=10000"]);
    assert_eq!(distribution(c.listen, 20), [("R1".to_string(), 20)].into());
    assert_eq!(lifecycle(&c.sb, "R2"), "inactive");
    c.remove();
}

/// Prometheus gone mid-soak: the gate cannot judge, so after its
/// inconclusive limit the rollout pauses where it is (exit 7), and an
/// abort from there restores the split.
#[test]
fn prometheus_stopped_mid_soak_pauses_the_rollout() {
    let mut c = canary(13, &[]);
    // A query Prometheus refuses as malformed is refused at the start, in
    // its words, and nothing is recorded.
    let broken = c.gate("").replace("[4s]))", "[4s])");
    let out =
        c.sb.host()
            .args(["rollout", "start", "site", "web", "--to", "R2", "--analysis", &broken])
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refuses the query"), "{stderr}");
    assert_eq!(ok(&c.sb, &["rollout", "status", "site", "web"]).trim(), "no rollouts");
    // Room for the new revision to be discovered and scraped, as the guide says.
    let gate = c.gate("");
    let child = c.start("--steps 50,100 --soak 30s", &gate);
    c.wait_for_soak("50%");
    // The canary's traffic is in Prometheus: the gate judges it (and its
    // count of inconclusive results in a row starts again) before the stop.
    c.prometheus.wait_until(
        "R2's requests counted",
        "sum(rate(app_requests_total{revision=\"R2\"}[4s])) > 0",
        |r| !r.is_empty(),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.rollout()["state"],
        "running",
        "judged, not paused, while Prometheus runs"
    );
    c.prometheus.stop();
    let (code, stderr) = finished(child);
    assert_eq!(code, 7, "paused, not finished: {stderr}");
    let r = c.rollout();
    assert_eq!(r["state"], "paused", "{r:#}");
    assert!(r["reason"].as_str().unwrap().contains("unreachable"), "{r:#}");
    assert_eq!(c.generations().last().unwrap(), "R2=5000 R1=5000", "it holds at 50%");
    ok(&c.sb, &["rollout", "abort", "site", "web"]);
    assert_eq!(c.generations().last().unwrap(), "R1=10000");
    c.remove();
}

/// An HTTP gate aimed at the canary (`{{canary}}`, contract 1.2's
/// `revision-endpoint`) judges the new revision alone: at 10% of the
/// traffic, a canary failing every request fails all of the gate's.
#[test]
fn an_http_gate_aimed_at_the_canary_reaches_it_alone() {
    // Slot 16: slots 7 to 11 are the seeded pairs', running beside this.
    let c = canary(16, &["env.FAIL_REQUESTS=1"]);
    // Asked directly: R1's own address answers R1, not the split.
    let url = ok(&c.sb, &["revision", "endpoint", "site", "R1"]);
    let port: u16 = url.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, c.listen, "not nginx's address");
    assert_eq!(get(port, "/"), (200, "R1".to_string()));
    let out =
        c.sb.host()
            .args(["revision", "endpoint", "site", "R2"])
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(1), "a staged revision has no address yet");
    let out =
        c.sb.host()
            .args(["revision", "endpoint", "site", "R9"])
            .output()
            .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown revision is the operator's mistake"
    );
    let child = c.start(
        "--steps 10,100 --soak 20s",
        "http={{canary}}/,status=200,max-error-ratio=0.2,requests=10",
    );
    let (code, stderr) = finished(child);
    assert_eq!(code, 1, "{stderr}");
    let r = c.rollout();
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("step 1 of 2, 10%") && reason.contains("answered 500"),
        "{r:#}"
    );
    assert_eq!(c.generations().last().unwrap(), "R1=10000");
    c.remove();
}
