//! Builds every pack under `packs/` for `wasm32-wasip2` (the `pack` profile, in
//! its own target directory so it never contends with the outer build) and
//! copies each to `target/packs/NAME.wasm`. The generated `packs.rs` exposes
//! those paths to tests as constants, like wasmtime's test-programs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root exists");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let packs = pack_dirs(&root.join("packs"));

    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // A new pack directory changes this directory's listing.
    println!("cargo:rerun-if-changed={}", root.join("packs").display());
    for (_, dir) in &packs {
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        println!("cargo:rerun-if-changed={}", dir.join("Cargo.toml").display());
    }

    let out_dir = target.join("packs");
    std::fs::create_dir_all(&out_dir).expect("create target/packs");
    let crates: Vec<String> = packs.iter().map(|(name, _)| format!("envpack-pack-{name}")).collect();
    let build_dir = target.join("packs-build");
    cargo_build(&root, &build_dir, &crates, None);

    let mut consts = String::new();
    let mut all = String::new();
    for (name, _) in &packs {
        let dest = copy_built(&build_dir, name, &out_dir.join(format!("{name}.wasm")));
        consts.push_str(&constant(name, &dest, "pack"));
        all.push_str(&format!("    ({name:?}, {}),\n", ident(name)));
    }
    consts.push_str(&format!(
        "/// Every pack: (name, path).\npub const ALL: &[(&str, &str)] = &[\n{all}];\n"
    ));

    // The faulty packs: the ledger with one `fault-*` feature each.
    let fault_dir = target.join("packs-build-faults");
    let mut faults = String::new();
    for fault in ledger_faults(&root.join("packs/ledger/Cargo.toml")) {
        cargo_build(
            &root,
            &fault_dir,
            &["envpack-pack-ledger".to_string()],
            Some(&format!("fault-{fault}")),
        );
        let dest = copy_built(&fault_dir, "ledger", &out_dir.join(format!("faulty-{fault}.wasm")));
        faults.push_str(&format!("    ({fault:?}, {:?}),\n", dest.display().to_string()));
    }
    consts.push_str(&format!(
        "/// Faulty packs: (fault, path), the ledger with one property broken each.\npub const FAULTY: &[(&str, &str)] = &[\n{faults}];\n"
    ));

    // The ledger built against the frozen contract 1.0.0.
    cargo_build(
        &root,
        &fault_dir,
        &["envpack-pack-ledger".to_string()],
        Some("contract-1-0-0"),
    );
    let dest = copy_built(&fault_dir, "ledger", &out_dir.join("ledger-1.0.0.wasm"));
    consts.push_str(&constant(
        "ledger_1_0_0",
        &dest,
        "pack (the ledger built against contract 1.0.0)",
    ));
    consts.push_str(&corpus(&root, &target, &build_dir, &out_dir));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("packs.rs");
    std::fs::write(out, consts).expect("write packs.rs");
}

fn cargo_build(root: &Path, target_dir: &Path, crates: &[String], feature: Option<&str>) {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(root)
        .args([
            "build",
            "--profile",
            "pack",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir);
    for name in crates {
        cargo.arg("-p").arg(name);
    }
    if let Some(feature) = feature {
        cargo.args(["--features", feature]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("failed to run cargo for the packs");
    assert!(
        status.success(),
        "building {crates:?} {feature:?} for wasm32-wasip2 failed: {status}"
    );
}

fn copy_built(build_dir: &Path, name: &str, dest: &Path) -> PathBuf {
    let built = build_dir
        .join("wasm32-wasip2/pack")
        .join(format!("envpack_pack_{}.wasm", name.replace('-', "_")));
    std::fs::copy(&built, dest).unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), dest.display()));
    dest.to_path_buf()
}

fn ident(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

fn constant(name: &str, path: &Path, what: &str) -> String {
    format!(
        "/// Path of the built `{name}` {what}.\npub const {}: &str = {:?};\n",
        ident(name),
        path.display().to_string()
    )
}

/// The `fault-*` features of the ledger's Cargo.toml, without the prefix.
fn ledger_faults(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("read packs/ledger/Cargo.toml");
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("fault-"))
        .filter_map(|rest| rest.split_once(' ').map(|(name, _)| name.to_string()))
        .collect()
}

/// The corpus (`packs/corpus/<name>/`, packs written elsewhere from the WIT
/// alone): Rust ones with cargo, Python ones with componentize-py and
/// JavaScript ones with ComponentizeJS from `scripts/setup-authoring`'s
/// toolchains (left out, with a warning, where those are not installed).
/// Returns the `CORPUS` constant: (name, language, path).
fn corpus(root: &Path, target: &Path, build_dir: &Path, out_dir: &Path) -> String {
    let corpus = root.join("packs/corpus");
    let out_dir = out_dir.join("corpus");
    std::fs::create_dir_all(&out_dir).expect("create target/packs/corpus");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    let name = |dir: &Path| dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let rust: Vec<String> = dirs
        .iter()
        .filter(|d| d.join("Cargo.toml").is_file())
        .map(|d| format!("corpus-{}", name(d)))
        .collect();
    if !rust.is_empty() {
        cargo_build(root, build_dir, &rust, None);
    }
    let authoring = target.join("authoring");
    let componentize_py = authoring.join("py-venv/bin/componentize-py");
    let componentize_js = authoring.join("js/node_modules/@bytecodealliance/componentize-js/src/componentize.js");
    let mut entries = String::new();
    for dir in &dirs {
        let name = name(dir);
        let dest = out_dir.join(format!("{name}.wasm"));
        println!("cargo:rerun-if-changed={}", dir.display());
        let language = if dir.join("Cargo.toml").is_file() {
            let built = build_dir
                .join("wasm32-wasip2/pack")
                .join(format!("corpus_{}.wasm", name.replace('-', "_")));
            std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
            "rust"
        } else if dir.join("app.py").is_file() {
            if !componentize_py.is_file() {
                println!("cargo:warning=corpus pack {name} (Python) left out: run scripts/setup-authoring");
                continue;
            }
            let mut command = Command::new(&componentize_py);
            command
                .current_dir(dir)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .args(["-d", "wit", "-w", "pack", "componentize", "--stub-wasi", "app", "-o"])
                .arg(&dest);
            run(command, &name);
            "python"
        } else if dir.join("build.mjs").is_file() {
            if !componentize_js.is_file() {
                println!("cargo:warning=corpus pack {name} (JavaScript) left out: run scripts/setup-authoring");
                continue;
            }
            let mut command = Command::new("node");
            command
                .current_dir(dir)
                .env("COMPONENTIZE_JS", &componentize_js)
                .arg("build.mjs")
                .arg("pack.js")
                .arg(&dest);
            run(command, &name);
            "javascript"
        } else {
            continue;
        };
        entries.push_str(&format!(
            "    ({name:?}, {language:?}, {:?}),\n",
            dest.display().to_string()
        ));
    }
    format!(
        "/// The corpus, packs written elsewhere from the WIT alone: (name, language, path).\npub const CORPUS: &[(&str, &str, &str)] = &[\n{entries}];\n"
    )
}

fn run(mut command: Command, name: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("building corpus pack {name}: {e}"));
    assert!(
        output.status.success(),
        "building corpus pack {name} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `packs/<name>/` with a Cargo.toml, except this crate.
fn pack_dirs(packs: &Path) -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<(String, PathBuf)> = std::fs::read_dir(packs)
        .expect("read packs/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
        .filter(|(name, _)| name != "artifacts")
        .collect();
    dirs.sort();
    dirs
}
