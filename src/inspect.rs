//! `host inspect PACK`: what a pack says it is, the settings it declares,
//! and what it imports and exports.

use std::path::PathBuf;

use envpack_host::{Pack, Signature, SignaturePolicy};
use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, exit};

#[derive(clap::Args)]
pub struct Args {
    /// The pack (.wasm component).
    pack: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &mut Context, args: Args) -> Result<i32, CliError> {
    let trust = ctx.trust()?;
    let keyring = trust.keyring();
    let loaded = ctx
        .runtime()?
        .load_file(&args.pack, SignaturePolicy::Report(&keyring))
        .await?;
    let pack = loaded.pack;
    // The load walked the same bytes within the limits; read them again for the figures.
    let bytes = envpack_host::read_pack_file(&args.pack).map_err(|e| {
        CliError::Load(envpack_host::LoadError::Read {
            path: args.pack.display().to_string(),
            source: e,
        })
    })?;
    let shape = envpack_host::check_shape(&bytes, ctx.pack_limits())
        .map_err(|e| CliError::State(format!("the pack changed while it was inspected: {e}")))?;
    let trusted = match &loaded.signature {
        Signature::Trusted(v) => format!("trusted: signed by {} ({})", v.name, v.key_id),
        Signature::Refused(e) => format!("not trusted: {e}"),
        Signature::NotChecked => "not checked".to_string(),
    };
    if args.json {
        let mut value = describe_json(&pack);
        value["signature"] = json!(trusted);
        value["shape"] = json!(shape);
        println!("{value:#}");
    } else {
        print_text(&pack);
        println!("signature    {trusted}");
        println!(
            "shape        {} core modules, at most {} functions in one, {} locals and {} bytes in one function, \
             blocks nested {} deep, {} bytes of code",
            shape.core_modules,
            shape.functions,
            shape.locals_per_function,
            shape.function_body_bytes,
            shape.nesting_depth,
            shape.code_bytes
        );
    }
    Ok(exit::OK)
}

fn describe_json(pack: &Pack) -> serde_json::Value {
    let info = pack.info();
    json!({
        "manifest": pack.manifest(),
        "source": pack.source(),
        "sha256": pack.digest(),
        "size": pack.size(),
        "descriptor": info.descriptor,
        "contract_version": info.contract_version,
        "capabilities": info.capabilities,
        "description": info.description,
        "settings": settings_json(pack),
        "imports": pack.imports(),
        "exports": pack.exports(),
    })
}

/// The declared settings as a list (`null` when the pack declares none).
fn settings_json(pack: &Pack) -> serde_json::Value {
    match pack.manifest().and_then(|m| m.settings.as_ref()) {
        None => serde_json::Value::Null,
        Some(declared) => declared
            .0
            .iter()
            .map(|(name, spec)| {
                json!({
                    "name": name,
                    "type": spec.kind.name(),
                    "required": spec.required,
                    "default": spec.default,
                    "doc": spec.doc,
                })
            })
            .collect(),
    }
}

/// The declared settings, one line each.
fn print_settings(pack: &Pack) {
    let Some(declared) = pack.manifest().and_then(|m| m.settings.as_ref()) else {
        println!("settings     none declared (env create/bind pass settings unchecked)");
        return;
    };
    if declared.0.is_empty() {
        println!("settings     none (the pack takes no settings)");
        return;
    }
    println!("settings");
    let width = declared.0.keys().map(|n| n.chars().count()).max().unwrap_or(0);
    for (name, spec) in &declared.0 {
        let mut line = format!("  {name:width$}  {:11}", spec.kind.name());
        if spec.required {
            line.push_str("  required");
        }
        if let Some(default) = &spec.default {
            line.push_str(&format!("  default {}", envpack_model::text::printable(default)));
        }
        if !spec.doc.is_empty() {
            line.push_str(&format!("  {}", envpack_model::text::printable(&spec.doc)));
        }
        println!("{}", line.trim_end());
    }
}

fn print_text(pack: &Pack) {
    let info = pack.info();
    let caps: Vec<&str> = info.capabilities.iter().map(|c| c.name()).collect();
    println!("pack         {}", pack.source());
    println!("descriptor   {}", info.descriptor);
    println!("contract     envpack:deployer@{}", info.contract_version);
    println!("description  {}", envpack_model::text::printable(&info.description));
    println!(
        "capabilities {}",
        if caps.is_empty() {
            "(none)".to_string()
        } else {
            caps.join(", ")
        }
    );
    println!("sha256       {}", pack.digest());
    println!("size         {} bytes", pack.size());
    match pack.manifest() {
        Some(m) => println!(
            "author       {} (manifest agrees with describe)",
            envpack_model::text::printable(&m.author)
        ),
        None => println!("manifest     none (seal it with `host pack seal`)"),
    }
    print_settings(pack);
    println!("imports");
    for name in pack.imports() {
        println!("  {name}");
    }
    println!("exports");
    for name in pack.exports() {
        println!("  {name}");
    }
}
