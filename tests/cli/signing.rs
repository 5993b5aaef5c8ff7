//! Signed packs through the real binary: sealing, signing, verification that
//! fails closed with a distinct error per case, openssl interoperability both
//! ways, and the trust store.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{LEDGER, Sandbox};
use envpack_trust::{
    sections,
    sections::{MANIFEST, SIGNATURE},
};
use predicates::str::contains;

/// A sandbox with one key (`k1`), trusted as "author", and the ledger sealed
/// and signed by it at `signed.wasm`.
struct Signed {
    sb: Sandbox,
}

impl Signed {
    fn new() -> Self {
        let signed = Signed { sb: Sandbox::new() };
        signed.keygen("k1");
        signed.ok(&[
            "trust",
            "add",
            &signed.path("k1.pub"),
            "--name",
            "author",
            "--any-descriptor",
        ]);
        signed.ok(&[
            "pack",
            "seal",
            LEDGER,
            "--manifest",
            &manifest(),
            "-o",
            &signed.path("signed.wasm"),
        ]);
        signed.ok(&["sign", &signed.path("signed.wasm"), "--key", &signed.path("k1")]);
        signed
    }

    fn path(&self, name: &str) -> String {
        self.sb.dir.path().join(name).display().to_string()
    }

    fn keygen(&self, name: &str) {
        self.ok(&["keygen", "--out", &self.path(name)]);
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.sb.host().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "host {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `host verify` must refuse `pack` with exit 6 and `needle` in its message.
    fn refused(&self, pack: &str, needle: &str) {
        self.sb
            .host()
            .args(["verify", pack])
            .assert()
            .code(6)
            .stderr(contains(needle));
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).unwrap();
        self.path(name)
    }
}

fn manifest() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packs/ledger/pack.toml")
        .display()
        .to_string()
}

/// Flips one byte at `offset`, keeping it a valid lowercase hex digit when it was one.
fn flip(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[offset] = match out[offset] {
        b'0' => b'1',
        b @ b'1'..=b'9' | b @ b'a'..=b'f' => {
            if b == b'f' {
                b'e'
            } else {
                b + 1
            }
        }
        b => b ^ 0x01,
    };
    out
}

fn custom_data_offset(bytes: &[u8], name: &str) -> usize {
    let section = sections::top_level(bytes)
        .unwrap()
        .into_iter()
        .find(|s| s.custom.as_ref().is_some_and(|(n, _)| n == name))
        .unwrap();
    section.custom.unwrap().1.start
}

#[test]
fn a_signed_pack_verifies_and_names_its_key() {
    let s = Signed::new();
    let out = s.ok(&["verify", &s.path("signed.wasm")]);
    assert!(out.contains("trusted: signed by author"), "{out}");
}

#[test]
fn flipping_any_byte_is_tampering() {
    let s = Signed::new();
    let good = s.bytes("signed.wasm");
    let code = sections::top_level(&good)
        .unwrap()
        .into_iter()
        .find(|sec| sec.custom.is_none())
        .unwrap();
    let manifest_at = custom_data_offset(&good, MANIFEST) + 20;
    let signature_at = good.len() - 10;
    for (what, offset) in [
        ("header", 5),
        ("code", (code.range.start + code.range.end) / 2),
        ("manifest", manifest_at),
        ("signature", signature_at),
    ] {
        let bad = s.write(&format!("bad-{what}.wasm"), &flip(&good, offset));
        if what == "signature" {
            // A flipped signature byte is either a wrong signature or no
            // longer hex at all, depending on the byte: refused both ways.
            let out = s.sb.host().args(["verify", &bad]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(6), "{stderr}");
            assert!(stderr.contains("tampered") || stderr.contains("corrupt"), "{stderr}");
        } else {
            s.refused(&bad, "tampered");
        }
    }
}

