//! `host inspect PACK`: what a pack says it is and what it imports and exports.

use std::path::PathBuf;

use envpack_host::{Pack, Runtime};
use serde_json::json;

use crate::error::{CliError, exit};

#[derive(clap::Args)]
pub struct Args {
    /// The pack (.wasm component).
    pack: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(runtime: &Runtime, args: Args) -> Result<i32, CliError> {
    let pack = runtime.load_pack_file(&args.pack).await?;
    if args.json {
        println!("{:#}", describe_json(&pack));
    } else {
        print_text(&pack);
    }
    Ok(exit::OK)
}

fn describe_json(pack: &Pack) -> serde_json::Value {
    let info = pack.info();
    json!({
        "source": pack.source(),
        "sha256": pack.digest(),
        "size": pack.size(),
        "descriptor": info.descriptor,
        "contract_version": info.contract_version,
        "capabilities": info.capabilities,
        "description": info.description,
        "imports": pack.imports(),
        "exports": pack.exports(),
    })
}

fn print_text(pack: &Pack) {
    let info = pack.info();
    let caps: Vec<&str> = info.capabilities.iter().map(|c| c.name()).collect();
    println!("pack         {}", pack.source());
    println!("descriptor   {}", info.descriptor);
    println!("contract     envpack:deployer@{}", info.contract_version);
    println!("description  {}", info.description);
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
    println!("imports");
    for name in pack.imports() {
        println!("  {name}");
    }
    println!("exports");
    for name in pack.exports() {
        println!("  {name}");
    }
}
