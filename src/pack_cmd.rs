//! `host pack seal|digest|push|pull|install|list|remove|resolve`: from a
//! built component to a published, installed, verified pack, and back out by
//! descriptor.

use std::path::{Path, PathBuf};

use envpack_model::files;
use envpack_trust::{Manifest, Requirement};
use serde_json::json;

use envpack_conformance::render;
use envpack_host::SignaturePolicy;
use envpack_operator::AdmissionError;
use envpack_operator::distribute::{self, OciInstallError, OciRef};

use crate::context::Context;
use crate::error::{CliError, exit};
use crate::fixture_args::FixtureArgs;
use crate::input::read_bytes;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Embed a manifest (pack.toml) into a built component; checks it against describe.
    Seal {
        /// The component built with `cargo build --target wasm32-wasip2`.
        component: PathBuf,
        /// The manifest: descriptor, contract_version, capabilities, author, description.
        #[arg(long, value_name = "pack.toml")]
        manifest: PathBuf,
        /// Where to write the sealed pack.
        #[arg(short, long, value_name = "OUT")]
        out: PathBuf,
    },
    /// The sha256 that signatures cover (hex, or 32 raw bytes with -o, for `openssl pkeyutl -rawin`).
    Digest {
        pack: PathBuf,
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Push a sealed, signed pack to an OCI registry as a WebAssembly artifact
    /// (the media types wasm-pkg-tools uses). Credentials: ENVPACK_REGISTRY_USERNAME and
    /// ENVPACK_REGISTRY_PASSWORD, or ENVPACK_REGISTRY_AUTH_FILE (a Docker config.json).
    Push {
        /// The sealed, signed pack (`host pack seal`, then `host sign`).
        pack: PathBuf,
        /// oci://REGISTRY/REPOSITORY:TAG
        #[arg(value_name = "oci://REGISTRY/REPO:TAG")]
        target: String,
    },
    /// Fetch a pack from an OCI registry into a file: digests checked, then its
    /// signature and the signer's scope against the trust store, as for a file.
    Pull {
        /// oci://REGISTRY/REPOSITORY:TAG, or @sha256:DIGEST to pin the manifest.
        #[arg(value_name = "oci://REGISTRY/REPO:TAG|@sha256:DIGEST")]
        source: String,
        /// Where to write the pack (only once every check passed).
        #[arg(short, long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify a pack, run the `core` conformance profile on it, and store it
    /// in the registry, content-addressed. A failing pack is refused. PACK is a file or
    /// oci://REGISTRY/REPO:TAG (or @sha256:DIGEST), pulled with its digests checked.
    Install {
        pack: String,
        /// Install even if conformance fails (recorded in the registry).
        #[arg(long)]
        force: bool,
        /// Scopes, settings and an artifact for the admission bench's fixture environments.
        #[command(flatten)]
        fixture: Box<FixtureArgs>,
    },
    /// Install every pack that another machine sharing the records installed
    /// and this one lacks (`--database`), from where that machine got it: its OCI
    /// reference (pinned by digest), or its file path if readable here. Each is
    /// verified against this machine's trust store and judged, as by `pack install`.
    Sync {
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// Scopes, settings and an artifact for the admission bench's fixture environments.
        #[command(flatten)]
        fixture: Box<FixtureArgs>,
    },
    /// List installed packs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed pack by descriptor or digest prefix.
    Remove {
        selector: String,
        /// Remove it even though environments are bound to it (they stop working until rebound).
        #[arg(long)]
        force: bool,
    },
    /// Resolve a requirement such as `envpack.deployer.ledger@^1` to an installed pack.
    Resolve {
        requirement: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(ctx: &mut Context, command: Command) -> Result<i32, CliError> {
    match command {
        Command::Seal {
            component,
            manifest,
            out,
        } => seal(ctx, component, manifest, out).await,
        Command::Digest { pack, out } => digest(pack, out),
        Command::Push { pack, target } => push(pack, &target).await,
        Command::Pull { source, out } => pull(ctx, &source, out).await,
        Command::Install { pack, force, fixture } => install(ctx, &pack, force, &fixture).await,
        Command::Sync { json, fixture } => sync(ctx, json, &fixture).await,
        Command::List { json } => list(ctx, json),
        Command::Remove { selector, force } => {
            let removed = envpack_operator::remove_pack(ctx.state_dir()?, &selector, force)?;
            println!("removed {} ({})", removed.descriptor, removed.digest);
            Ok(exit::OK)
        }
        Command::Resolve { requirement, json } => resolve(ctx, &requirement, json),
    }
}

async fn seal(ctx: &mut Context, component: PathBuf, manifest_path: PathBuf, out: PathBuf) -> Result<i32, CliError> {
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| CliError::input(format!("cannot read {}: {e}", manifest_path.display())))?;
    let manifest_error = |source| CliError::Manifest {
        path: manifest_path.display().to_string(),
        source,
    };
    let manifest = Manifest::from_toml(&text).map_err(manifest_error)?;
    let sealed = manifest.seal(&read_bytes(&component)?).map_err(manifest_error)?;
    // Load the sealed bytes: compiles, links and checks the manifest against describe.
    let runtime = ctx.runtime()?;
    runtime
        .load(out.display().to_string(), sealed.clone(), SignaturePolicy::Skip)
        .await?;
    files::write_atomic(&out, &sealed, 0o644)
        .map_err(|e| CliError::State(format!("cannot write {}: {e}", out.display())))?;
    println!(
        "sealed {} as {} ({})",
        out.display(),
        manifest.descriptor,
        envpack_model::sha256_hex(&sealed)
    );
    Ok(exit::OK)
}

fn digest(pack: PathBuf, out: Option<PathBuf>) -> Result<i32, CliError> {
    let digest = envpack_trust::signable_digest(&read_bytes(&pack)?).map_err(envpack_trust::VerifyError::from)?;
    match out {
        Some(path) => files::write_atomic(&path, &digest, 0o644)
            .map_err(|e| CliError::State(format!("cannot write {}: {e}", path.display())))?,
        None => println!("{}", hex_string(&digest)),
    }
    Ok(exit::OK)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn push(path: PathBuf, target: &str) -> Result<i32, CliError> {
    let target = OciRef::parse(target)?;
    if target.tag.is_none() {
        return Err(CliError::input(format!(
            "{target}: push to a tag (oci://REGISTRY/REPO:TAG); the registry gives the digest"
        )));
    }
    let bytes = read_bytes(&path)?;
    let pushed = distribute::push(&path, &bytes, &target).await?;
    println!("pushed {} to {target}", pushed.descriptor);
    println!("  manifest: {}", pushed.manifest_digest);
    println!("  pack:     sha256:{}", pushed.pack_digest);
    println!("  pin it:   {}", pushed.pinned);
    Ok(exit::OK)
}

async fn pull(ctx: &mut Context, source: &str, out: PathBuf) -> Result<i32, CliError> {
    let source = OciRef::parse(source)?;
    let pulled = distribute::pull(&source).await?;
    let verified = distribute::verify_pulled(&pulled, &ctx.trust()?)?;
    files::write_atomic(&out, &pulled.bytes, 0o644)
        .map_err(|e| CliError::State(format!("cannot write {}: {e}", out.display())))?;
    println!(
        "pulled {} to {} (sha256:{}) signed by {} ({})",
        pulled.pinned,
        out.display(),
        envpack_model::sha256_hex(&pulled.bytes),
        verified.name,
        verified.key_id
    );
    Ok(exit::OK)
}

async fn install(ctx: &mut Context, pack: &str, force: bool, fixture: &FixtureArgs) -> Result<i32, CliError> {
    let state_dir = ctx.state_dir()?.clone();
    let config = fixture.config(&state_dir)?;
    let (runtime, judge) = ctx.runtimes()?;
    // Where it came from, for the shared index: the pinned reference, or the file's full path.
    let mut source = std::path::absolute(pack).map_or_else(|_| pack.to_string(), |p| p.display().to_string());
    let admitted = if OciRef::is_oci(pack) {
        let oci = OciRef::parse(pack)?;
        match distribute::install_oci(runtime, judge, &state_dir, &oci, force, &config).await {
            Ok((pulled, admission)) => {
                eprintln!("host: pulled {}", pulled.pinned);
                source = pulled.pinned.to_string();
                Ok(admission)
            }
            Err(OciInstallError::Admission(e)) => Err(e),
            Err(OciInstallError::Pull(e)) => return Err(e.into()),
            Err(OciInstallError::Io(e)) => return Err(CliError::State(e)),
        }
    } else {
        envpack_operator::install(runtime, judge, &state_dir, Path::new(pack), force, &config).await
    };
    let admission = match admitted {
        Ok(admission) => admission,
        Err(AdmissionError::Failed { descriptor, report }) => {
            eprint!("{}", render::human(&report));
            return Err(CliError::Admission {
                descriptor,
                failed: report.failed_ids().iter().map(|s| s.to_string()).collect(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let (installed, verified, report) = (&admission.installed, &admission.verified, &admission.report);
    if let Err(e) = envpack_operator::index::record(&state_dir, installed, &verified.key_id, &source) {
        eprintln!("host: warning: installed, but not recorded in the index of installed packs: {e}");
    }
    if admission.forced {
        eprint!("{}", render::human(report));
        eprintln!(
            "host: warning: installed {} despite failed conformance (--force, recorded)",
            installed.descriptor
        );
    }
    let dry = if report.dry {
        " (dry: only the checks that call no verb ran)"
    } else {
        ""
    };
    println!(
        "installed {} ({}) signed by {} ({}); conformance core{dry}: {} passed, {} failed, {} skipped",
        installed.descriptor,
        installed.digest,
        verified.name,
        verified.key_id,
        report.summary.passed,
        report.summary.failed,
        report.summary.skipped
    );
    Ok(exit::OK)
}

/// `host pack sync`: what other machines installed, installed here too.
async fn sync(ctx: &mut Context, as_json: bool, fixture: &FixtureArgs) -> Result<i32, CliError> {
    let state_dir = ctx.state_dir()?.clone();
    let missing = envpack_operator::index::missing_here(&state_dir)?;
    let mut outcomes = Vec::new();
    let mut failed = 0;
    for pack in missing {
        let result = if OciRef::is_oci(&pack.source) || Path::new(&pack.source).is_file() {
            sync_one(ctx, &pack, fixture).await
        } else {
            Err(format!(
                "{} is not readable here; install a copy with `host pack install FILE`",
                pack.source
            ))
        };
        if !as_json {
            match &result {
                Ok(()) => println!("installed {} ({}) from {}", pack.descriptor, pack.digest, pack.source),
                Err(why) => eprintln!("host: {} ({}) not installed: {why}", pack.descriptor, pack.digest),
            }
        }
        failed += usize::from(result.is_err());
        outcomes.push(serde_json::json!({
            "descriptor": pack.descriptor,
            "digest": pack.digest,
            "source": pack.source,
            "installed": result.is_ok(),
            "error": result.err(),
        }));
    }
    if as_json {
        println!("{:#}", serde_json::Value::Array(outcomes));
    } else if outcomes.is_empty() {
        println!("every pack in the index is installed here");
    }
    Ok(if failed == 0 { exit::OK } else { exit::VERB_FAILED })
}

/// Installs one indexed pack, refusing a source that no longer holds it.
async fn sync_one(
    ctx: &mut Context,
    pack: &envpack_operator::IndexedPack,
    fixture: &FixtureArgs,
) -> Result<(), String> {
    let state_dir = ctx.state_dir().map_err(|e| e.to_string())?.clone();
    let config = fixture.config(&state_dir).map_err(|e| e.to_string())?;
    let (runtime, judge) = ctx.runtimes().map_err(|e| e.to_string())?;
    let admission = if OciRef::is_oci(&pack.source) {
        let oci = OciRef::parse(&pack.source).map_err(|e| e.to_string())?;
        distribute::install_oci(runtime, judge, &state_dir, &oci, false, &config)
            .await
            .map(|(_, admission)| admission)
            .map_err(|e| e.to_string())?
    } else {
        let bytes = std::fs::read(&pack.source).map_err(|e| format!("{}: {e}", pack.source))?;
        let digest = envpack_model::sha256_hex(&bytes);
        if digest != pack.digest {
            return Err(format!("{} holds another pack now (sha256 {digest})", pack.source));
        }
        envpack_operator::install(runtime, judge, &state_dir, Path::new(&pack.source), false, &config)
            .await
            .map_err(|e| e.to_string())?
    };
    if admission.installed.digest != pack.digest {
        return Err(format!(
            "{} gave another pack ({}); it was installed, but is not the one the index names",
            pack.source, admission.installed.digest
        ));
    }
    envpack_operator::index::record(
        &state_dir,
        &admission.installed,
        &admission.verified.key_id,
        &pack.source,
    )
    .map_err(|e| e.to_string())
}

fn list(ctx: &mut Context, as_json: bool) -> Result<i32, CliError> {
    let registry = ctx.registry()?;
    if as_json {
        let entries: Vec<serde_json::Value> = registry
            .list()
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                crate::show::rfc3339_fields(&mut v, &["installed_at"]);
                let report = registry.report(p);
                v["conformance"] = report.as_ref().map(|r| r["summary"].clone()).unwrap_or_default();
                v["dry_admission"] = serde_json::Value::Bool(report.is_some_and(|r| r["dry"] == true));
                v
            })
            .collect();
        println!("{:#}", serde_json::Value::Array(entries));
    } else if registry.list().is_empty() {
        println!("no packs installed (install one with `host pack install PACK`)");
    } else {
        for pack in registry.list() {
            let forced = if pack.forced {
                "  FORCED past failed conformance"
            } else {
                ""
            };
            let conformance = match registry.report(pack) {
                Some(r) if r["dry"] == true => "dry: no verb called".to_string(),
                Some(r) => format!(
                    "core {}/{} passed",
                    r["summary"]["passed"],
                    r["checks"].as_array().map_or(0, Vec::len)
                ),
                None => "no conformance report".to_string(),
            };
            println!(
                "{:<44} {}  {:<20} {}{forced}",
                pack.descriptor,
                &pack.digest[..16],
                conformance,
                envpack_model::text::printable(&pack.author)
            );
        }
    }
    Ok(exit::OK)
}

fn resolve(ctx: &mut Context, requirement: &str, as_json: bool) -> Result<i32, CliError> {
    let req: Requirement = requirement
        .parse()
        .map_err(|e: envpack_trust::DescriptorError| CliError::input(e.to_string()))?;
    let trust = ctx.trust()?;
    let registry = ctx.registry()?;
    let keyring = trust.keyring();
    let (pack, checked) = registry.resolve(&req, &keyring)?;
    let verified = checked.verified;
    if as_json {
        println!(
            "{:#}",
            json!({ "requirement": requirement, "descriptor": pack.descriptor, "digest": pack.digest, "path": registry.path(&pack), "signed_by": verified.key_id })
        );
    } else {
        println!(
            "{requirement} -> {} ({})",
            pack.descriptor,
            registry.path(&pack).display()
        );
    }
    Ok(exit::OK)
}
