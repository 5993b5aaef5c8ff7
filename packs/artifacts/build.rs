//! Builds every pack under `packs/` for `wasm32-wasip2` (release profile, in
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
    for (_, dir) in &packs {
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        println!("cargo:rerun-if-changed={}", dir.join("Cargo.toml").display());
    }

    let build_dir = target.join("packs-build");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&build_dir);
    for (name, _) in &packs {
        cargo.arg("-p").arg(format!("envpack-pack-{name}"));
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
        "building the packs for wasm32-wasip2 failed: {status}"
    );

    let out_dir = target.join("packs");
    std::fs::create_dir_all(&out_dir).expect("create target/packs");
    let mut consts = String::new();
    let mut all = String::new();
    for (name, _) in &packs {
        let built = build_dir
            .join("wasm32-wasip2/release")
            .join(format!("envpack_pack_{}.wasm", name.replace('-', "_")));
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), dest.display()));
        let ident = name.replace('-', "_").to_uppercase();
        consts.push_str(&format!(
            "/// Path of the built `{name}` pack.\npub const {ident}: &str = {:?};\n",
            dest.display().to_string()
        ));
        all.push_str(&format!("    ({name:?}, {ident}),\n"));
    }
    consts.push_str(&format!(
        "/// Every pack: (name, path).\npub const ALL: &[(&str, &str)] = &[\n{all}];\n"
    ));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("packs.rs");
    std::fs::write(out, consts).expect("write packs.rs");
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
