//! `host conformance PACK...`: the bench from the command line, one report
//! per pack, as text, JSON or JUnit XML; exit 0 only if no check failed.

use std::path::{Path, PathBuf};

use envpack_conformance::{BenchConfig, Profile, Report, SignatureStatus, render};
use envpack_host::signature::{self, Keyring, VerifyError};
use envpack_host::trust::TrustStore;
use envpack_host::{Runtime, fsutil};

use crate::context::Context;
use crate::error::{CliError, exit};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Junit,
}

#[derive(clap::Args)]
pub struct Args {
    /// The packs to judge.
    #[arg(required = true)]
    packs: Vec<PathBuf>,
    /// `core` (what admission runs) or `extended` (adds robustness, budgets, signature).
    #[arg(long, default_value = "core")]
    profile: String,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Write the report here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The pack's signature status against the trust store.
pub fn signature_status(bytes: &[u8], trust: &TrustStore) -> SignatureStatus {
    let keyring = Keyring {
        trust,
        extra: Vec::new(),
    };
    match signature::verify(bytes, &keyring, None) {
        Ok(v) => SignatureStatus::Trusted {
            name: v.name,
            key_id: v.key_id,
        },
        Err(VerifyError::Unsigned) => SignatureStatus::Unsigned,
        Err(e @ (VerifyError::Tampered { .. } | VerifyError::Damaged(_) | VerifyError::BadSection(_))) => {
            SignatureStatus::Tampered(e.to_string())
        }
        Err(e) => SignatureStatus::Untrusted(e.to_string()),
    }
}

/// Runs the bench on one pack file; a pack that cannot be loaded gets a failing report.
pub async fn judge(runtime: &Runtime, path: &Path, trust: &TrustStore, config: &BenchConfig) -> Report {
    let source = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return envpack_conformance::unloadable(&source, &e.to_string(), config),
    };
    let status = signature_status(&bytes, trust);
    match runtime.load_pack(source.clone(), bytes).await {
        Ok(pack) => envpack_conformance::run(runtime, &pack, &source, &status, config).await,
        Err(e) => envpack_conformance::unloadable(&source, &e.to_string(), config),
    }
}

pub async fn run(ctx: &mut Context, args: Args) -> Result<i32, CliError> {
    let profile = Profile::parse(&args.profile).ok_or_else(|| CliError::Input {
        message: format!("unknown profile {:?}", args.profile),
        hint: Some("profiles are: core, extended".into()),
    })?;
    let config = BenchConfig {
        profile,
        ..BenchConfig::default()
    };
    let trust = ctx.trust()?;
    let runtime = ctx.bench_runtime()?;
    let mut reports = Vec::new();
    for path in &args.packs {
        reports.push(judge(runtime, path, &trust, &config).await);
    }
    let text = match args.format {
        Format::Human => reports.iter().map(render::human).collect::<Vec<_>>().join("\n"),
        Format::Json => render::json(&reports),
        Format::Junit => {
            render::junit(&reports).map_err(|e| CliError::State(format!("cannot write JUnit XML: {e}")))?
        }
    };
    match &args.out {
        Some(path) => fsutil::write_atomic(path, text.as_bytes(), 0o644)
            .map_err(|e| CliError::State(format!("cannot write {}: {e}", path.display())))?,
        None => println!("{}", text.trim_end()),
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        eprintln!(
            "host: error: {failed} of {} packs failed conformance ({} profile)",
            reports.len(),
            profile.name()
        );
        return Ok(exit::VERB_FAILED);
    }
    Ok(exit::OK)
}
