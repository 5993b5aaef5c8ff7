//! `host pack push|pull` and `host pack install oci://...` against a real
//! registry on loopback (`common::registry`): by tag and by digest, with and
//! without basic auth, and the failures that must install nothing — a
//! tampered blob, a tampered manifest under a pinned digest, an untrusted
//! signer, a registry that is down.

use std::path::{Path, PathBuf};

use crate::common::registry::{Registry, dead_address};
use crate::common::{LEDGER, Sandbox, p};

/// `host` on the sandbox's state, with no registry credentials but those the
/// test gives (none from the machine's environment or ~/.docker).
fn host(sb: &Sandbox) -> assert_cmd::Command {
    let mut cmd = sb.host();
    cmd.env_remove("ENVPACK_REGISTRY_USERNAME")
        .env_remove("ENVPACK_REGISTRY_PASSWORD")
        .env_remove("ENVPACK_REGISTRY_AUTH_FILE")
        .env("DOCKER_CONFIG", sb.dir.path().join("no-docker-config"));
    cmd
}

fn run(cmd: &mut assert_cmd::Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(cmd: &mut assert_cmd::Command) -> String {
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "{stdout}{stderr}");
    stdout
}

/// A key in the sandbox, trusted for `envpack.*`, and the ledger sealed and signed with it.
fn signed_ledger(sb: &Sandbox) -> PathBuf {
    let key = sb.dir.path().join("key");
    ok(host(sb).args(["keygen", "--out", &p(&key)]));
    trust(sb, &key.with_extension("pub"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/ledger/pack.toml");
    let pack = sb.dir.path().join("ledger.wasm");
    ok(host(sb).args(["pack", "seal", LEDGER, "--manifest", &p(&manifest), "-o", &p(&pack)]));
    ok(host(sb).args(["sign", &p(&pack), "--key", &p(&key)]));
    pack
}

fn trust(sb: &Sandbox, public: &Path) {
    ok(host(sb).args(["trust", "add", &p(public), "--name", "author", "--scope", "envpack.*"]));
}

/// A second operator's state that trusts the publisher's key.
fn consumer(publisher: &Sandbox) -> Sandbox {
    let sb = Sandbox::new();
    trust(&sb, &publisher.dir.path().join("key.pub"));
    sb
}

/// `pin it:` line of `pack push`: the reference by manifest digest.
fn pinned(push_output: &str) -> String {
    push_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("pin it:"))
        .unwrap_or_else(|| panic!("no pin in {push_output}"))
        .trim()
        .to_string()
}

fn installed(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = ok(host(sb).args(["pack", "list", "--json"]));
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn nothing_installed(sb: &Sandbox) {
    assert!(installed(sb).is_empty(), "something was installed");
    let incoming = sb.state_dir().join("incoming");
    let left = std::fs::read_dir(&incoming).map_or(0, |d| d.count());
    assert_eq!(left, 0, "a pulled pack was left in {}", incoming.display());
}

#[test]
fn push_then_install_by_tag_and_pull_by_digest() {
    let publisher = Sandbox::new();
    let pack = signed_ledger(&publisher);
    let registry = Registry::start(publisher.dir.path());
    let tag = registry.oci("packs/ledger:1.0.0");
    let pushed = ok(host(&publisher).args(["pack", "push", &p(&pack), &tag]));
    let bytes = std::fs::read(&pack).unwrap();
    let sha = sha256_hex(&bytes);
    assert!(pushed.contains(&format!("pack:     sha256:{sha}")), "{pushed}");

    // The manifest is the one wasm-pkg-tools writes: wasm config, one application/wasm layer.
    let by_digest = pinned(&pushed);
    let manifest_digest = by_digest.rsplit_once('@').unwrap().1;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.blob_file(manifest_digest)).unwrap()).unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["digest"], format!("sha256:{sha}"));
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(registry.blob_file(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(config["os"], "wasip2");
    assert!(
        config["component"]["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "envpack:deployer/deployer@1.1.0"),
        "{config}"
    );

    // Install by tag: the same pack, under the same digest an environment pins.
    let sb = consumer(&publisher);
    let out = ok(host(&sb).args(["pack", "install", &tag]));
    assert!(
        out.contains(&format!("installed envpack.deployer.ledger@1.0.0 ({sha})")),
        "{out}"
    );
    assert_eq!(installed(&sb)[0]["digest"], sha);
    ok(host(&sb).args([
        "env",
        "create",
        "dev",
        "--deployer",
        "envpack.deployer.ledger@^1",
        "--capability",
        "log,kv",
    ]));

    // Pull by digest: byte for byte the pushed file.
    let pulled = sb.dir.path().join("pulled.wasm");
    ok(host(&sb).args(["pack", "pull", &by_digest, "-o", &p(&pulled)]));
    assert_eq!(std::fs::read(&pulled).unwrap(), bytes);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn basic_auth_comes_from_the_environment_or_a_docker_config_never_arguments() {
    let publisher = Sandbox::new();
    let pack = signed_ledger(&publisher);
    let registry = Registry::start_with_auth(publisher.dir.path(), "alice", "s3cret");
    let tag = registry.oci("packs/ledger:1");

    let (code, _, stderr) = run(host(&publisher).args(["pack", "push", &p(&pack), &tag]));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(
        stderr.contains("ENVPACK_REGISTRY_USERNAME"),
        "the hint names the variables: {stderr}"
    );
    let (code, _, stderr) = run(host(&publisher)
        .env("ENVPACK_REGISTRY_USERNAME", "alice")
        .env("ENVPACK_REGISTRY_PASSWORD", "wrong")
        .args(["pack", "push", &p(&pack), &tag]));
    assert_eq!(code, 5, "{stderr}");
    assert!(!stderr.contains("wrong"), "the password is never printed: {stderr}");
    ok(host(&publisher)
        .env("ENVPACK_REGISTRY_USERNAME", "alice")
        .env("ENVPACK_REGISTRY_PASSWORD", "s3cret")
        .args(["pack", "push", &p(&pack), &tag]));

    let sb = consumer(&publisher);
    let (code, _, stderr) = run(host(&sb).args(["pack", "install", &tag]));
    assert_eq!(code, 5, "{stderr}");
    nothing_installed(&sb);
    let auth_file = sb.dir.path().join("auth.json");
    let token = "YWxpY2U6czNjcmV0"; // base64 of alice:s3cret, as `docker login` writes it
    std::fs::write(
        &auth_file,
        format!(r#"{{"auths": {{"{}": {{"auth": "{token}"}}}}}}"#, registry.address),
    )
    .unwrap();
    ok(host(&sb)
        .env("ENVPACK_REGISTRY_AUTH_FILE", &auth_file)
        .args(["pack", "install", &tag]));
    assert_eq!(installed(&sb).len(), 1);
}

#[test]
fn a_tampered_blob_or_manifest_installs_nothing() {
    let publisher = Sandbox::new();
    let pack = signed_ledger(&publisher);
    let registry = Registry::start(publisher.dir.path());
    let tag = registry.oci("packs/ledger:1.0.0");
    let pushed = ok(host(&publisher).args(["pack", "push", &p(&pack), &tag]));
    let by_digest = pinned(&pushed);
    let sha = sha256_hex(&std::fs::read(&pack).unwrap());
    let sb = consumer(&publisher);

    // One byte of the pack changed in the registry's storage: it serves
    // bytes whose digest is not the manifest's.
    let blob = registry.blob_file(&format!("sha256:{sha}"));
    let original = std::fs::read(&blob).unwrap();
    let mut tampered = original.clone();
    tampered[original.len() / 2] ^= 0x01;
    std::fs::write(&blob, &tampered).unwrap();
    for reference in [&tag, &by_digest] {
        let (code, _, stderr) = run(host(&sb).args(["pack", "install", reference]));
        assert_eq!(code, 6, "{reference}: {stderr}");
        assert!(
            stderr.contains("the pack layer the registry served has digest"),
            "{stderr}"
        );
        assert!(stderr.contains("nothing was installed"), "{stderr}");
        nothing_installed(&sb);
    }
    let out = sb.dir.path().join("pulled.wasm");
    let (code, _, _) = run(host(&sb).args(["pack", "pull", &tag, "-o", &p(&out)]));
    assert_eq!(code, 6);
    assert!(!out.exists(), "pull wrote a tampered pack");
    std::fs::write(&blob, &original).unwrap();

    // The manifest changed under a pinned digest.
    let manifest_digest = by_digest.rsplit_once('@').unwrap().1;
    let manifest_blob = registry.blob_file(manifest_digest);
    let text = std::fs::read_to_string(&manifest_blob).unwrap();
    std::fs::write(&manifest_blob, text.replace("envpack authors", "envpack auth0rs")).unwrap();
    let (code, _, stderr) = run(host(&sb).args(["pack", "install", &by_digest]));
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("the manifest the registry served has digest"),
        "{stderr}"
    );
    nothing_installed(&sb);
}

#[test]
fn an_untrusted_signer_is_refused_as_for_a_file() {
    let publisher = Sandbox::new();
    let pack = signed_ledger(&publisher);
    let registry = Registry::start(publisher.dir.path());
    let tag = registry.oci("packs/ledger:1.0.0");
    ok(host(&publisher).args(["pack", "push", &p(&pack), &tag]));
    let stranger = Sandbox::new();
    let out = stranger.dir.path().join("pulled.wasm");
    let (code, _, stderr) = run(host(&stranger).args(["pack", "pull", &tag, "-o", &p(&out)]));
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("unknown keys"), "{stderr}");
    assert!(!out.exists());
    let (code, _, stderr) = run(host(&stranger).args(["pack", "install", &tag]));
    assert_eq!(code, 6, "{stderr}");
    nothing_installed(&stranger);
    // An unsigned pack is not pushed at all.
    let (code, _, stderr) = run(host(&publisher).args(["pack", "push", LEDGER, &registry.oci("packs/raw:1")]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("only sealed and signed packs are pushed"), "{stderr}");
}

#[test]
fn a_registry_that_is_down_installs_nothing() {
    let publisher = Sandbox::new();
    let pack = signed_ledger(&publisher);
    let tag = format!("oci://{}/packs/ledger:1.0.0", dead_address());
    let (code, _, stderr) = run(host(&publisher).args(["pack", "push", &p(&pack), &tag]));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("cannot reach the registry"), "{stderr}");
    let sb = consumer(&publisher);
    let (code, _, stderr) = run(host(&sb).args(["pack", "install", &tag]));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("cannot reach the registry"), "{stderr}");
    assert!(stderr.contains("nothing was installed"), "{stderr}");
    nothing_installed(&sb);
    let (code, _, stderr) = run(host(&sb).args(["pack", "install", "oci://127.0.0.1:1/Bad:tag"]));
    assert_eq!(code, 2, "{stderr}");
}
