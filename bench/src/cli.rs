//! The command path: the real `host` binary run as an operator runs it,
//! one process per command, against a state directory the bench sets up
//! with the same binary (trusted key, installed pack, an environment with
//! two ready revisions) — one for the pack under bench and, when there is
//! one, one for the interpreter pack, whose `pack install` is timed there. A command's wall time comes from runs as an
//! operator makes them; its phases from a run right after each of those
//! with `ENVPACK_TIMINGS` set (so that writing the marks is not counted in
//! the totals), to which the bench adds the process's start (spawn to
//! `main`) and exit (last mark to reaped). Medians of each. With a
//! baseline binary, both builds run interleaved on copies of one state
//! directory: a before/after measured side by side in one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use envpack_host::timing::{CommandTimings, TIMINGS_ENV};
use serde::Serialize;

use crate::breakdown::PhaseFigure;
use crate::stats::{Figure, latency};
use crate::subject::{BenchEnv, Subject};
use crate::{BenchError, fail};

const R1: &str = "01JBWCLI000000000000000R1";
const R2: &str = "01JBWCLI000000000000000R2";

/// The binaries to measure.
#[derive(Clone, Debug)]
pub struct Programs {
    /// This build's `host`.
    pub program: PathBuf,
    /// Another build of `host` to run side by side (the "before" of a cut).
    pub baseline: Option<PathBuf>,
}

/// One command of one build: its median wall time and its phases.
#[derive(Clone, Debug, Serialize)]
pub struct CommandFigure {
    pub command: &'static str,
    /// `this` or `baseline`.
    pub build: &'static str,
    pub runs: usize,
    pub total_median_us: f64,
    pub total_p99_us: f64,
    /// Empty for a build that writes no marks (an older one, or `--version`).
    pub phases: Vec<PhaseFigure>,
}

/// A measured command: what it is called in the report and its arguments
/// (the n-th run's, so that runs can alternate what they ask for).
struct Measured {
    name: &'static str,
    args: fn(usize) -> Vec<String>,
    /// Uses a flag older builds may not have: not run on the baseline.
    this_build_only: bool,
    /// Which subject's state directory it runs on.
    subject: &'static str,
}

fn measured() -> Vec<Measured> {
    vec![
        Measured {
            name: "version",
            args: |_| vec!["--version".into()],
            this_build_only: false,
            subject: "reference",
        },
        Measured {
            name: "status",
            args: |_| vec!["status".into(), "bench".into()],
            this_build_only: false,
            subject: "reference",
        },
        Measured {
            name: "traffic-set",
            args: |n| traffic_set(n, false),
            this_build_only: false,
            subject: "reference",
        },
        // The same on the pooling allocator: the allocator cut, side by side.
        Measured {
            name: "traffic-set-pooling",
            args: |n| traffic_set(n, true),
            this_build_only: true,
            subject: "reference",
        },
        // The records on PostgreSQL (`--database`), beside SQLite's.
        Measured {
            name: "status-postgres",
            args: |_| vec!["status".into(), "bench".into()],
            this_build_only: true,
            subject: "postgres",
        },
        Measured {
            name: "traffic-set-postgres",
            args: |n| traffic_set(n, false),
            this_build_only: true,
            subject: "postgres",
        },
        // The same command on the interpreter pack, interleaved with the
        // others: a command's cost against the pack's size.
        Measured {
            name: "traffic-set-interpreter",
            args: |n| traffic_set(n, false),
            this_build_only: false,
            subject: "interpreter",
        },
    ]
}

/// A pack the command path runs: its signed file, the public key that
/// signed it, and how `env create` binds an environment to it.
pub struct CliSubject {
    label: &'static str,
    file: PathBuf,
    public_key: PathBuf,
    env_create: Vec<String>,
    /// Its records on this PostgreSQL database instead of `state.db`.
    database: Option<String>,
}

