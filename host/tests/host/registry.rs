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
            .map(|(p, _, _)| p.descriptor)
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
