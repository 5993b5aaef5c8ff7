//! Containment, attacked: the hostile pack `packs/test-escape`, signed and
//! installed, runs one attack per test through the real CLI, and each test
//! judges from outside — files' bytes and modes, `/proc`, the secrets file,
//! `state.db` — never from what the pack says of itself.
//!
//! A "stranger's script" is the revision's artifact: a shell script the
//! host places executable and the pack runs under `--allow-run @work-dir`,
//! the grant that trusts a pack as much as a shell. What it reaches is what
//! any program a pack runs could reach.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::common::{Sandbox, install_signed, json, ok, operator, p, wait_for};
use envpack_test_packs::TEST_ESCAPE;

fn root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Removes an environment (and so kills every process it has) when a test
/// ends, passing or failing.
struct Teardown<'a>(&'a Sandbox, &'static str);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = self.0.host().args(["env", "remove", self.1, "--force"]).output();
    }
}

/// An operator state with the escape pack installed and `env` bound to it
/// with `grants` and the attack's `settings`.
fn escape_env(sb: &Sandbox, env: &str, grants: &[&str], settings: &[(&str, String)]) {
    if !sb.dir.path().join("escape.wasm").exists() {
        install_signed(sb, TEST_ESCAPE, "packs/test-escape/pack.toml", "escape");
    }
    let mut args: Vec<String> = [
        "env",
        "create",
        env,
        "--deployer",
        "envpack.test.escape@^0.1",
        "--capability",
        "log,kv,process",
    ]
    .map(String::from)
    .to_vec();
    args.extend(grants.iter().map(|g| g.to_string()));
    for (key, value) in settings {
        args.push("--setting".into());
        args.push(format!("{key}={value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(sb, &args);
}

/// `revision stage ENV web --id ID` with `artifact` (its digest computed):
/// the attack runs. Returns (exit code, the outcome detail or the error).
fn attack(sb: &Sandbox, env: &str, id: &str, artifact: &Path) -> (Option<i32>, String) {
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(artifact).unwrap()))
    );
    let location = format!("file://{}", p(artifact));
    let out = sb
        .host()
        .args([
            "revision",
            "stage",
            env,
            "web",
            "--id",
            id,
            "--digest",
            &digest,
            "--location",
            &location,
        ])
        .output()
        .unwrap();
    let events = json(sb, &["events", env, "--json"]);
    let reason = events
        .as_array()
        .and_then(|e| e.last())
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let text = format!("{reason}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// A file in the sandbox holding `text`; its path.
fn file(sb: &Sandbox, name: &str, text: &str) -> PathBuf {
    let path = sb.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A file's bytes and mode, or nothing if it is not there.
type Print = Option<(Vec<u8>, u32)>;

/// Bytes and mode of `path`, to compare before and after an attack.
fn fingerprint(path: &Path) -> Print {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((std::fs::read(path).unwrap_or_default(), meta.permissions().mode()))
}

/// The files an attacker would go for, fingerprinted.
fn crown_jewels(sb: &Sandbox) -> Vec<(PathBuf, Print)> {
    let state = sb.state_dir();
    ["state.db", "secrets.json", "trust.json"]
        .iter()
        .map(|name| state.join(name))
        .chain([sb.dir.path().join("key")])
        .map(|path| {
            let print = fingerprint(&path);
            (path, print)
        })
        .collect()
}

fn assert_untouched(before: &[(PathBuf, Print)]) {
    for (path, print) in before {
        if path.ends_with("state.db") {
            continue; // The host itself writes it; what a pack could do is checked by its readers.
        }
        assert_eq!(&fingerprint(path), print, "{} changed", path.display());
    }
}

/// Processes (pid, uid) whose cwd is under `dir`, from `/proc`.
fn processes_under(dir: &Path) -> Vec<(u32, u32)> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir)))
        .filter_map(|pid| Some((pid, uid_of(pid)?)))
        .collect()
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().next()?.parse().ok())
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Every live process of uid `uid`.
fn processes_of(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| uid_of(*pid) == Some(uid) && !status_field(*pid, "State:").starts_with('Z'))
        .collect()
}

