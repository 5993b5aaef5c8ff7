//! `host new NAME --lang rust|python|js`: a pack project that builds
//! standalone and passes `host conformance --profile extended` as
//! generated. The templates are the files beside this module, included at
//! compile time; `{{key}}` placeholders are replaced, nothing else (the
//! workflow's own `${{ ... }}` expressions pass through).

use std::path::{Path, PathBuf};

use envpack_model::CONTRACT_VERSION;
use envpack_model::files;

/// The contract every generated project carries a copy of.
const WIT: &str = include_str!("../../../../wit/deployer.wit");

/// The toolchain pins the generated projects name (the ones
/// `scripts/setup-authoring` installs and CI checks them with).
pub const COMPONENTIZE_PY: &str = "0.25.1";
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The language of a new pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct NewPack {
    /// The pack's name: lowercase letters, digits and `-`.
    pub name: String,
    pub lang: Lang,
    /// Where the project goes (created; must not exist or be empty).
    pub dir: PathBuf,
    /// `namespace.name@semver`; default `example.deployer.NAME@0.1.0`.
    pub descriptor: Option<String>,
    pub author: String,
}

/// A generated project.
#[derive(Debug)]
pub struct NewProject {
    pub dir: PathBuf,
    pub descriptor: String,
    /// Relative paths of the files written.
    pub files: Vec<String>,
    /// The command that builds `NAME.wasm`, run from `dir`.
    pub build: &'static str,
    /// The file the build writes, relative to `dir`.
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error("{0:?} is not a pack name: use lowercase letters, digits and `-`, starting with a letter")]
    Name(String),
    #[error("{0}")]
    Descriptor(#[from] envpack_trust::DescriptorError),
    #[error("{} exists and is not empty: pick another name or --dir", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

struct File {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

const fn file(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        executable: false,
    }
}

const fn script(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        executable: true,
    }
}

const COMMON: &[File] = &[
    file("pack.toml", include_str!("common/pack.toml")),
    file("README.md", include_str!("common/README.md")),
    file(".github/workflows/pack.yml", include_str!("common/workflow.yml")),
    file("wit/deployer.wit", WIT),
];

const RUST: &[File] = &[
    file("Cargo.toml", include_str!("rust/Cargo.toml")),
    file("rust-toolchain.toml", include_str!("rust/rust-toolchain.toml")),
    file("src/lib.rs", include_str!("rust/lib.rs")),
    script("build.sh", include_str!("rust/build.sh")),
    file(".gitignore", include_str!("rust/gitignore")),
];

const PYTHON: &[File] = &[
    file("app.py", include_str!("python/app.py")),
    file("requirements-build.txt", include_str!("python/requirements-build.txt")),
    script("build.sh", include_str!("python/build.sh")),
    file(".gitignore", include_str!("python/gitignore")),
];

const JS: &[File] = &[
    file("pack.js", include_str!("js/pack.js")),
    file("build.mjs", include_str!("js/build.mjs")),
    file("package.json", include_str!("js/package.json")),
    script("build.sh", include_str!("js/build.sh")),
    file(".gitignore", include_str!("js/gitignore")),
];

const PYTHON_STEPS: &str = "
      - uses: actions/setup-python@v5
        with:
          python-version: \"3.12\"

      - name: Install componentize-py
        run: pip install -r requirements-build.txt
";

const JS_STEPS: &str = "
      - uses: actions/setup-node@v4
        with:
          node-version: \"20\"

      - name: Install ComponentizeJS
        run: npm install --no-audit --no-fund
";

/// Writes the project `request` describes.
pub fn new_pack(request: &NewPack) -> Result<NewProject, NewError> {
    let _span = tracing::info_span!("new", name = %request.name).entered();
    check_name(&request.name)?;
    let descriptor = request
        .descriptor
        .clone()
        .unwrap_or_else(|| format!("example.deployer.{}@0.1.0", request.name));
    let parsed: envpack_trust::Descriptor = descriptor.parse()?;
    let namespace = parsed.name.split('.').next().unwrap_or_default().to_string();
    let major = descriptor
        .rsplit_once('@')
        .map_or("0", |(_, v)| v.split('.').next().unwrap_or("0"));
    let requirement = format!("{}@^{major}", parsed.name);
    if request.dir.exists() && std::fs::read_dir(&request.dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(NewError::Exists(request.dir.clone()));
    }
    let lang = request.lang;
    let description = format!("{} (a {} pack made by host new)", request.name, lang.name());
    let (files, source, steps): (&[File], &str, &str) = match lang {
        Lang::Rust => (RUST, "src/lib.rs", ""),
        Lang::Python => (PYTHON, "app.py", PYTHON_STEPS),
        Lang::Js => (JS, "pack.js", JS_STEPS),
    };
    let interpreter = lang != Lang::Rust;
    let vars: Vec<(&str, String)> = vec![
        ("name", request.name.clone()),
        ("crate", request.name.replace('-', "_")),
        ("descriptor", descriptor.clone()),
        ("namespace", namespace),
        ("requirement", requirement),
        ("contract", CONTRACT_VERSION.to_string()),
        ("author", request.author.replace(['"', '\\'], "")),
        ("description", description),
        ("lang", lang.name().to_string()),
        ("source", source.to_string()),
        ("componentize_py", COMPONENTIZE_PY.to_string()),
        ("componentize_js", COMPONENTIZE_JS.to_string()),
        ("toolchain_steps", steps.to_string()),
        ("rust_for", if interpreter { "" } else { " and the pack" }.to_string()),
        (
            "rust_targets",
            if interpreter { "" } else { " --target wasm32-wasip2" }.to_string(),
        ),
        ("compile_seconds", if interpreter { "300" } else { "60" }.to_string()),
        ("prerequisites", prerequisites(lang)),
        ("compile_note", compile_note(interpreter)),
        ("extra_files", extra_files(lang)),
    ];
    let mut written = Vec::new();
    for f in COMMON.iter().chain(files) {
        let text = if f.path.starts_with("wit/") {
            f.text.to_string()
        } else {
            substitute(f.text, &vars)
        };
        write(&request.dir, f, &text)?;
        written.push(f.path.to_string());
    }
    Ok(NewProject {
        dir: request.dir.clone(),
        descriptor,
        files: written,
        build: "./build.sh",
        output: format!("{}.wasm", request.name),
    })
}

