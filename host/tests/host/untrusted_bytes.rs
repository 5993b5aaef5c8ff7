//! The parsers of bytes a pack author or an operator's file hands the host
//! (section walker, manifest, signature records, the shape walk, env
//! documents, pack.toml, descriptors) never panic on any input, and a
//! signed pack with any one byte changed, anywhere, is refused.

use envpack_model::{Capability, Environment, EnvironmentDoc, PackLimits};
use envpack_trust::{Descriptor, Keyring, Manifest, PrivateKey, TrustStore, sections};
use proptest::prelude::*;

/// A small component (one core module, a few functions), sealed with a
/// manifest and signed: small enough to flip every byte of it quickly.
fn signed_pack(key: &PrivateKey) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection, TypeSection,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..4 {
        funcs.function(0);
        let mut f = Function::new([]);
        f.instruction(&Instruction::Nop);
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    module.section(&funcs);
    module.section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    let manifest = Manifest {
        descriptor: "acme.deployer.tiny@1.0.0".into(),
        contract_version: "1.1.0".into(),
        capabilities: vec![Capability::Log, Capability::Kv],
        author: "Acme".into(),
        description: "a pack to flip bytes of".into(),
        deadlines: Default::default(),
        settings: None,
    };
    let sealed = manifest.seal(&component.finish()).expect("seal");
    envpack_trust::sign(&sealed, key).expect("sign")
}

#[test]
fn every_single_byte_change_of_a_signed_pack_is_refused() {
    let key = PrivateKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trust = TrustStore::open(&dir.path().join("trust.json")).unwrap();
    let keyring = Keyring {
        trust: &trust,
        extra: vec![key.public()],
    };
    let good = signed_pack(&key);
    envpack_trust::verify(&good, &keyring, None).expect("the untouched pack verifies");
    let mut bad = good.clone();
    let mut accepted = Vec::new();
    for offset in 0..good.len() {
        for flip in [0x01u8, 0x80] {
            bad[offset] ^= flip;
            if envpack_trust::verify(&bad, &keyring, None).is_ok() {
                accepted.push((offset, flip));
            }
            bad[offset] ^= flip;
        }
    }
    assert!(
        accepted.is_empty(),
        "{} of {} flips verified: {accepted:?}",
        accepted.len(),
        good.len() * 2
    );
}

/// Every parser of untrusted pack bytes, on `bytes`: answers, never panics.
fn parse_pack_bytes(bytes: &[u8]) {
    let _ = sections::top_level(bytes);
    let _ = sections::custom(bytes, sections::MANIFEST);
    let _ = Manifest::read(bytes);
    let _ = envpack_trust::records(bytes);
    let _ = envpack_trust::signable_digest(bytes);
    let _ = envpack_host::check_shape(bytes, &PackLimits::default());
}

/// One signed pack for the whole run (the key is generated once).
fn base_pack() -> &'static [u8] {
    static PACK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PACK.get_or_init(|| signed_pack(&PrivateKey::generate().unwrap()))
}

fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    prop::collection::vec((0..len, any::<u8>(), 0..4u8), 1..8).prop_map(move |edits| {
        let mut bytes = base.clone();
        for (at, byte, how) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match how {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn pack_parsers_answer_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_pack_bytes(&bytes);
        let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
        wasm.extend_from_slice(&bytes);
        parse_pack_bytes(&wasm);
    }

    #[test]
    fn pack_parsers_answer_a_mutated_signed_pack(bytes in mutated(base_pack().to_vec())) {
        parse_pack_bytes(&bytes);
    }

    #[test]
    fn env_documents_answer_any_json(text in "[ -~]{0,200}", id in "\\PC{0,40}", weight in any::<i64>()) {
        let _ = serde_json::from_str::<EnvironmentDoc>(&text).map(Environment::from_doc);
        let doc = serde_json::json!({
            "id": id,
            "deployments": [{ "id": id, "revisions": [{ "id": id }], "split": [{ "revision": id, "weight": weight }] }]
        });
        let _ = serde_json::from_value::<EnvironmentDoc>(doc).map(Environment::from_doc);
    }

    #[test]
    fn manifests_and_descriptors_answer_any_text(text in "\\PC{0,200}", field in "[a-z_]{1,20}") {
        let _ = Manifest::from_toml(&text);
        let _ = Manifest::from_toml(&format!("{field} = {text:?}\ndescriptor = {text:?}"));
        let _ = text.parse::<Descriptor>();
    }
}
