//! The checks' toolkit: the context a check runs in (the runtime, the pack,
//! every call's evidence), steps of a sequence, the standard happy path, and
//! the verdict a check returns. The runner (`bench`) only selects checks and
//! assembles the report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use envpack_model::{Capability, Lifecycle};
use std::time::Duration;

use envpack_host::{CallMode, CallReport, KvStore, Pack, Runtime};
use envpack_model::{CapabilityCall, Environment, Outcome, ProviderCause, Request, RuntimeConfig, Verb, VerbError};

use envpack_host::{Services, Workspace};
use envpack_model::{DeadlinePolicy, Grants, SplitEntry, TrafficSplit, quoted};

use crate::config::{RunConfig, SignatureStatus};
use crate::fixture::Ids;
use crate::report::Status;

/// One call the run made, kept for the whole-run checks.
#[derive(Clone, Debug)]
pub(crate) struct CallStat {
    pub label: String,
    /// The deadline the call ran under: the one production gives the verb.
    pub deadline: Duration,
    pub peak_memory: usize,
    /// Fuel burned (a metered runtime) and time asked to sleep: the call's
    /// work, measured the same on a busy machine and an idle one.
    pub fuel: Option<u64>,
    pub slept: Duration,
    /// The call's whole time, and of it the export's own (the guest's work
    /// and its capability calls: programs started and waited for).
    pub elapsed: Duration,
    pub in_pack: Duration,
    /// Programs the call started (`process.spawn` granted), by file name
    /// (`/usr/bin/tar` is `tar`), in order.
    pub started: Vec<String>,
    /// Signals the call sent (`process.send-signal` granted), each as its
    /// WIT name and the program it went to: `hup nginx`, `term python3`.
    pub signals: Vec<String>,
    pub undeclared: Vec<CapabilityCall>,
    pub error: Option<VerbError>,
}

/// Deadline overruns after which a run stops calling the pack.
pub(crate) const MAX_OVERRUNS: usize = 3;

/// What a check may use.
pub(crate) struct Ctx<'a> {
    pub runtime: &'a Runtime,
    pub pack: &'a Pack,
    pub config: &'a RunConfig,
    pub signature: &'a SignatureStatus,
    pub calls: Mutex<Vec<CallStat>>,
    pub envs: AtomicUsize,
    /// This run's nonce: in every fixture environment id, so that no run
    /// meets another's pack state or provider resources.
    pub nonce: String,
    /// This run's throwaway directory: each fixture environment's workspace.
    pub scratch: std::path::PathBuf,
    pub workspaces: Mutex<Vec<Workspace>>,
    /// Calls that overran their deadline so far in this run.
    pub overruns: AtomicUsize,
    /// The seed of this run's generated cases.
    pub seed: u64,
    /// Where the pack came from (a path, or a label), for replay hints.
    pub source: String,
    /// The pack state of [`Lane::Twin`] environments, apart from the main lane's.
    pub twin_kv: Arc<dyn KvStore>,
    /// The generated scenarios' findings, computed by the first check that needs them.
    pub generated: tokio::sync::OnceCell<crate::checks::sequences::Findings>,
    /// Every fixture environment called and not yet retired, as last seen.
    pub live: Mutex<BTreeMap<(Lane, String), Arc<Environment>>>,
    /// What the run's releases could not release.
    pub left: Mutex<Vec<String>>,
    /// Revisions the run's releases archived through the pack.
    pub released: AtomicUsize,
}

/// Where a fixture environment lives. A twin environment has the same id
/// as a main one but its own pack state and work directory: the two run
/// side by side so that a check can compare what one step did in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lane {
    Main,
    Twin,
}

impl Lane {
    fn scope(self) -> &'static str {
        match self {
            Lane::Main => "bench",
            Lane::Twin => "twin",
        }
    }
}

/// One step of a sequence: what was asked and what came back.
pub(crate) struct Step {
    pub request: Request,
    pub report: CallReport,
    /// The environment the call was made in.
    pub env: Arc<Environment>,
}