fn check_name(name: &str) -> Result<(), NewError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_ok || !rest_ok || name.len() > 64 || name.ends_with('-') {
        return Err(NewError::Name(name.to_string()));
    }
    Ok(())
}

fn substitute(template: &str, vars: &[(&str, String)]) -> String {
    let mut text = template.to_string();
    for (key, value) in vars {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    text
}

fn write(dir: &Path, f: &File, text: &str) -> Result<(), NewError> {
    let path = dir.join(f.path);
    let error = |source| NewError::Write {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    files::write_atomic(&path, text.as_bytes(), if f.executable { 0o755 } else { 0o644 }).map_err(error)
}

fn prerequisites(lang: Lang) -> String {
    match lang {
        Lang::Rust => "Needs rustup: `rust-toolchain.toml` brings the `wasm32-wasip2` target.".to_string(),
        Lang::Python => format!(
            "Needs componentize-py {COMPONENTIZE_PY} on the PATH (`python3 -m venv .venv && .venv/bin/pip \
             install -r requirements-build.txt && export PATH=$PWD/.venv/bin:$PATH`), or set \
             `COMPONENTIZE_PY` to its path."
        ),
        Lang::Js => format!(
            "Needs Node.js 20 or later and ComponentizeJS {COMPONENTIZE_JS} (`npm install`, pinned in \
             `package.json`)."
        ),
    }
}

fn compile_note(interpreter: bool) -> String {
    if !interpreter {
        return String::new();
    }
    "\nThe pack carries its language's interpreter (12-19 MB of wasm): the host\n\
     compiles it once per machine (cached after that) in 10-20 s; a host built\n\
     with an unoptimized Cranelift may need `--compile-seconds 300` (or\n\
     `ENVPACK_COMPILE_SECONDS=300`) if it says the compile ran out of time.\n"
        .to_string()
}

fn extra_files(lang: Lang) -> String {
    match lang {
        Lang::Rust => "| `Cargo.toml`, `rust-toolchain.toml` | the crate (its own workspace) and its toolchain |\n",
        Lang::Python => "| `requirements-build.txt` | componentize-py, pinned |\n",
        Lang::Js => "| `build.mjs`, `package.json` | the ComponentizeJS call, and its pinned version |\n",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(lang: Lang) -> (tempfile::TempDir, NewProject) {
        let tmp = tempfile::tempdir().unwrap();
        let project = new_pack(&NewPack {
            name: "demo-pack".into(),
            lang,
            dir: tmp.path().join("demo-pack"),
            descriptor: None,
            author: "Someone".into(),
        })
        .unwrap();
        (tmp, project)
    }

    #[test]
    fn every_placeholder_is_filled_and_the_manifest_parses() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let (_tmp, project) = generate(lang);
            for path in &project.files {
                let text = std::fs::read_to_string(project.dir.join(path)).unwrap();
                let open = text.match_indices("{{").filter(|(i, _)| !text[..*i].ends_with('$'));
                assert_eq!(open.count(), 0, "{lang:?} {path} keeps a placeholder:\n{text}");
            }
            let manifest = std::fs::read_to_string(project.dir.join("pack.toml")).unwrap();
            let manifest = envpack_trust::Manifest::from_toml(&manifest).unwrap();
            assert_eq!(manifest.descriptor, "example.deployer.demo-pack@0.1.0");
            assert_eq!(manifest.contract_version, CONTRACT_VERSION);
            let build = project.dir.join("build.sh");
            let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&build).unwrap().permissions());
            assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
        }
    }

    #[test]
    fn refuses_bad_names_and_a_non_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let request = |name: &str, dir: PathBuf| NewPack {
            name: name.into(),
            lang: Lang::Python,
            dir,
            descriptor: None,
            author: "a".into(),
        };
        for bad in ["Demo", "1demo", "de mo", "demo-", "", "de_mo"] {
            let err = new_pack(&request(bad, tmp.path().join("x"))).unwrap_err();
            assert!(matches!(err, NewError::Name(_)), "{bad}: {err}");
        }
        std::fs::write(tmp.path().join("keep"), "x").unwrap();
        let err = new_pack(&request("demo", tmp.path().to_path_buf())).unwrap_err();
        assert!(matches!(err, NewError::Exists(_)), "{err}");
        assert!(tmp.path().join("keep").exists());
    }
}