#[test]
fn unsigned_unknown_and_revoked_are_each_refused() {
    let s = Signed::new();
    s.ok(&[
        "pack",
        "seal",
        LEDGER,
        "--manifest",
        &manifest(),
        "-o",
        &s.path("unsigned.wasm"),
    ]);
    s.refused(&s.path("unsigned.wasm"), "the pack is unsigned");

    s.keygen("stranger");
    s.ok(&[
        "sign",
        &s.path("unsigned.wasm"),
        "--key",
        &s.path("stranger"),
        "-o",
        &s.path("stranger.wasm"),
    ]);
    s.refused(&s.path("stranger.wasm"), "signed only by unknown keys");

    s.ok(&["trust", "revoke", "author"]);
    s.refused(&s.path("signed.wasm"), "signed by revoked key");
    let list = s.ok(&["trust", "list"]);
    assert!(list.contains("revoked") && list.contains("author"), "{list}");
    s.sb.host()
        .args(["trust", "add", &s.path("k1.pub"), "--name", "again", "--any-descriptor"])
        .assert()
        .code(2)
        .stderr(contains("revocation is permanent"));
}

#[test]
fn a_manifest_that_disagrees_with_describe_is_refused() {
    let s = Signed::new();
    let lying = std::fs::read_to_string(manifest())
        .unwrap()
        .replace("[\"log\", \"kv\"]", "[\"log\"]");
    let lying_path = s.write("lying.toml", lying.as_bytes());
    s.sb.host()
        .args([
            "pack",
            "seal",
            LEDGER,
            "--manifest",
            &lying_path,
            "-o",
            &s.path("lying.wasm"),
        ])
        .assert()
        .code(6)
        .stderr(contains("the manifest and describe disagree on capabilities"));

    // Forge it without `seal` (which refuses), sign it, and verify.
    let manifest = envpack_trust::Manifest::from_toml(&lying).unwrap();
    let forged = manifest.seal(&std::fs::read(LEDGER).unwrap()).unwrap();
    let forged_path = s.write("forged.wasm", &forged);
    s.ok(&["sign", &forged_path, "--key", &s.path("k1")]);
    s.refused(&forged_path, "disagree on capabilities");
}

#[test]
fn two_signatures_each_verify_and_tampering_still_fails() {
    let s = Signed::new();
    s.keygen("k2");
    s.ok(&["sign", &s.path("signed.wasm"), "--key", &s.path("k2")]);
    let both = s.bytes("signed.wasm");
    assert_eq!(sections::custom(&both, SIGNATURE).unwrap().len(), 2);
    // Trusting only the second party is enough; only the author too.
    for key in ["k1.pub", "k2.pub"] {
        s.ok(&["verify", &s.path("signed.wasm"), "--key", &s.path(key)]);
    }
    let bad = s.write("bad.wasm", &flip(&both, 6));
    s.sb.host()
        .args(["verify", &bad, "--key", &s.path("k2.pub")])
        .assert()
        .code(6)
        .stderr(contains("tampered"));
}

#[test]
fn bad_keys_and_signatures_are_clear_errors() {
    let s = Signed::new();
    let not_a_key = s.write("junk.pem", b"hello");
    s.sb.host()
        .args(["verify", &s.path("signed.wasm"), "--key", &not_a_key])
        .assert()
        .code(2)
        .stderr(contains("not an Ed25519 public key"));
    s.sb.host()
        .args(["sign", &s.path("signed.wasm"), "--key", &not_a_key])
        .assert()
        .code(2)
        .stderr(contains("not an Ed25519 private key"));
    let short = s.write("short.sig", b"abc");
    s.sb.host()
        .args(["verify", &s.path("signed.wasm"), "--signature", &short])
        .assert()
        .code(2)
        .stderr(contains("expected exactly 64 bytes"));
    s.sb.host()
        .args(["sign", LEDGER, "--key", &s.path("k1"), "-o", &s.path("x.wasm")])
        .assert()
        .code(2)
        .stderr(contains("has no manifest"));
    s.sb.host()
        .args(["keygen", "--out", &s.path("k1")])
        .assert()
        .code(2)
        .stderr(contains("already exists"));
}

#[cfg(unix)]
#[test]
fn private_keys_and_state_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Signed::new();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(Path::new(&s.path("k1"))), 0o600);
    assert_eq!(mode(&s.sb.state_dir()), 0o700);
    assert_eq!(mode(&s.sb.state_dir().join("trust.json")), 0o600);
}

