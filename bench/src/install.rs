//! `pack install` as an operator runs it: the local-process pack, admitted
//! with a real app to deploy (its conformance run starts the app and nginx,
//! as `scripts/quickstart` does), timed end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::{Figure, latency, value};
use crate::{BenchError, fail};

/// What the local-process pack's install needs.
#[derive(Clone, Debug)]
pub struct LocalProcessInstall {
    /// The built pack (unsealed).
    pub pack: PathBuf,
    /// Its `pack.toml`.
    pub manifest: PathBuf,
    /// The Python app its admission deploys (`tests/apps/revision_app.py`).
    pub app: PathBuf,
}

/// The first of `names` that is not on `PATH`.
fn missing_program(names: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names
        .iter()
        .find(|name| !std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .map(|name| name.to_string())
}

fn host(program: &Path, state: &Path, args: &[&str]) -> Result<(), BenchError> {
    let out = Command::new(program)
        .args(args)
        .env("ENVPACK_STATE_DIR", state)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail("cannot run the host binary")(e.to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(BenchError(format!(
        "`host {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// `install.local-process`: one `host pack install` of the sealed, signed
/// local-process pack with the grants, settings and app of the quickstart
/// (on ports of its own), and `local-process.compile`, its compile time;
/// `Ok(Err(why))` when something it needs is missing.
pub fn local_process(
    program: &Path,
    scratch: &Path,
    local: &LocalProcessInstall,
) -> Result<Result<Vec<Figure>, String>, BenchError> {
    for file in [&local.pack, &local.manifest, &local.app] {
        if !file.is_file() {
            return Ok(Err(format!("no {}", file.display())));
        }
    }
    if let Some(name) = missing_program(&["nginx", "tar"]) {
        return Ok(Err(format!("{name} is not installed (`scripts/setup-system`)")));
    }
    // The system's Python, as the quickstart grants it (a spawned program
    // reads only the system's directories).
    let python = Path::new("/usr/bin/python3");
    if !python.is_file() {
        return Ok(Err("/usr/bin/python3 is not installed".into()));
    }
    let dir = scratch.join("local-process");
    let state = dir.join("state");
    std::fs::create_dir_all(dir.join("app")).map_err(|e| fail("local-process")(e.to_string()))?;
    std::fs::copy(&local.app, dir.join("app/app.py")).map_err(|e| fail("local-process app")(e.to_string()))?;
    let tarball = dir.join("app.tar.gz");
    let tarred = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.join("app"))
        .arg("app.py")
        .status()
        .map_err(|e| fail("tar")(e.to_string()))?;
    if !tarred.success() {
        return Err(BenchError("tar could not pack the app".into()));
    }
    let s = |p: &Path| p.display().to_string();
    let (key, signed) = (dir.join("author"), dir.join("local-process.signed.wasm"));
    host(program, &state, &["keygen", "--out", &s(&key)])?;
    // Sealing loads the pack (compile, link, describe): its compile time,
    // since this state directory's cache is empty.
    let started = Instant::now();
    let public = s(&dir.join("author.pub"));
    host(
        program,
        &state,
        &["trust", "add", &public, "--name", "author", "--scope", "envpack.*"],
    )?;
    host(
        program,
        &state,
        &[
            "pack",
            "seal",
            &s(&local.pack),
            "--manifest",
            &s(&local.manifest),
            "-o",
            &s(&signed),
        ],
    )?;
    let compile = latency("local-process.compile", vec![started.elapsed()]);
    host(program, &state, &["sign", &s(&signed), "--key", &s(&key)])?;
    let run_python = format!("{} {{path}}", python.display());
    let revision_run = format!("run={} app.py", python.display());
    let args: Vec<String> = [
        "pack",
        "install",
        &s(&signed),
        "--allow-run",
        "tar -xzf {path} -C {path} --no-same-owner",
        "--allow-run",
        "nginx -t -q -p {path} -c {path} -e stderr",
        "--allow-run",
        "nginx -p {path} -c {path} -e stderr -g 'daemon off;'",
        "--allow-run",
        &run_python,
        "--allow-env",
        "PORT",
        "--allow-env",
        "ENVPACK_REVISION",
        "--allow-port",
        "22000-22199",
        "--allow-probe",
        "127.0.0.1:22000-22199",
        "--setting",
        "ports=22000-22099",
        "--setting",
        "listen-ports=22100-22199",
        "--artifact",
        &s(&tarball),
        "--revision-setting",
        &revision_run,
        "--revision-setting",
        "PORT=",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    host(program, &state, &args)?;
    let install = latency("install.local-process", vec![started.elapsed()]);
    let mut figures = vec![install, compile];
    figures.extend(admission("local-process", &state));
    figures.extend(crate::programs::floors(python, &dir.join("app/app.py"), &tarball, &dir));
    Ok(Ok(figures))
}

/// What the admission run of the one pack installed in `state` reported
/// about its verb calls (the report `pack install` keeps beside the pack):
/// `PREFIX.admission` (the run), `PREFIX.admission.in-pack` (its calls'
/// time inside the pack's export: its programs started and waited for, its
/// sleeps), `PREFIX.admission.calls`, and the programs it started and the
/// signals it sent, by name. Nothing when the report says nothing.
pub fn admission(prefix: &str, state: &Path) -> Vec<Figure> {
    let Ok(entries) = std::fs::read_dir(state.join("packs")) else {
        return Vec::new();
    };
    let report = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".report.json"))
        .find_map(|p| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).ok()?).ok());
    let Some(report) = report else {
        return Vec::new();
    };
    let ms = |v: &serde_json::Value| v.as_f64().map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3));
    let calls = &report["calls"];
    let (Some(run), Some(in_pack), Some(asleep), Some(count), Some(programs)) = (
        ms(&report["elapsed_ms"]),
        ms(&calls["in_pack_ms"]),
        ms(&calls["slept_ms"]),
        calls["count"].as_f64(),
        calls["programs"].as_f64(),
    ) else {
        return Vec::new();
    };
    let mut figures = vec![
        latency(format!("{prefix}.admission"), vec![run]),
        latency(format!("{prefix}.admission.in-pack"), vec![in_pack]),
        latency(format!("{prefix}.admission.asleep"), vec![asleep]),
        value(format!("{prefix}.admission.calls"), "calls", count),
        value(format!("{prefix}.admission.programs"), "programs", programs),
    ];
    // By program and by signal: `PREFIX.admission.started.tar`,
    // `PREFIX.admission.signals.hup.nginx`.
    for (key, part, unit) in [("started", "started", "programs"), ("signals", "signals", "signals")] {
        if let Some(counts) = calls[key].as_object() {
            figures.extend(counts.iter().filter_map(|(name, n)| {
                let name = name.replace(' ', ".");
                Some(value(format!("{prefix}.admission.{part}.{name}"), unit, n.as_f64()?))
            }));
        }
    }
    figures
}