/// A short, readable name for a request, for failure messages (a long id
/// shortened).
pub(crate) fn label(request: &Request) -> String {
    match request {
        Request::ApplyTrafficSplit(d) => format!("apply-traffic-split {}", quoted(d)),
        Request::ReportRuntimeConfig => "report-runtime-config".into(),
        other => format!("{} {}", other.verb(), quoted(other.revision().unwrap_or_default())),
    }
}

/// The result of a call in one line.
pub(crate) fn describe_result(report: &CallReport) -> String {
    match &report.result {
        Ok(Outcome::Revision { revision, .. }) => format!("ok (revision {})", quoted(revision)),
        Ok(Outcome::Split { deployment, entries }) => format!("ok ({}: {} entries)", quoted(deployment), entries.len()),
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

impl<'a> Ctx<'a> {
    /// A fresh environment id, so that each check starts from empty pack state.
    pub fn env_id(&self, check: &str) -> String {
        format!(
            "conformance-{}-{check}-{}",
            self.nonce,
            self.envs.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn kv(&self, lane: Lane) -> &Arc<dyn KvStore> {
        match lane {
            Lane::Main => self.runtime.kv(),
            Lane::Twin => &self.twin_kv,
        }
    }

    /// The services of a fixture environment: its lane's kv, a throwaway workspace.
    fn services(&self, env: &Environment, lane: Lane) -> Services {
        let mut services = Services::with_kv(self.kv(lane).clone());
        services.secrets = self.config.secrets.0.clone();
        if let Ok(workspace) = envpack_host::StateDir::at(&self.scratch).workspace(lane.scope(), env.id()) {
            let mut known = self
                .workspaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !known.contains(&workspace) {
                known.push(workspace.clone());
            }
            services.workspace = Some(workspace);
        }
        services
    }

    /// Stops every process the run's packs started and removes its directory.
    pub fn clean_up(&self) {
        let workspaces = std::mem::take(
            &mut *self
                .workspaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for workspace in &workspaces {
            if let Err(e) = envpack_host::stop_processes(workspace, Duration::from_secs(2)) {
                tracing::warn!(error = %e, "could not stop a bench environment's processes");
            }
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }

    pub async fn call(&self, env: &Arc<Environment>, request: Request) -> Step {
        self.call_in(env, request, Lane::Main).await
    }

    /// [`Self::call`] in `lane`.
    pub async fn call_in(&self, env: &Arc<Environment>, request: Request, lane: Lane) -> Step {
        let overruns = self.overruns.load(Ordering::Relaxed);
        if overruns >= MAX_OVERRUNS {
            return self.not_called(env, request, overruns);
        }
        lock(&self.live).insert((lane, env.id().to_string()), env.clone());
        let granted;
        let env = if self.config.grants == Grants::default() {
            env
        } else {
            granted = Arc::new(Environment::clone(env).with_grants(&self.config.grants));
            &granted
        };
        let mut services = self.services(env, lane);
        let deadline = self.deadline(&request);
        services.deadline = Some(deadline);
        let report = self
            .runtime
            .call_in(self.pack, env, &request, CallMode::DIRECT, services)
            .await;
        if report.result.as_ref().err().is_some_and(VerbError::is_deadline) {
            self.overruns.fetch_add(1, Ordering::Relaxed);
        }
        let targets = self.signalled(env, lane, &report);
        self.record(&request, &report, deadline, &targets);
        Step {
            request,
            report,
            env: env.clone(),
        }
    }

    /// A call the bench does not make: the pack overran its deadline
    /// [`MAX_OVERRUNS`] times in this run, and every further call would
    /// cost a whole deadline too (a spinning pack would hold admission for
    /// minutes). It fails like a call that did not answer.
    fn not_called(&self, env: &Arc<Environment>, request: Request, overruns: usize) -> Step {
        let verb = request.verb();
        let report = CallReport {
            verb,
            result: Err(VerbError::Provider {
                verb,
                cause: ProviderCause::NotCalled(format!(
                    "the pack overran its deadline {overruns} times in this run; the bench stopped calling it"
                )),
            }),
            guest_entered: false,
            recording: Default::default(),
            kv_committed: false,
            peak_memory: 0,
            elapsed: Duration::ZERO,
            phases: Default::default(),
            fuel: None,
            slept: Duration::ZERO,
        };
        self.record(&request, &report, self.deadline(&request), &BTreeMap::new());
        Step {
            request,
            report,
            env: env.clone(),
        }
    }

    /// The commands of the processes the call sent signals to, by id
    /// (read from the environment's process table only when it sent any).
    fn signalled(&self, env: &Environment, lane: Lane, report: &CallReport) -> BTreeMap<String, String> {
        if granted(report, "process.send-signal").next().is_none() {
            return BTreeMap::new();
        }
        envpack_host::StateDir::at(&self.scratch)
            .workspace(lane.scope(), env.id())
            .map_or_else(|_| BTreeMap::new(), |w| envpack_host::recorded_processes(&w))
    }

    /// Keeps a call's figures; `targets` names the commands of the
    /// processes it signalled.
    fn record(&self, request: &Request, report: &CallReport, deadline: Duration, targets: &BTreeMap<String, String>) {
        let stat = CallStat {
            label: label(request),
            deadline,
            peak_memory: report.peak_memory,
            fuel: report.fuel,
            slept: report.slept,
            elapsed: report.elapsed,
            in_pack: report.phases.guest,
            started: granted(report, "process.spawn").map(program_name).collect(),
            signals: granted(report, "process.send-signal")
                .map(|detail| signal_name(detail, targets))
                .collect(),
            undeclared: report.recording.calls.iter().filter(|c| !c.declared).cloned().collect(),
            error: report.result.as_ref().err().cloned(),
        };
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(stat);
    }

    /// The deadline an operator's environment gives this verb by default:
    /// the pack's signed expectation capped at the host's maximum, else the
    /// runtime's default — so admission judges a pack by production's clock.
    pub fn deadline(&self, request: &Request) -> Duration {
        let expected = self.pack.manifest().map(|m| m.deadlines.clone()).unwrap_or_default();
        DeadlinePolicy::default().deadline(request.verb(), &expected, self.runtime.config().deadline)
    }

    /// Processes the pack has running in `env` (its bench work directory):
    /// an effect idempotency is judged on.
    pub fn live_processes(&self, env: &Environment) -> usize {
        self.live_process_list(env).len()
    }

    /// The processes the pack has running in `env`, as (id, command).
    pub fn live_process_list(&self, env: &Environment) -> Vec<(String, String)> {
        self.live_process_list_in(env, Lane::Main)
    }

    /// [`Self::live_process_list`] in `lane`.
    pub fn live_process_list_in(&self, env: &Environment, lane: Lane) -> Vec<(String, String)> {
        envpack_host::StateDir::at(&self.scratch)
            .workspace(lane.scope(), env.id())
            .map_or_else(|_| Vec::new(), |w| envpack_host::live_processes(&w))
    }

    /// The work directory of `env` in `lane` (what the pack sees as `/`).
    pub fn work_dir(&self, env: &Environment, lane: Lane) -> Option<std::path::PathBuf> {
        envpack_host::StateDir::at(&self.scratch)
            .workspace(lane.scope(), env.id())
            .ok()
            .map(|w| w.work_dir)
    }

    /// Ends an environment the run is done with: releases what the pack
    /// made for it, stops its processes and removes its work directory, so
    /// that many generated environments do not pile up processes or
    /// provider resources.
    ///
    /// A pack that reaches outside the host (it declares `http`) may hold
    /// resources the host cannot see, so every revision not yet archived is
    /// archived through the pack first; what it cannot archive is reported.
    /// Of a pack that does not, the host sees every effect (processes,
    /// files) and ends them itself.
    pub async fn retire(&self, env: &Arc<Environment>, lane: Lane) {
        lock(&self.live).remove(&(lane, env.id().to_string()));
        if self.reaches_outside() {
            let mut revisions: Vec<&envpack_model::Revision> =
                env.revisions().filter(|r| r.lifecycle != Lifecycle::Archived).collect();
            revisions.sort_by(|a, b| a.id.cmp(&b.id));
            for revision in revisions {
                let step = self.call_in(env, Request::Archive(revision.id.clone()), lane).await;
                lock(&self.live).remove(&(lane, env.id().to_string()));
                match step.report.result {
                    Ok(_) => {
                        self.released.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => lock(&self.left).push(format!(
                        "archive-revision {} in {} returned {e}",
                        quoted(&revision.id),
                        env.id()
                    )),
                }
            }
        }
        let Ok(workspace) = envpack_host::StateDir::at(&self.scratch).workspace(lane.scope(), env.id()) else {
            return;
        };
        if let Err(e) = envpack_host::stop_processes(&workspace, Duration::from_secs(2)) {
            tracing::warn!(error = %e, "could not stop a bench environment's processes");
        }
        let _ = std::fs::remove_dir_all(&workspace.work_dir);
    }

    /// Retires every environment not retired yet: the end of a run.
    pub async fn retire_all(&self) {
        let live: Vec<((Lane, String), Arc<Environment>)> =
            std::mem::take(&mut *lock(&self.live)).into_iter().collect();
        for ((lane, _), env) in live {
            self.retire(&env, lane).await;
        }
    }

    /// Whether the pack can make resources the host does not see.
    fn reaches_outside(&self) -> bool {
        self.pack.info().capabilities.contains(&Capability::Http)
    }

    /// The pack's kv state in `env` (empty if it declares no kv).
    pub fn kv_state(&self, env: &Environment) -> BTreeMap<String, Vec<u8>> {
        self.kv_state_in(env, Lane::Main)
    }

    /// [`Self::kv_state`] in `lane`.
    pub fn kv_state_in(&self, env: &Environment, lane: Lane) -> BTreeMap<String, Vec<u8>> {
        let namespace = self.pack.kv_namespace(env.id());
        self.kv(lane).dump(&namespace).unwrap_or_default()
    }

    /// The pack's own runtime config, `None` if it does not override it or fails.
    pub async fn pack_view(&self, env: &Arc<Environment>) -> Option<RuntimeConfig> {
        match self.call(env, Request::ReportRuntimeConfig).await.report.result {
            Ok(Outcome::RuntimeConfig { pack, .. }) => pack,
            _ => None,
        }
    }

    /// The happy path over a fixture: stage and warm everything, apply both
    /// splits (web, then api), report, probe; then, as an operator must
    /// before draining, move web's traffic off A2 (A1 at 100%, applied), and
    /// drain and archive A2.
    pub async fn happy_path(&self, env: &Arc<Environment>, ids: &Ids) -> Vec<Step> {
        let shifted = shifted(env, ids);
        let mut steps = Vec::new();
        for (request, later) in happy_plan(ids) {
            steps.push(self.call(if later { &shifted } else { env }, request).await);
        }
        steps
    }

    fn snapshot(&self) -> Vec<CallStat> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every call made so far in this run.
    pub fn all_calls(&self) -> Vec<CallStat> {
        self.snapshot()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The happy path's requests; `true` marks those made after web's traffic
/// moved off A2 (in [`shifted`]).
pub(crate) fn happy_plan(ids: &Ids) -> Vec<(Request, bool)> {
    let revisions = [&ids.a1, &ids.a2, &ids.b1];
    let mut plan: Vec<(Request, bool)> = revisions
        .iter()
        .map(|r| (Request::Stage(r.to_string()), false))
        .collect();
    plan.extend(revisions.iter().map(|r| (Request::Warm(r.to_string()), false)));
    plan.push((Request::ApplyTrafficSplit(ids.web.clone()), false));
    plan.push((Request::ApplyTrafficSplit(ids.api.clone()), false));
    plan.push((Request::ReportRuntimeConfig, false));
    plan.push((Request::Probe(ids.a1.clone()), false));
    plan.push((Request::ApplyTrafficSplit(ids.web.clone()), true));
    plan.push((Request::Drain(ids.a2.clone()), true));
    plan.push((Request::Archive(ids.a2.clone()), true));
    plan
}

/// `env` after the host moved web's traffic off A2: A1 at 100%, A2 at 0,
/// the next generation (the host refuses to drain a revision with weight).
pub(crate) fn shifted(env: &Arc<Environment>, ids: &Ids) -> Arc<Environment> {
    let generation = env
        .deployment(&ids.web)
        .and_then(|d| d.split.as_ref())
        .map_or(1, |s| s.generation + 1);
    let split = TrafficSplit {
        generation,
        entries: vec![
            SplitEntry {
                revision: ids.a1.clone(),
                weight_bps: 10_000,
            },
            SplitEntry {
                revision: ids.a2.clone(),
                weight_bps: 0,
            },
        ],
    };
    Arc::new(Environment::clone(env).with_split(&ids.web, split))
}

/// Problems a failure lists at most; the rest are counted.
pub(crate) const MAX_LINES: usize = 16;

/// The outcome of one check.
pub(crate) struct Verdict {
    pub status: Status,
    pub message: String,
}

impl Verdict {
    pub fn pass(message: impl Into<String>) -> Self {
        Verdict {
            status: Status::Pass,
            message: message.into(),
        }
    }

    pub fn fail(message: impl Into<String>) -> Self {
        Verdict {
            status: Status::Fail,
            message: message.into(),
        }
    }

    pub fn skip(message: impl Into<String>) -> Self {
        Verdict {
            status: Status::Skip,
            message: message.into(),
        }
    }

    /// Fails with the problems, one per line (the first [`MAX_LINES`] and
    /// how many more), or passes with `note`.
    pub fn from_problems(mut problems: Vec<String>, note: impl Into<String>) -> Self {
        if problems.is_empty() {
            return Verdict::pass(note);
        }
        if problems.len() > MAX_LINES {
            let more = problems.len() - MAX_LINES;
            problems.truncate(MAX_LINES);
            problems.push(format!("… and {more} more problems like these"));
        }
        Verdict::fail(problems.join("\n"))
    }
}

/// The verb of a call stat's label.
pub(crate) fn verb_of(stat: &CallStat) -> Option<Verb> {
    Verb::from_name(stat.label.split(' ').next().unwrap_or_default())
}

/// The details of the call's granted capability calls of `operation`.
fn granted<'r>(report: &'r CallReport, operation: &'static str) -> impl Iterator<Item = &'r str> {
    (report.recording.calls.iter())
        .filter(move |c| c.allowed && c.operation == operation)
        .map(|c| c.detail.as_str())
}

/// The file name of a `process.spawn` detail's program (`COMMAND ARGS...`).
fn program_name(detail: &str) -> String {
    let command = detail.split(' ').next().unwrap_or_default();
    command.rsplit('/').next().unwrap_or(command).to_string()
}

/// A `process.send-signal` detail (`ID Signal::Hup`) as the signal's WIT
/// name and the file name of the program it went to: `hup nginx`; the
/// signal alone when the process is not in `targets`.
fn signal_name(detail: &str, targets: &BTreeMap<String, String>) -> String {
    let mut words = detail.split(' ');
    let (id, signal) = (words.next().unwrap_or_default(), words.next_back().unwrap_or_default());
    let signal = signal.rsplit("::").next().unwrap_or(signal).to_ascii_lowercase();
    match targets.get(id) {
        Some(command) => format!("{signal} {}", program_name(command)),
        None => signal,
    }
}

#[cfg(test)]
mod names {
    use super::{program_name, signal_name};

    #[test]
    fn programs_and_signals_are_named_as_an_author_knows_them() {
        assert_eq!(program_name("/usr/bin/tar -xzf artifact -C app.partial"), "tar");
        assert_eq!(program_name("nginx -t -q"), "nginx");
        assert_eq!(program_name(""), "");
        let targets = [("p3", "/usr/sbin/nginx"), ("p12", "python3")]
            .map(|(id, command)| (id.to_string(), command.to_string()))
            .into();
        assert_eq!(signal_name("p3 Signal::Hup", &targets), "hup nginx");
        assert_eq!(signal_name("p12 Signal::Term", &targets), "term python3");
        assert_eq!(signal_name("p9 Signal::Kill", &targets), "kill");
    }
}