fn openssl() -> Option<PathBuf> {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED openssl interop: `openssl` is not installed on this machine");
    }
    found.then(|| PathBuf::from("openssl"))
}

fn run_openssl(openssl: &Path, args: &[&str]) -> String {
    let out = Command::new(openssl).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openssl_keys_sign_packs_the_host_verifies() {
    let Some(openssl) = openssl() else { return };
    let s = Signed::new();
    run_openssl(
        &openssl,
        &["genpkey", "-algorithm", "ed25519", "-out", &s.path("o.pem")],
    );
    run_openssl(
        &openssl,
        &["pkey", "-in", &s.path("o.pem"), "-pubout", "-out", &s.path("o.pub")],
    );
    s.ok(&[
        "pack",
        "seal",
        LEDGER,
        "--manifest",
        &manifest(),
        "-o",
        &s.path("o.wasm"),
    ]);
    s.ok(&["sign", &s.path("o.wasm"), "--key", &s.path("o.pem")]);
    s.ok(&["verify", &s.path("o.wasm"), "--key", &s.path("o.pub")]);

    // openssl signs the digest the host prints; the host verifies the detached signature.
    s.ok(&["pack", "digest", &s.path("o.wasm"), "-o", &s.path("d.bin")]);
    run_openssl(
        &openssl,
        &[
            "pkeyutl",
            "-sign",
            "-inkey",
            &s.path("o.pem"),
            "-rawin",
            "-in",
            &s.path("d.bin"),
            "-out",
            &s.path("o.sig"),
        ],
    );
    s.ok(&[
        "verify",
        &s.path("o.wasm"),
        "--key",
        &s.path("o.pub"),
        "--signature",
        &s.path("o.sig"),
    ]);
}

#[test]
fn host_keys_and_signatures_work_with_openssl() {
    let Some(openssl) = openssl() else { return };
    let s = Signed::new();
    s.ok(&["pack", "digest", &s.path("signed.wasm"), "-o", &s.path("d.bin")]);
    s.ok(&[
        "sign",
        &s.path("signed.wasm"),
        "--key",
        &s.path("k1"),
        "--detached",
        &s.path("h.sig"),
    ]);
    let verified = run_openssl(
        &openssl,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            &s.path("k1.pub"),
            "-rawin",
            "-in",
            &s.path("d.bin"),
            "-sigfile",
            &s.path("h.sig"),
        ],
    );
    assert!(verified.contains("Signature Verified Successfully"), "{verified}");
    // The host's private key signs with openssl too.
    run_openssl(
        &openssl,
        &[
            "pkeyutl",
            "-sign",
            "-inkey",
            &s.path("k1"),
            "-rawin",
            "-in",
            &s.path("d.bin"),
            "-out",
            &s.path("o.sig"),
        ],
    );
    s.ok(&["verify", &s.path("signed.wasm"), "--signature", &s.path("o.sig")]);

    // The key id is the sha256 of the raw public key: the last 32 bytes of the SPKI DER.
    let der = Command::new(&openssl)
        .args(["pkey", "-pubin", "-in", &s.path("k1.pub"), "-outform", "DER"])
        .output()
        .unwrap()
        .stdout;
    let raw = &der[der.len() - 32..];
    let expected = envpack_model::sha256_hex(raw);
    let list = s.ok(&["trust", "list", "--json"]);
    assert!(list.contains(&expected), "key id {expected} not in {list}");
}

