//! `host keygen`, `host sign`, `host verify`: Ed25519 keys and pack signatures.

use std::path::{Path, PathBuf};

use envpack_host::SignaturePolicy;
use envpack_model::files;
use envpack_trust::{Keyring, Manifest, PrivateKey, TrustStore};
use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, exit};
use crate::input::{key_error, read_bytes, read_private_key, read_public};

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key; the public key goes to KEY.pub.
    #[arg(long, value_name = "KEY")]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// The sealed pack to sign.
    pack: PathBuf,
    /// Private key (PKCS#8 PEM, as `host keygen` or `openssl genpkey -algorithm ed25519` write it).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Where to write the signed pack (default: replace PACK).
    #[arg(short, long, value_name = "OUT", conflicts_with = "detached")]
    out: Option<PathBuf>,
    /// Write a detached signature (64 raw bytes) to this file instead.
    #[arg(long, value_name = "SIG")]
    detached: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The pack to verify.
    pack: PathBuf,
    /// Also trust this public key (SPKI PEM) for this check; may be repeated.
    #[arg(long, value_name = "PUB")]
    key: Vec<PathBuf>,
    /// Check this detached signature (64 raw bytes) instead of embedded ones.
    #[arg(long, value_name = "SIG")]
    signature: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    files::write_atomic(path, bytes, mode).map_err(|e| CliError::State(format!("cannot write {}: {e}", path.display())))
}

pub fn keygen(args: KeygenArgs) -> Result<i32, CliError> {
    let public_path = PathBuf::from(format!("{}.pub", args.out.display()));
    for path in [&args.out, &public_path] {
        if path.exists() && !args.force {
            return Err(CliError::Input {
                message: format!("{} already exists", path.display()),
                hint: Some("pass --force to overwrite it".into()),
            });
        }
    }
    let key = PrivateKey::generate().map_err(key_error(&args.out))?;
    write(&args.out, key.to_pem().map_err(key_error(&args.out))?.as_bytes(), 0o600)?;
    let public = key.public();
    write(
        &public_path,
        public.to_pem().map_err(key_error(&public_path))?.as_bytes(),
        0o644,
    )?;
    println!(
        "wrote {} (private, mode 0600) and {}",
        args.out.display(),
        public_path.display()
    );
    println!("key id {}", public.key_id());
    Ok(exit::OK)
}

/// A private key from a PKCS#8 PEM file, errors naming the file.
pub fn sign(args: SignArgs) -> Result<i32, CliError> {
    let key = read_private_key(&args.key)?;
    let pack = read_bytes(&args.pack)?;
    let manifest = Manifest::read(&pack).map_err(|source| CliError::Manifest {
        path: args.pack.display().to_string(),
        source,
    })?;
    if manifest.is_none() {
        return Err(CliError::Input {
            message: format!(
                "{} has no manifest, so its signature would not cover who made it",
                args.pack.display()
            ),
            hint: Some("seal it first: `host pack seal COMPONENT --manifest pack.toml -o PACK`".into()),
        });
    }
    let key_id = key.public().key_id();
    if let Some(sig_path) = &args.detached {
        let sig = envpack_trust::sign_detached(&pack, &key).map_err(envpack_trust::VerifyError::from)?;
        write(sig_path, &sig, 0o644)?;
        println!("wrote detached signature {} by key {key_id}", sig_path.display());
        return Ok(exit::OK);
    }
    let signed = envpack_trust::sign(&pack, &key).map_err(envpack_trust::VerifyError::from)?;
    let out = args.out.unwrap_or(args.pack);
    write(&out, &signed, 0o644)?;
    println!("signed {} with key {key_id}", out.display());
    Ok(exit::OK)
}

pub async fn verify(ctx: &mut Context, args: VerifyArgs) -> Result<i32, CliError> {
    let trust = if args.key.is_empty() {
        ctx.trust()?
    } else {
        TrustStore::empty()
    };
    let extra = args.key.iter().map(|p| read_public(p)).collect::<Result<Vec<_>, _>>()?;
    let detached = match &args.signature {
        Some(path) => Some(read_bytes(path)?.try_into().map_err(|_| {
            CliError::input(format!(
                "{} is not a detached signature: expected exactly 64 bytes",
                path.display()
            ))
        })?),
        None => None,
    };
    let pack = read_bytes(&args.pack)?;
    let keyring = Keyring { trust: &trust, extra };
    // Checked first on its own so that a refusal keeps its precise error.
    let verified = envpack_trust::verify(&pack, &keyring, detached.as_ref())?;
    // A valid signature over a manifest that lies about the code is still refused.
    let policy = SignaturePolicy::Verified(verified.clone());
    let loaded = ctx
        .runtime()?
        .load(args.pack.display().to_string(), pack, policy)
        .await?;
    let descriptor = loaded.pack.info().descriptor.clone();
    if args.json {
        println!(
            "{:#}",
            json!({ "pack": args.pack, "descriptor": descriptor, "trusted": true, "key_id": verified.key_id, "key_name": verified.name, "signers": verified.signers })
        );
    } else {
        println!(
            "{}: {descriptor} is trusted: signed by {} ({})",
            args.pack.display(),
            verified.name,
            verified.key_id
        );
    }
    Ok(exit::OK)
}