impl CliSubject {
    pub fn new(
        label: &'static str,
        subject: &Subject,
        file: PathBuf,
        env: &BenchEnv,
        scratch: &Path,
    ) -> Result<Self, BenchError> {
        let public_key = scratch.join(format!("{label}.pub"));
        let pem = subject
            .key
            .public()
            .to_pem()
            .map_err(|e| fail("public key")(e.to_string()))?;
        std::fs::write(&public_key, pem).map_err(|e| fail("write")(e.to_string()))?;
        Ok(CliSubject {
            label,
            file,
            public_key,
            env_create: subject.env_create_args("bench", env),
            database: None,
        })
    }

    /// The same subject with its records on the database at `url`.
    pub fn on_database(self, url: String) -> Self {
        CliSubject {
            database: Some(url),
            ..self
        }
    }
}

/// Where a command's state is: the state directory, and the database URL
/// when the records are on PostgreSQL.
#[derive(Clone)]
struct State {
    dir: PathBuf,
    database: Option<String>,
}

impl State {
    fn apply(&self, command: &mut Command) {
        command.env("ENVPACK_STATE_DIR", &self.dir);
        match &self.database {
            Some(url) => command.env("ENVPACK_DATABASE_URL", url),
            None => command.env_remove("ENVPACK_DATABASE_URL"),
        };
    }
}

/// What the command path measured.
pub struct Measurements {
    pub commands: Vec<CommandFigure>,
    /// `install.reference`, `install.interpreter`: `pack install` wall time.
    pub installs: Vec<Figure>,
}

/// `traffic set` with alternating splits: every run changes what the pack applies.
fn traffic_set(n: usize, pooling: bool) -> Vec<String> {
    let (a, b) = if n.is_multiple_of(2) { (9000, 1000) } else { (10_000, 0) };
    let mut args: Vec<String> = if pooling {
        vec!["--allocator".into(), "pooling".into()]
    } else {
        Vec::new()
    };
    args.extend(["traffic", "set", "bench", "web"].map(String::from));
    args.extend([format!("{R1}={a}"), format!("{R2}={b}")]);
    args
}