#[test]
fn install_resolve_remove_round_trip() {
    let s = Signed::new();
    let out = s.ok(&["pack", "install", &s.path("signed.wasm")]);
    assert!(out.contains("installed envpack.deployer.ledger@1.0.0"), "{out}");
    s.ok(&["pack", "install", &s.path("signed.wasm")]);
    let list = s.ok(&["pack", "list", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        entries.as_array().unwrap().len(),
        1,
        "installing twice must not duplicate: {list}"
    );
    let resolved = s.ok(&["pack", "resolve", "envpack.deployer.ledger@^1", "--json"]);
    let resolved: serde_json::Value = serde_json::from_str(&resolved).unwrap();
    assert_eq!(resolved["descriptor"], "envpack.deployer.ledger@1.0.0");
    assert!(Path::new(resolved["path"].as_str().unwrap()).is_file());

    s.sb.host()
        .args(["pack", "resolve", "envpack.deployer.ledger@^2"])
        .assert()
        .code(2)
        .stderr(contains("no installed version"));
    s.sb.host()
        .args(["pack", "resolve", "envpack.deployer.nope@^1"])
        .assert()
        .code(2)
        .stderr(contains("no pack named envpack.deployer.nope"));
    s.sb.host()
        .args(["pack", "resolve", "ledger"])
        .assert()
        .code(2)
        .stderr(contains("not a valid descriptor requirement"));

    s.ok(&["trust", "revoke", "author"]);
    s.sb.host()
        .args(["pack", "resolve", "envpack.deployer.ledger@^1"])
        .assert()
        .code(6)
        .stderr(contains("revoked"));

    s.ok(&["pack", "remove", "envpack.deployer.ledger@1.0.0"]);
    s.sb.host()
        .args(["pack", "resolve", "envpack.deployer.ledger@^1"])
        .assert()
        .code(2)
        .stderr(contains("no pack named"));
}

#[test]
fn unsigned_or_untrusted_packs_are_not_installed() {
    let s = Signed::new();
    s.sb.host()
        .args(["pack", "install", LEDGER])
        .assert()
        .code(6)
        .stderr(contains("unsigned"));
    s.ok(&["trust", "revoke", "author"]);
    s.sb.host()
        .args(["pack", "install", &s.path("signed.wasm")])
        .assert()
        .code(6)
        .stderr(contains("revoked"));
    let list = s.ok(&["pack", "list", "--json"]);
    assert_eq!(list.trim(), "[]");
}

/// Seals `component` with its manifest (relative to the workspace root)
/// and signs it with `key`; its path.
fn sealed_with(sb: &Sandbox, component: &str, manifest: &str, key: &Path) -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest);
    let name = manifest
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let pack = sb.dir.path().join(format!("{name}.wasm"));
    let run = |args: &[&str]| {
        let out = sb.host().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "host {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "pack",
        "seal",
        component,
        "--manifest",
        &manifest.display().to_string(),
        "-o",
        &pack.display().to_string(),
    ]);
    run(&["sign", &pack.display().to_string(), "--key", &key.display().to_string()]);
    pack.display().to_string()
}

#[test]
fn a_scoped_key_signs_only_packs_named_within_its_scope() {
    let sb = Sandbox::new();
    let key = sb.dir.path().join("deployers");
    let out = sb.host().args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success());
    let public = format!("{}.pub", key.display());
    // A scope that is not a pattern is refused, naming the syntax.
    sb.host()
        .args(["trust", "add", &public, "--name", "deployers", "--scope", "Envpack/*"])
        .assert()
        .failure()
        .stderr(contains("is not a pack name pattern"));
    sb.host()
        .args([
            "trust",
            "add",
            &public,
            "--name",
            "deployers",
            "--scope",
            "envpack.deployer.*",
        ])
        .assert()
        .success();
    sb.host()
        .args(["trust", "list"])
        .assert()
        .success()
        .stdout(contains("signs envpack.deployer.*"));
    // Within the scope: trusted.
    let own = sealed_with(&sb, LEDGER, "packs/ledger/pack.toml", &key);
    sb.host().args(["verify", &own]).assert().success();
    // Another name, signed by this key: refused everywhere, so it never
    // runs as a trusted pack nor reaches that name's state.
    let other = sealed_with(&sb, crate::common::TEST_HOSTILE, "packs/test-hostile/pack.toml", &key);
    sb.host().args(["verify", &other]).assert().failure().stderr(contains(
        "may sign only envpack.deployer.*, and this pack is envpack.test.hostile",
    ));
    sb.host()
        .args(["pack", "install", "--force", &other])
        .assert()
        .failure()
        .stderr(contains("may sign only envpack.deployer.*"));
}
