//! For pack authors: `host new` projects in Rust, Python and JavaScript
//! build with their own build command and pass `host conformance --profile
//! extended` as generated (one run per language, JUnit output as their
//! workflow asks), and their workflow passes actionlint; the Python and
//! JavaScript static-site packs of `packs/` publish a site that a real nginx
//! serves, and move it with the traffic.
//!
//! The toolchains are the pinned ones `scripts/setup-authoring` installs
//! under `target/authoring` (scripts/test runs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Sandbox, p};

/// Interpreter packs are 12-19 MB of wasm: one conformance run, compile
/// included, stays well within this on 2 busy cores.
const SLOW: Duration = Duration::from_secs(900);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn authoring(path: &str) -> PathBuf {
    let path = repo().join("target/authoring").join(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup-authoring (scripts/test does)",
        path.display()
    );
    path
}

/// Runs a build command, asserting success.
fn build(mut cmd: Command, what: &str) {
    // Nothing of the test's own cargo run leaks into an author's build.
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "building {what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_with(dir: &Path) -> String {
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

/// `host new demo --lang LANG`, its build command, then the extended bench
/// as its workflow runs it.
fn new_project_passes_extended(lang: &str) {
    let sb = Sandbox::new();
    let dir = sb.dir.path().join("demo");
    let out = sb
        .host()
        .args(["new", "demo", "--lang", lang, "--dir", &p(&dir)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("./build.sh") && printed.contains("host conformance demo.wasm"),
        "{printed}"
    );

    // The workflow is valid GitHub Actions syntax.
    let workflow = dir.join(".github/workflows/pack.yml");
    let lint = Command::new(repo().join("scripts/lint-workflow"))
        .arg(&workflow)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "actionlint: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    let mut cmd = Command::new(dir.join("build.sh"));
    cmd.current_dir(&dir);
    match lang {
        "python" => {
            cmd.env("PATH", path_with(&authoring("py-venv/bin")));
        }
        "js" => {
            // What `npm install` would put there: the pinned ComponentizeJS.
            std::os::unix::fs::symlink(authoring("js/node_modules"), dir.join("node_modules")).unwrap();
        }
        _ => {
            // A target directory kept between runs (the first build fetches and compiles wit-bindgen).
            cmd.env("CARGO_TARGET_DIR", repo().join("target/new-rust-pack"));
        }
    }
    build(cmd, &format!("the generated {lang} project"));
    let pack = dir.join("demo.wasm");
    assert!(pack.exists(), "the build wrote no demo.wasm");

    let report = dir.join("conformance.xml");
    let out = sb
        .host()
        .current_dir(&dir)
        .args([
            "conformance",
            "demo.wasm",
            "--profile",
            "extended",
            "--format",
            "junit",
            "--out",
        ])
        .arg(&report)
        .timeout(SLOW)
        .output()
        .unwrap();
    let junit = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        out.status.success(),
        "the generated {lang} pack failed conformance: {junit}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(junit.contains("failures=\"0\""), "{junit}");
}

#[test]
fn a_new_rust_pack_builds_and_passes_extended() {
    new_project_passes_extended("rust");
}

#[test]
fn a_new_python_pack_builds_and_passes_extended() {
    new_project_passes_extended("python");
}

#[test]
fn a_new_js_pack_builds_and_passes_extended() {
    new_project_passes_extended("js");
}

/// The commands the static-site packs need granted.
const SITE_GRANTS: [&str; 8] = [
    "--allow-run",
    "tar -xzf {path} -C {path} --no-same-owner",
    "--allow-run",
    "mkdir -p {path}",
    "--allow-run",
    "rm -rf {path}",
    "--allow-run",
    "mv {path} {path}",
];