/// Runs `program` with `args` on `state`; its stderr on failure.
fn run(program: &Path, state: &State, args: &[&str]) -> Result<(), BenchError> {
    let mut command = Command::new(program);
    state.apply(&mut command);
    let out = command
        .args(args)
        .env_remove(TIMINGS_ENV)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail("cannot run the host binary")(format!("{}: {e}", program.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError(format!(
            "`host {}` failed during the command bench: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A state directory with the signed pack installed and an environment
/// `bench` whose deployment `web` has two ready revisions and a split; the
/// time `pack install` took.
fn set_up(program: &Path, state: &State, subject: &CliSubject) -> Result<std::time::Duration, BenchError> {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let words = |line: &str| line.split_whitespace().map(String::from).collect::<Vec<_>>();
    // Paths are arguments of their own: they may hold spaces.
    let path = |p: &Path| p.display().to_string();
    run(
        program,
        state,
        &[
            "trust",
            "add",
            &path(&subject.public_key),
            "--name",
            "bench",
            "--scope",
            "envpack.*",
        ],
    )?;
    let started = Instant::now();
    run(program, state, &["pack", "install", &path(&subject.file)])?;
    let install = started.elapsed();
    // A database keeps what an earlier bench left: start from no `bench`.
    if state.database.is_some() {
        let _ = run(program, state, &["env", "remove", "bench", "--force"]);
    }
    let mut steps = vec![subject.env_create.clone()];
    for (n, id) in [R1, R2].iter().enumerate() {
        steps.push(words(&format!(
            "revision stage bench web --id {id} --digest {digest} --location file:///builds/{n}.tar.gz"
        )));
        steps.push(words(&format!("revision warm bench {id}")));
    }
    steps.push(words(&format!("traffic set bench web {R1}=10000 {R2}=0")));
    for step in steps {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        run(program, state, &args)?;
    }
    Ok(install)
}

/// One run's wall time and phases (exec, the marks, exit), in µs.
struct Sample {
    total_us: f64,
    phases: Vec<(String, f64)>,
}

fn unix_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// One run; with `marks`, one that writes its phase marks there.
fn sample(program: &Path, state: &State, args: &[String], marks: Option<&Path>) -> Result<Sample, BenchError> {
    let mut command = Command::new(program);
    command.env_remove(TIMINGS_ENV);
    if let Some(marks) = marks {
        let _ = std::fs::remove_file(marks);
        command.env(TIMINGS_ENV, marks);
    }
    let spawned_unix = unix_ns();
    let started = Instant::now();
    state.apply(&mut command);
    let status = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| fail("cannot run the host binary")(format!("{}: {e}", program.display())))?;
    let total = started.elapsed();
    if !status.success() {
        return Err(BenchError(format!(
            "`host {}` exited with {status} during the command bench",
            args.join(" ")
        )));
    }
    let total_us = total.as_secs_f64() * 1e6;
    let timings = marks
        .and_then(|marks| std::fs::read_to_string(marks).ok())
        .and_then(|text| serde_json::from_str::<CommandTimings>(text.trim()).ok());
    let Some(timings) = timings else {
        return Ok(Sample {
            total_us,
            phases: Vec::new(),
        });
    };
    Ok(Sample {
        total_us,
        phases: phases_of(&timings, spawned_unix, total_us),
    })
}

/// A run's phases: `exec` (spawn to `main`), the time to each mark from the
/// one before (phases marked more than once are summed, in the order they
/// first ended), and `exit` (last mark to reaped).
fn phases_of(timings: &CommandTimings, spawned_unix_ns: u128, total_us: f64) -> Vec<(String, f64)> {
    let exec_us = timings.start_unix_ns.saturating_sub(spawned_unix_ns) as f64 / 1e3;
    let mut phases: Vec<(String, f64)> = vec![("exec".into(), exec_us)];
    let mut previous = 0u64;
    for (name, at) in &timings.marks {
        let us = at.saturating_sub(previous) as f64 / 1e3;
        previous = *at;
        match phases.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += us,
            None => phases.push((name.clone(), us)),
        }
    }
    let last_us = previous as f64 / 1e3;
    phases.push(("exit".into(), (total_us - exec_us - last_us).max(0.0)));
    phases
}

fn figure(command: &'static str, build: &'static str, samples: &[Sample]) -> CommandFigure {
    let totals = latency(
        "",
        samples
            .iter()
            .map(|s| std::time::Duration::from_secs_f64(s.total_us / 1e6))
            .collect(),
    );
    // Phases in the order of the first run that has them all.
    let order: Vec<String> = samples
        .iter()
        .max_by_key(|s| s.phases.len())
        .map(|s| s.phases.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    let mut by_name: BTreeMap<&str, Vec<std::time::Duration>> = BTreeMap::new();
    for s in samples {
        for (name, us) in &s.phases {
            by_name
                .entry(name.as_str())
                .or_default()
                .push(std::time::Duration::from_secs_f64(us / 1e6));
        }
    }
    let phases = order
        .iter()
        .map(|name| PhaseFigure {
            phase: name.clone(),
            median_us: latency("", by_name.remove(name.as_str()).unwrap_or_default()).median,
        })
        .collect();
    CommandFigure {
        command,
        build,
        runs: samples.len(),
        total_median_us: totals.median,
        total_p99_us: totals.p99,
        phases,
    }
}

/// Sets up, then runs every measured command `runs` times (interleaved
/// with the baseline's, when there is one), after one run of each that is
/// not counted (a build that finds the cache in another's format
/// compiles then).
pub fn measure(
    programs: &Programs,
    scratch: &Path,
    subjects: &[CliSubject],
    runs: usize,
) -> Result<Measurements, BenchError> {
    let mut installs = Vec::new();
    // (subject label, build, program, state)
    let mut states: Vec<(&'static str, &'static str, &Path, State)> = Vec::new();
    for subject in subjects {
        let this_state = State {
            dir: scratch.join(format!("cli-state-{}", subject.label)),
            database: subject.database.clone(),
        };
        let install = set_up(&programs.program, &this_state, subject)?;
        installs.push(latency(format!("install.{}", subject.label), vec![install]));
        states.push((subject.label, "this", &programs.program, this_state.clone()));
        // (A database is not copied: the baseline runs on SQLite only.)
        if let Some(baseline) = &programs.baseline
            && subject.database.is_none()
        {
            let base_state = State {
                dir: scratch.join(format!("cli-state-{}-baseline", subject.label)),
                database: None,
            };
            copy_dir(&this_state.dir, &base_state.dir)?;
            states.push((subject.label, "baseline", baseline, base_state));
        }
    }
    let marks = scratch.join("marks.json");
    // Every (command, build) pair, each warmed up once, then sampled in
    // rounds: one run of every pair per round, so that all of them see the
    // same machine (it is shared and noisy) and their ratios hold.
    let mut pairs = Vec::new();
    for command in measured() {
        for (label, build, program, state) in &states {
            if *label == command.subject && (*build == "this" || !command.this_build_only) {
                pairs.push((command.name, command.args, *build, *program, state.clone()));
            }
        }
    }
    for (_, args, _, program, state) in &pairs {
        sample(program, state, &args(runs + 1), None)?;
    }
    let mut samples: Vec<Vec<Sample>> = pairs.iter().map(|_| Vec::with_capacity(runs)).collect();
    // A command's pairs (this build's, the baseline's) are next to each
    // other. Every timed run follows an untimed run of the same build and
    // command (this build's with marks, for its phases), as `hyperfine`
    // warms up: what ran just before a run changes it (a timed run after
    // another command's ran 4–16% slower than one after the same
    // command's; after its own build's, faster still), so both builds get
    // the same predecessor. The builds take turns going first.
    let groups = groups_of(&pairs, |(name, ..)| *name);
    for n in 0..runs {
        for group in &groups {
            let order: Vec<usize> = match n % 2 {
                0 => group.clone(),
                _ => group.iter().rev().copied().collect(),
            };
            for i in order {
                let (_, args, build, program, state) = &pairs[i];
                let args = args(n);
                let before = sample(program, state, &args, (*build == "this").then_some(marks.as_path()))?;
                let mut run = sample(program, state, &args, None)?;
                run.phases = before.phases;
                samples[i].push(run);
            }
        }
    }
    let figures = pairs
        .iter()
        .zip(&samples)
        .map(|((name, _, build, _, _), samples)| figure(name, build, samples))
        .collect();
    Ok(Measurements {
        commands: figures,
        installs,
    })
}

/// The runs of indices into `items` whose keys are equal, in order.
fn groups_of<T, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match groups.last_mut() {
            Some(group) if key(&items[group[0]]) == key(item) => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(to).map_err(|e| fail("copy state")(e.to_string()))?;
    let entries = std::fs::read_dir(from).map_err(|e| fail("copy state")(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| fail("copy state")(e.to_string()))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| fail("copy state")(e.to_string()))?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).map_err(|e| fail("copy state")(e.to_string()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commands_pairs_are_grouped_in_order() {
        let names = ["version", "version", "status", "status", "traffic-set", "version"];
        assert_eq!(
            groups_of(&names, |n| *n),
            vec![vec![0, 1], vec![2, 3], vec![4], vec![5]]
        );
        assert!(groups_of(&[] as &[&str], |n| *n).is_empty());
    }

    #[test]
    fn phases_add_exec_and_exit_and_sum_repeated_marks() {
        let timings = CommandTimings {
            start_unix_ns: 1_000_000 + 2_000_000,
            marks: vec![
                ("args".into(), 1_000_000),
                ("state-open".into(), 1_500_000),
                ("load".into(), 3_500_000),
                ("state-open".into(), 4_000_000),
            ],
        };
        let phases = phases_of(&timings, 1_000_000, 10_000.0);
        let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["exec", "args", "state-open", "load", "exit"]);
        let of = |name: &str| phases.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(of("exec"), 2000.0);
        assert_eq!(of("args"), 1000.0);
        assert_eq!(of("state-open"), 1000.0);
        assert_eq!(of("load"), 2000.0);
        assert_eq!(of("exit"), 10_000.0 - 2000.0 - 4000.0);
        let sum: f64 = phases.iter().map(|(_, us)| us).sum();
        assert!((sum - 10_000.0).abs() < 1e-6);
    }
}
