//! Resolution of descriptor requirements: the highest installed version that
//! matches, is intact on disk, and is signed by a trusted, unrevoked key.

use envpack_test_packs::LEDGER;
use envpack_trust::{Keyring, Manifest, PrivateKey, Registry, RegistryError, Requirement, TrustStore, VerifyError};

fn manifest(version: &str) -> Manifest {
    Manifest::from_toml(&format!(
        "descriptor = \"envpack.deployer.ledger@{version}\"\ncontract_version = \"1.0.0\"\ncapabilities = [\"log\", \"kv\"]\nauthor = \"t\"\n"
    ))
    .unwrap()
}

fn install(registry: &mut Registry, trust: &TrustStore, version: &str, key: &PrivateKey) {
    let m = manifest(version);
    let sealed = m.seal(&std::fs::read(LEDGER).unwrap()).unwrap();
    let signed = envpack_trust::sign(&sealed, key).unwrap();
    let keyring = Keyring { trust, extra: vec![] };
    let verified = envpack_trust::verify(&signed, &keyring, None).unwrap();
    registry.install(&signed, &m, &verified, false).unwrap();
}

fn req(text: &str) -> Requirement {
    text.parse().unwrap()
}

#[test]
fn highest_trusted_version_wins_and_revoked_signers_are_skipped() {
    let state = tempfile::tempdir().unwrap();
    let (good, bad) = (PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap());
    let mut trust = TrustStore::open(&state.path().join("trust.json")).unwrap();
    trust.add(&good.public(), "good").unwrap();
    trust.add(&bad.public(), "bad").unwrap();
    let mut registry = Registry::open(&state.path().join("packs")).unwrap();
    install(&mut registry, &trust, "1.0.0", &good);
    install(&mut registry, &trust, "1.2.0", &bad);
    install(&mut registry, &trust, "2.0.0", &good);

    let resolve = |trust: &TrustStore, text: &str| {
        let keyring = Keyring { trust, extra: vec![] };
        Registry::open(&state.path().join("packs"))
            .unwrap()
            .resolve(&req(text), &keyring)
            .map(|(p, _)| p.descriptor)
    };
    assert_eq!(
        resolve(&trust, "envpack.deployer.ledger@^1").unwrap(),
        "envpack.deployer.ledger@1.2.0"
    );
    assert_eq!(
        resolve(&trust, "envpack.deployer.ledger@*").unwrap(),
        "envpack.deployer.ledger@2.0.0"
    );

    trust.revoke("bad").unwrap();
    assert_eq!(
        resolve(&trust, "envpack.deployer.ledger@^1").unwrap(),
        "envpack.deployer.ledger@1.0.0"
    );
    assert!(matches!(
        resolve(&trust, "envpack.deployer.ledger@~1.2"),
        Err(RegistryError::Untrusted {
            source: VerifyError::Revoked { .. },
            ..
        })
    ));
}

#[test]
fn a_pack_changed_on_disk_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let mut trust = TrustStore::open(&state.path().join("trust.json")).unwrap();
    trust.add(&key.public(), "k").unwrap();
    let mut registry = Registry::open(&state.path().join("packs")).unwrap();
    install(&mut registry, &trust, "1.0.0", &key);
    let path = registry.path(&registry.list()[0]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let keyring = Keyring {
        trust: &trust,
        extra: vec![],
    };
    let err = registry
        .resolve(&req("envpack.deployer.ledger@^1"), &keyring)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Changed { .. }), "{err}");
}