fn site_tarball(sb: &Sandbox, name: &str, body: &str) -> (PathBuf, String) {
    let src = sb.dir.path().join(format!("{name}-src"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("index.html"), body).unwrap();
    let tarball = sb.dir.path().join(format!("{name}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("index.html")
        .status()
        .unwrap();
    assert!(status.success());
    use sha2::Digest;
    let digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(std::fs::read(&tarball).unwrap()))
    );
    (tarball, digest)
}

/// nginx serving `root` on a free loopback port, with its own config; killed on drop.
struct Nginx {
    child: std::process::Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, root: &Path) -> Nginx {
        let port = crate::common::free_port();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        // As root, workers read the site as root (the pack's files belong to the environment's own uid).
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        let config = format!(
            "{user}daemon off;\nworker_processes 1;\npid {pid};\nerror_log {log} error;\nevents {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n proxy_temp_path {tmp}/proxy;\n\
             fastcgi_temp_path {tmp}/fastcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port};\n  root {root};\n }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            log = prefix.join("logs/error.log").display(),
            tmp = prefix.display(),
            root = root.display(),
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: run scripts/setup-system");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        crate::common::wait_for("nginx to listen", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Nginx { child, port }
    }

    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

impl Drop for Nginx {
    /// SIGTERM: the master stops its worker before it exits (a SIGKILLed
    /// master leaves its worker serving, reparented to init).
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a static-site pack, installs it signed (core conformance, with
/// its grants and a site as the fixtures' artifact), then publishes two
/// revisions through the operator commands and reads them back from nginx.
fn static_site_is_served(name: &str, build_cmd: Command) {
    let sb = Sandbox::new();
    let built = sb.dir.path().join(format!("{name}.wasm"));
    let mut cmd = build_cmd;
    cmd.arg(&built);
    build(cmd, name);

    let ok = |args: &[&str]| {
        let out = sb.host().args(args).timeout(SLOW).output().unwrap();
        assert!(
            out.status.success(),
            "host {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let key = sb.dir.path().join("key");
    ok(&["keygen", "--out", &p(&key)]);
    ok(&[
        "trust",
        "add",
        &p(&key.with_extension("pub")),
        "--name",
        "author",
        "--scope",
        "envpack.*",
    ]);
    let sealed = sb.dir.path().join(format!("{name}.signed.wasm"));
    let manifest = repo().join(format!("packs/{name}/pack.toml"));
    ok(&[
        "pack",
        "seal",
        &p(&built),
        "--manifest",
        &p(&manifest),
        "-o",
        &p(&sealed),
    ]);
    ok(&["sign", &p(&sealed), "--key", &p(&key)]);

    let (v1, d1) = site_tarball(&sb, "v1", "<h1>site v1</h1>\n");
    let (v2, d2) = site_tarball(&sb, "v2", "<h1>site v2</h1>\n");
    let mut install = vec!["pack", "install", &p(&sealed), "--artifact", &p(&v1), "--cases", "6"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    install.extend(SITE_GRANTS.map(String::from));
    let install: Vec<&str> = install.iter().map(String::as_str).collect();
    let out = ok(&install);
    assert!(out.contains("0 failed"), "{out}");

    let requirement = format!("envpack.deployer.{name}@^1");
    let mut create = vec![
        "env",
        "create",
        "site",
        "--deployer",
        &requirement,
        "--capability",
        "log,kv,process",
    ];
    create.extend(SITE_GRANTS);
    ok(&create);
    let publish = |id: &str, tarball: &Path, digest: &str| {
        let location = format!("file://{}", tarball.display());
        ok(&[
            "revision",
            "stage",
            "site",
            "web",
            "--id",
            id,
            "--digest",
            digest,
            "--location",
            &location,
        ]);
        ok(&["revision", "warm", "site", id]);
        ok(&["traffic", "set", "site", "web", &format!("{id}=10000")]);
    };
    publish("R1", &v1, &d1);

    let work: Vec<PathBuf> = std::fs::read_dir(sb.state_dir().join("work"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("env-")))
        .collect();
    assert_eq!(work.len(), 1, "one environment work directory: {work:?}");
    let nginx = Nginx::start(sb.dir.path(), &work[0].join("site-web"));
    let page = nginx.get("/index.html");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("site v1"), "{page}");

    publish("R2", &v2, &d2);
    let page = nginx.get("/index.html");
    assert!(page.contains("site v2"), "after R2 took the traffic: {page}");
    ok(&["traffic", "set", "site", "web", "R1=10000", "R2=0"]);
    let page = nginx.get("/index.html");
    assert!(page.contains("site v1"), "after the traffic went back to R1: {page}");
}

#[test]
fn the_python_static_site_pack_publishes_what_nginx_serves() {
    let mut cmd = Command::new(repo().join("packs/static-site-py/build.sh"));
    cmd.env("COMPONENTIZE_PY", authoring("py-venv/bin/componentize-py"));
    static_site_is_served("static-site-py", cmd);
}

#[test]
fn the_js_static_site_pack_publishes_what_nginx_serves() {
    authoring("js/node_modules/@bytecodealliance/componentize-js");
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("packs/static-site-js/build.mjs"));
    static_site_is_served("static-site-js", cmd);
}