#[test]
fn a_refused_or_ungranted_environment_variable_never_reaches_a_program() {
    let sb = operator();
    // Refused by name even when an operator tries to grant it.
    sb.host()
        .args([
            "env",
            "create",
            "x",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--allow-env",
            "LD_PRELOAD",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("LD_PRELOAD"))
        .stderr(predicates::str::contains("refused by name"));
    for (n, (var, value, expected)) in [
        ("LD_PRELOAD", "./evil.so", "refused by name"),
        ("LD_LIBRARY_PATH", ".", "refused by name"),
        ("PATH", ".", "refused by name"),
        ("BASH_ENV", "./x.sh", "refused by name"),
        ("GCONV_PATH", ".", "refused by name"),
        ("APP_TOKEN", "x", "not granted"),
    ]
    .iter()
    .enumerate()
    {
        let env = format!("e{n}");
        escape_env(
            &sb,
            &env,
            &["--allow-run", "sleep {number}", "--allow-env", "PORT"],
            &[
                ("mode", "spawn".into()),
                ("cmd", "sleep".into()),
                ("args", r#"["30"]"#.into()),
                ("env", format!(r#"{{"{var}": "{value}"}}"#)),
            ],
        );
        // The spawn is refused (the pack reports the refusal in its outcome).
        let (_, text) = attack(&sb, &env, "R1", &file(&sb, "a", "x"));
        assert!(text.contains(var) && text.contains(expected), "{var}: {text}");
        assert!(
            processes_under(&sb.state_dir().join("work")).is_empty(),
            "{var}: a program ran"
        );
    }
    // A granted variable is given.
    escape_env(
        &sb,
        "fine",
        &["--allow-run", "sleep {number}", "--allow-env", "PORT"],
        &[
            ("mode", "spawn".into()),
            ("cmd", "sleep".into()),
            ("args", r#"["30"]"#.into()),
            ("env", r#"{"PORT": "8080"}"#.into()),
        ],
    );
    let (code, text) = attack(&sb, "fine", "R1", &file(&sb, "a", "x"));
    assert_eq!(code, Some(0), "{text}");
    let running = processes_under(&sb.state_dir().join("work"));
    assert_eq!(running.len(), 1, "{running:?}");
    let environ = std::fs::read(format!("/proc/{}/environ", running[0].0)).unwrap();
    let vars: BTreeSet<String> = environ
        .split(|b| *b == 0)
        .filter_map(|v| std::str::from_utf8(v).ok()?.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    assert!(vars.contains("PORT"), "{vars:?}");
    assert!(!vars.iter().any(|v| v.starts_with("LD_")), "{vars:?}");
    ok(&sb, &["env", "remove", "fine", "--force"]);
}

#[test]
fn a_program_takes_only_the_arguments_its_grant_names() {
    let sb = operator();
    let pwned = sb.dir.path().join("pwned");
    let grant = ["--allow-run", "tar -xzf {path} -C {path} --no-same-owner"];
    let attempts: [(&str, String); 4] = [
        (
            "exec",
            format!(
                r#"["-cf", "x.tar", "--checkpoint=1", "--checkpoint-action=exec=touch {}", "."]"#,
                p(&pwned)
            ),
        ),
        ("read", r#"["-cf", "stolen.tar", "/etc/passwd"]"#.into()),
        (
            "outside",
            r#"["-xzf", "../../../../secrets.json", "-C", ".", "--no-same-owner"]"#.into(),
        ),
        (
            "option",
            r#"["-xzf", "--to-command=sh", "-C", ".", "--no-same-owner"]"#.into(),
        ),
    ];
    for (name, args) in attempts {
        escape_env(
            &sb,
            name,
            &grant,
            &[("mode", "spawn".into()), ("cmd", "tar".into()), ("args", args.clone())],
        );
        let (_, text) = attack(&sb, name, "R1", &file(&sb, "a", "x"));
        assert!(text.contains("matches no grant of tar"), "{name}: {text}");
    }
    assert!(!pwned.exists(), "tar ran a command");
}

/// A stranger's shell script, run as the revision's program: it tries to
/// read and write what it must not, to reach ports not granted, to leave
/// daemons behind and to fork without bound; it writes what it managed to
/// `report` in its own directory, and `done` when finished.
const STRANGER: &str = r#"#!/bin/sh
report=./report
: > "$report"
id -u > ./uid
for f in "$STATE/state.db" "$STATE/secrets.json" "$STATE/trust.json" "$KEY" /etc/shadow; do
  if cat "$f" > /dev/null 2>&1; then echo "READ $f" >> "$report"; fi
done
for d in /root "$STATE" "$STATE/work" "$STATE/packs" "$OTHER" ..; do
  if ls "$d/" > /dev/null 2>&1; then echo "LISTED $d" >> "$report"; fi
done
for f in "$STATE/pwned" "$STATE/work/pwned" /etc/pwned /tmp/envpack-pwned-$$ "$OTHER/pwned" ../pwned; do
  if (echo pwned > "$f") 2> /dev/null; then echo "WROTE $f" >> "$report"; fi
done
if python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=2)" 2> /dev/null; then
  echo "CONNECTED $PORT" >> "$report"
fi
if python3 -c "import socket; socket.socket().bind(('127.0.0.1', $PORT2))" 2> /dev/null; then
  echo "BOUND $PORT2" >> "$report"
fi
if kill -0 1 2> /dev/null; then echo "SIGNALLED 1" >> "$report"; fi
setsid sh -c 'sleep 300 & sleep 300' > /dev/null 2>&1 &
# A shell gives up at the first fork refused: python forks until refused.
python3 -c '
import os, time
for i in range(300):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(300)
        os._exit(0)
' 2> /dev/null &
sleep 1
echo "forked" >> "$report"
touch ./done
exec sleep 300
"#;

#[test]
fn a_strangers_script_runs_as_nobody_reaches_nothing_outside_its_revision_and_dies_with_it() {
    let sb = operator();
    sb.host()
        .env("CANARY", "canary-3f9c")
        .args(["secret", "set", "CANARY", "--from-env", "CANARY"])
        .assert()
        .success();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let free = crate::common::free_port();
    let other = sb.state_dir().join("work");
    let before = crown_jewels(&sb);
    escape_env(
        &sb,
        "stranger",
        &[
            "--allow-run",
            "@work-dir",
            "--allow-env",
            "STATE",
            "--allow-env",
            "KEY",
            "--allow-env",
            "OTHER",
            "--allow-env",
            "PORT*",
        ],
        &[
            ("mode", "spawn".into()),
            ("fetch", "1".into()),
            ("cmd", "artifact".into()),
            ("cwd", "revisions/S1".into()),
            (
                "env",
                format!(
                    r#"{{"STATE": "{}", "KEY": "{}", "OTHER": "{}", "PORT": "{port}", "PORT2": "{free}"}}"#,
                    p(&sb.state_dir()),
                    p(&sb.dir.path().join("key")),
                    p(&other)
                ),
            ),
        ],
    );
    let _teardown = Teardown(&sb, "stranger");
    let script = file(&sb, "stranger.sh", STRANGER);
    let (code, text) = attack(&sb, "stranger", "S1", &script);
    assert_eq!(code, Some(0), "{text}");
    let dir = sb
        .state_dir()
        .join("work")
        .read_dir()
        .unwrap()
        .flatten()
        .map(|e| e.path().join("revisions/S1"))
        .find(|d| d.is_dir())
        .expect("the revision's directory");
    let logs = dir.parent().unwrap().parent().unwrap().join("logs");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("done").exists() {
        assert!(
            std::time::Instant::now() < until,
            "the script never finished; its stderr: {}; its directory: {:?}",
            std::fs::read_to_string(logs.join("p1.stderr")).unwrap_or_default(),
            std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let report = std::fs::read_to_string(dir.join("report")).unwrap();
    assert!(report.lines().all(|l| l == "forked"), "the script reached: {report}");
    assert!(listener.accept().is_err(), "a connection reached an ungranted port");
    assert_untouched(&before);
    assert!(!Path::new("/etc/pwned").exists());
    let running = processes_under(&dir);
    assert!(!running.is_empty());
    let uid = running[0].1;
    if root() {
        assert_ne!(uid, 0, "the program runs as its environment's own uid");
        assert_eq!(
            std::fs::read_to_string(dir.join("uid")).unwrap().trim(),
            uid.to_string()
        );
        // Its forks are capped by its control group (and its uid's limit).
        let all = processes_of(uid);
        assert!(all.len() <= 128, "{} processes of uid {uid}", all.len());
        assert!(all.len() > 10, "the forks ran: {}", all.len());
    }
    // A fork may end between the listing and the reading: only live ones count.
    let flags: Vec<(u32, String)> = running
        .iter()
        .filter_map(|(pid, _)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let flag = status
                .lines()
                .find_map(|l| l.strip_prefix("NoNewPrivs:"))?
                .trim()
                .to_string();
            Some((*pid, flag))
        })
        .collect();
    assert!(
        !flags.is_empty(),
        "every process of the revision ended before it was read"
    );
    assert!(flags.iter().all(|(_, flag)| flag == "1"), "{flags:?}");
    // Archived, the revision keeps no process: the daemon and the forks go too.
    ok(&sb, &["revision", "archive", "stranger", "S1"]);
    if root() {
        wait_for("every process of the environment to end", || {
            processes_of(uid).is_empty()
        });
    } else {
        wait_for("the revision's processes to end", || processes_under(&dir).is_empty());
    }
}

#[test]
fn the_hosts_own_writes_never_follow_a_link_out_of_the_work_directory() {
    let sb = operator();
    let victim = file(&sb, "victim", "ORIGINAL");
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let victim_dir = sb.dir.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    let before = (fingerprint(&victim), crown_jewels(&sb));
    // Links are relative to their own directory: from state/work/NAME/logs,
    // `../../../` is the state directory and `../../../../` the sandbox.
    let cases: [(&str, &str, &str); 4] = [
        ("log-file", "logs/p1.stdout", "../../../../victim"),
        ("log-dir", "logs", "../../../victim-dir"),
        ("state-db", "logs/p1.stderr", "../../../state.db"),
        ("trust", "logs/p1.stdout", "../../../trust.json"),
    ];
    for (name, link, to) in cases {
        escape_env(
            &sb,
            name,
            &["--allow-run", "echo {any} ..."],
            &[
                ("mode", "spawn".into()),
                ("cmd", "echo".into()),
                ("args", r#"["PWNED"]"#.into()),
                ("link", link.into()),
                ("to", to.into()),
            ],
        );
        // Refused or written beneath the work directory: either way, not there.
        let (_, text) = attack(&sb, name, "R1", &file(&sb, "a", "x"));
        assert_eq!(fingerprint(&victim), before.0, "{name}: the victim changed: {text}");
        assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 0, "{name}: {text}");
    }
    // Artifact placement through a link out: refused, nothing written there.
    escape_env(
        &sb,
        "artifact",
        &["--allow-run", "true"],
        &[
            ("mode", "fetch".into()),
            ("link", "revisions/R1".into()),
            ("to", "../../../../victim-dir".into()),
        ],
    );
    let (_, text) = attack(&sb, "artifact", "R1", &file(&sb, "a", "x"));
    assert!(!victim_dir.join("artifact").exists(), "{text}");
    assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 0, "{text}");
    assert_eq!(fingerprint(&victim), before.0, "the victim file changed");
    assert_untouched(&before.1);
    // Every command still works: the database and trust store are whole.
    ok(&sb, &["env", "list"]);
    ok(&sb, &["trust", "list"]);
}

#[test]
fn a_changed_store_entry_is_caught_when_it_is_placed() {
    let sb = operator();
    let artifact = file(&sb, "app", "#!/bin/sh\necho hello\n");
    for env in ["one", "two"] {
        escape_env(&sb, env, &["--allow-run", "true"], &[("mode", "fetch".into())]);
    }
    let (code, text) = attack(&sb, "one", "R1", &artifact);
    assert_eq!(code, Some(0), "{text}");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&artifact).unwrap(),
    ));
    let stored = sb.state_dir().join("artifacts").join(&digest);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o444,
        "store entries are read-only"
    );
    // Whoever changes the store, the next placement notices.
    std::fs::set_permissions(&stored, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&stored, "#!/bin/sh\necho POISONED\n").unwrap();
    let (_, text) = attack(&sb, "two", "R1", &artifact);
    assert!(text.contains("no longer has that digest"), "{text}");
    assert!(!stored.exists(), "the changed entry is removed");
}

#[test]
fn no_descriptor_of_the_host_reaches_a_spawned_program() {
    let sb = operator();
    escape_env(
        &sb,
        "fds",
        &["--allow-run", "sleep {number}"],
        &[
            ("mode", "spawn".into()),
            ("cmd", "sleep".into()),
            ("args", r#"["30"]"#.into()),
        ],
    );
    // A descriptor the caller leaves open (as a CI step's pipe is).
    let leak = std::fs::File::open(sb.dir.path().join("key")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&leak);
    // SAFETY: dup2 of an open descriptor to a free number, without CLOEXEC.
    assert_eq!(unsafe { libc::dup2(fd, 77) }, 77);
    let artifact = file(&sb, "a", "x");
    let (code, text) = attack(&sb, "fds", "R1", &artifact);
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(77) };
    assert_eq!(code, Some(0), "{text}");
    let running = processes_under(&sb.state_dir().join("work"));
    let pid = running.first().expect("sleep runs").0;
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(fds, ["0", "1", "2"], "{fds:?}");
    ok(&sb, &["env", "remove", "fds", "--force"]);
}

#[test]
fn a_second_signer_cannot_take_over_an_environment() {
    let sb = operator();
    // A key trusted for any name is refused unless that is said out loud.
    let other = sb.dir.path().join("other");
    ok(&sb, &["keygen", "--out", &p(&other)]);
    sb.host()
        .args(["trust", "add", &p(&other.with_extension("pub")), "--name", "other"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--any-descriptor"));
    ok(
        &sb,
        &[
            "trust",
            "add",
            &p(&other.with_extension("pub")),
            "--name",
            "other",
            "--any-descriptor",
        ],
    );
    // An environment bound to the escape pack 0.1.0, signed by the ops key.
    escape_env(&sb, "victim", &["--allow-run", "true"], &[("mode", "kv".into())]);
    // The other key's holder ships "escape 0.1.9" (the same code, its
    // descriptor patched): it installs, and `victim` does not move.
    let component = crate::common::with_version(&sb, TEST_ESCAPE, "envpack.test.escape", "0.1.0", "0.1.9");
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/test-escape/pack.toml"))
        .unwrap()
        .replace("@0.1.0", "@0.1.9");
    let manifest_path = file(&sb, "hijack.toml", &manifest);
    let hijack = sb.dir.path().join("hijack.wasm");
    ok(
        &sb,
        &[
            "pack",
            "seal",
            &p(&component),
            "--manifest",
            &p(&manifest_path),
            "-o",
            &p(&hijack),
        ],
    );
    ok(&sb, &["sign", &p(&hijack), "--key", &p(&other)]);
    ok(&sb, &["pack", "install", "--force", &p(&hijack)]);
    let (code, text) = attack(&sb, "victim", "H1", &file(&sb, "a", "x"));
    assert_eq!(code, Some(0), "{text}");
    let shown = json(&sb, &["env", "show", "victim", "--json"]);
    assert_eq!(shown["binding"]["descriptor"], "envpack.test.escape@0.1.0", "{shown:#}");
    let pinned = shown["binding"]["pack_digest"].as_str().unwrap().to_string();
    let last = sb.sql_rows("SELECT outcome FROM audit WHERE command = 'revision stage' ORDER BY seq DESC LIMIT 1")[0]
        [0]
    .clone();
    assert!(
        last.contains(&pinned) && last.contains("@0.1.0"),
        "the audit row names the pack that ran: {last}"
    );
    // Only an explicit upgrade moves the pin, and it is audited.
    let upgraded = json(&sb, &["env", "upgrade", "victim", "--json"]);
    assert_eq!(upgraded["changed"], true, "{upgraded:#}");
    assert_eq!(upgraded["to"]["descriptor"], "envpack.test.escape@0.1.9");
    let row =
        sb.sql_rows("SELECT outcome FROM audit WHERE command = 'env upgrade' ORDER BY seq DESC LIMIT 1")[0][0].clone();
    assert!(
        row.contains("@0.1.0") && row.contains("-> envpack.test.escape@0.1.9"),
        "{row}"
    );
}

#[test]
fn removing_or_recreating_an_environment_with_deploy_keys_takes_one() {
    let sb = operator();
    let deploy = sb.dir.path().join("deploy");
    ok(&sb, &["keygen", "--out", &p(&deploy)]);
    let trust = format!("ci={}", p(&deploy.with_extension("pub")));
    ok(
        &sb,
        &[
            "env",
            "create",
            "guarded",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
            "--trust-deploy-key",
            &trust,
        ],
    );
    sb.host()
        .args(["env", "remove", "guarded", "--force"])
        .assert()
        .code(6)
        .stderr(predicates::str::contains("deploy keys"));
    ok(
        &sb,
        &["--deploy-key", &p(&deploy), "env", "remove", "guarded", "--force"],
    );
    // Its keys outlive it: re-creating it without one is refused.
    sb.host()
        .args([
            "env",
            "create",
            "guarded",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
        ])
        .assert()
        .code(6);
    ok(
        &sb,
        &[
            "--deploy-key",
            &p(&deploy),
            "env",
            "create",
            "guarded",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
        ],
    );
}

/// The uid and gid of `envpack-tester`, an ordinary user this test makes
/// (as root, with `useradd`) to run the host as.
fn ordinary_user() -> (u32, u32) {
    let lookup = || {
        let out = std::process::Command::new("id")
            .args(["-u", "envpack-tester"])
            .output()
            .ok()?;
        let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let out = std::process::Command::new("id")
            .args(["-g", "envpack-tester"])
            .output()
            .ok()?;
        let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        Some((uid, gid))
    };
    if let Some(ids) = lookup() {
        return ids;
    }
    // Two tests may make it at once: one wins, the other finds it.
    let _ = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "envpack-tester",
        ])
        .status();
    lookup().expect("useradd made envpack-tester")
}

/// What a pack's program can reach when the host runs as an ordinary user:
/// no uid of its own, no control groups — Landlock and rlimits alone
/// keep it from the state directory, which is its own user's.
const ORDINARY: &str = r#"#!/bin/sh
report=./report
: > "$report"
for f in "$STATE/state.db" "$STATE/secrets.json" "$STATE/trust.json" "$KEY"; do
  if cat "$f" > /dev/null 2>&1; then echo "READ $f" >> "$report"; fi
done
for d in "$STATE" "$STATE/work" "$STATE/packs" ..; do
  if ls "$d/" > /dev/null 2>&1; then echo "LISTED $d" >> "$report"; fi
done
for f in "$STATE/pwned" "$STATE/work/pwned" ../pwned "$KEY"; do
  if (echo pwned >> "$f") 2> /dev/null; then echo "WROTE $f" >> "$report"; fi
done
if python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=2)" 2> /dev/null; then
  echo "CONNECTED $PORT" >> "$report"
fi
touch ./done
exec sleep 300
"#;

#[test]
fn run_as_an_ordinary_user_a_program_is_confined_by_landlock_alone() {
    if !root() {
        // The whole suite already runs unprivileged: the other tests are this one.
        return;
    }
    let (uid, gid) = ordinary_user();
    let sb = Sandbox::new();
    // Everything the user's host needs, in a directory the user owns.
    let home = sb.dir.path().join("user");
    std::fs::create_dir(&home).unwrap();
    let host = home.join("host");
    std::fs::copy(env!("CARGO_BIN_EXE_host"), &host).unwrap();
    let pack = home.join("escape.unsealed.wasm");
    std::fs::copy(TEST_ESCAPE, &pack).unwrap();
    let manifest = home.join("pack.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/test-escape/pack.toml"),
        &manifest,
    )
    .unwrap();
    let script = home.join("ordinary.sh");
    std::fs::write(&script, ORDINARY).unwrap();
    let state = home.join("state");
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}"), &p(sb.dir.path())])
        .status()
        .unwrap();
    assert!(status.success());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let run = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let out = std::process::Command::new(&host)
            .uid(uid)
            .gid(gid)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .env("ENVPACK_STATE_DIR", &state)
            .current_dir(&home)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "host {args:?} as envpack-tester: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = home.join("key");
    run(&["keygen", "--out", &p(&key)]);
    run(&[
        "trust",
        "add",
        &p(&key.with_extension("pub")),
        "--name",
        "me",
        "--scope",
        "envpack.*",
    ]);
    let sealed = home.join("escape.wasm");
    run(&[
        "pack",
        "seal",
        &p(&pack),
        "--manifest",
        &p(&manifest),
        "-o",
        &p(&sealed),
    ]);
    run(&["sign", &p(&sealed), "--key", &p(&key)]);
    run(&["pack", "install", "--force", &p(&sealed)]);
    let env = format!(
        r#"env={{"STATE": "{}", "KEY": "{}", "PORT": "{port}"}}"#,
        p(&state),
        p(&key)
    );
    run(&[
        "env",
        "create",
        "mine",
        "--deployer",
        "envpack.test.escape@^0.1",
        "--capability",
        "log,kv,process",
        "--allow-run",
        "@work-dir",
        "--allow-env",
        "STATE",
        "--allow-env",
        "KEY",
        "--allow-env",
        "PORT",
        "--setting",
        "mode=spawn",
        "--setting",
        "fetch=1",
        "--setting",
        "cmd=artifact",
        "--setting",
        "cwd=revisions/U1",
        "--setting",
        &env,
    ]);
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&script).unwrap()))
    );
    let location = format!("file://{}", p(&script));
    let before = fingerprint(&key);
    run(&[
        "revision",
        "stage",
        "mine",
        "web",
        "--id",
        "U1",
        "--digest",
        &digest,
        "--location",
        &location,
    ]);
    let dir = state
        .join("work")
        .read_dir()
        .unwrap()
        .flatten()
        .map(|e| e.path().join("revisions/U1"))
        .find(|d| d.is_dir())
        .expect("the revision's directory");
    wait_for("the script to finish", || dir.join("done").exists());
    let running = processes_under(&dir);
    // Read before the removal below stops them.
    let no_new_privs: Vec<String> = running
        .iter()
        .map(|(pid, _)| status_field(*pid, "NoNewPrivs:"))
        .collect();
    let report = std::fs::read_to_string(dir.join("report")).unwrap();
    run(&["env", "remove", "mine", "--force"]);
    assert!(report.is_empty(), "as an ordinary user, the script reached: {report}");
    assert!(listener.accept().is_err(), "a connection reached an ungranted port");
    assert_eq!(fingerprint(&key), before);
    assert!(
        !running.is_empty(),
        "the script's sleep should still run in its revision"
    );
    assert!(running.iter().all(|(_, owner)| *owner == uid), "{running:?}");
    assert!(
        no_new_privs.iter().all(|v| v == "1"),
        "NoNewPrivs of {running:?}: {no_new_privs:?}"
    );
}

#[test]
fn a_work_directory_over_its_budget_refuses_verbs_that_add_to_it() {
    let sb = operator();
    let _teardown = Teardown(&sb, "full");
    escape_env(
        &sb,
        "full",
        &["--allow-run", "true", "--disk-mib", "8"],
        &[("mode", "fill".into()), ("fill-mb", "12".into())],
    );
    // The pack writes 12 MiB into an 8 MiB budget: that stage runs (the
    // budget is checked before a verb), the next one is refused.
    let (code, text) = attack(&sb, "full", "F1", &file(&sb, "a", "x"));
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = attack(&sb, "full", "F2", &file(&sb, "b", "y"));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("over its budget of 8 MiB"), "{text}");
    // Verbs that free space still run.
    ok(&sb, &["revision", "archive", "full", "F1"]);
}
