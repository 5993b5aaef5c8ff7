//! `host new NAME --lang rust|python|js`: a pack project that builds and
//! passes `host conformance --profile extended` as generated.

use std::path::PathBuf;

use envpack_operator::{Lang, NewPack, new_pack};

use crate::error::{CliError, exit};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LangArg {
    Rust,
    Python,
    Js,
}

#[derive(clap::Args)]
pub struct Args {
    /// The pack's name (lowercase letters, digits and `-`); the project's directory and
    /// the built file (NAME.wasm) take it.
    name: String,
    /// The language of the pack.
    #[arg(long, value_enum)]
    lang: LangArg,
    /// Where to create the project (default: ./NAME); it must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The pack's descriptor, `namespace.name@semver` (default: example.deployer.NAME@0.1.0).
    #[arg(long, value_name = "DESCRIPTOR")]
    descriptor: Option<String>,
    /// The author recorded in pack.toml.
    #[arg(long, default_value = "the pack's author")]
    author: String,
}

pub fn run(args: Args) -> Result<i32, CliError> {
    let lang = match args.lang {
        LangArg::Rust => Lang::Rust,
        LangArg::Python => Lang::Python,
        LangArg::Js => Lang::Js,
    };
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let project = new_pack(&NewPack {
        name: args.name,
        lang,
        dir,
        descriptor: args.descriptor,
        author: args.author,
    })
    .map_err(|e| CliError::input(e.to_string()))?;
    let dir = project.dir.display();
    println!("created {dir}: a {} pack, {}", lang.name(), project.descriptor);
    for file in &project.files {
        println!("  {file}");
    }
    println!("next:");
    println!("  cd {dir}");
    println!("  {}", project.build);
    println!("  host conformance {} --profile extended", project.output);
    Ok(exit::OK)
}