#[test]
fn same_descriptor_with_other_content_conflicts() {
    let state = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let mut trust = TrustStore::open(&state.path().join("trust.json")).unwrap();
    trust.add(&key.public(), "k").unwrap();
    let mut registry = Registry::open(&state.path().join("packs")).unwrap();
    install(&mut registry, &trust, "1.0.0", &key);
    let m = manifest("1.0.0");
    let other = envpack_trust::sign(
        &m.seal(&std::fs::read(LEDGER).unwrap()).unwrap(),
        &PrivateKey::generate().unwrap(),
    )
    .unwrap();
    let keyring = Keyring {
        trust: &trust,
        extra: vec![],
    };
    let verified = envpack_trust::verify(&envpack_trust::sign(&other, &key).unwrap(), &keyring, None).unwrap();
    let err = registry.install(&other, &m, &verified, false).unwrap_err();
    assert!(matches!(err, RegistryError::Conflict { .. }), "{err}");
}

fn keyring(trust: &TrustStore) -> Keyring<'_> {
    Keyring { trust, extra: vec![] }
}

#[test]
fn a_sealed_pack_is_checked_without_reading_it_until_it_changes() {
    let state = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let mut trust = TrustStore::open(&state.path().join("trust.json")).unwrap();
    trust.add(&key.public(), "k").unwrap();
    let mut registry = Registry::open(&state.path().join("packs")).unwrap();
    install(&mut registry, &trust, "1.0.0", &key);
    let pack = registry.list()[0].clone();
    // Installed read-only and sealed: a check trusts the seal, no bytes read.
    use std::os::unix::fs::PermissionsExt;
    let path = registry.path(&pack);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o400);
    let checked = registry.check(&pack, &keyring(&trust)).unwrap();
    assert!(checked.bytes.is_none(), "checked from its seal");
    assert_eq!(checked.manifest.descriptor, "envpack.deployer.ledger@1.0.0");

    // Changed, then its modification time put back: refused all the same.
    let before = std::fs::metadata(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(before.modified().unwrap()))
        .unwrap();
    let err = registry.check(&pack, &keyring(&trust)).unwrap_err();
    assert!(matches!(err, RegistryError::Changed { .. }), "{err}");

    // Put back as it was (new identity, same bytes): read whole, verified, sealed anew.
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(registry.check(&pack, &keyring(&trust)).unwrap().bytes.is_some());
    assert!(registry.check(&pack, &keyring(&trust)).unwrap().bytes.is_none());
}

#[test]
fn a_forged_seal_does_not_vouch_for_a_changed_file() {
    let state = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let mut trust = TrustStore::open(&state.path().join("trust.json")).unwrap();
    trust.add(&key.public(), "k").unwrap();
    let mut registry = Registry::open(&state.path().join("packs")).unwrap();
    install(&mut registry, &trust, "1.0.0", &key);
    let pack = registry.list()[0].clone();
    let path = registry.path(&pack);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    // The seal rewritten to name the changed file's identity: its keyed tag no longer holds.
    let seal_path = state.path().join(format!("packs/{}.seal", pack.digest));
    let mut seal: serde_json::Value = serde_json::from_slice(&std::fs::read(&seal_path).unwrap()).unwrap();
    let metadata = std::fs::metadata(&path).unwrap();
    seal["identity"] = serde_json::to_value(envpack_model::files::FileIdentity::of(&metadata)).unwrap();
    std::fs::write(&seal_path, serde_json::to_vec(&seal).unwrap()).unwrap();
    let err = registry.check(&pack, &keyring(&trust)).unwrap_err();
    assert!(matches!(err, RegistryError::Changed { .. }), "{err}");
}

#[test]
fn a_sealed_pack_whose_signer_is_revoked_is_refused_without_rehashing() {
    let state = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let mut trust = TrustStore::open(&state.path().join("trust.json")).unwrap();
    trust.add(&key.public(), "k").unwrap();
    let mut registry = Registry::open(&state.path().join("packs")).unwrap();
    install(&mut registry, &trust, "1.0.0", &key);
    let pack = registry.list()[0].clone();
    assert!(registry.check(&pack, &keyring(&trust)).unwrap().bytes.is_none());
    trust.revoke("k").unwrap();
    let err = registry.check(&pack, &keyring(&trust)).unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Untrusted {
                source: VerifyError::Revoked { .. },
                ..
            }
        ),
        "{err}"
    );
}
