//! The settings a pack declares (`[settings]` in `pack.toml`): `env create`
//! and `env bind` refuse unknown, ill-typed and missing required settings
//! before anything is stored, `env bind` keeps the settings it is not told
//! to change, `host inspect` lists them, and a pack that declares none gets
//! them unchecked with a warning.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{LEDGER, Sandbox, install_signed, json, ok, operator, p};

/// The ledger's manifest with typed settings instead of its own.
const TYPED: &str = r#"
descriptor = "envpack.deployer.ledger@1.0.0"
contract_version = "1.1.0"
capabilities = ["log", "kv"]
author = "envpack authors"

[settings.ports]
type = "port-range"
default = "20000-20999"
doc = "TCP ports revisions listen on"

[settings."listen.<deployment>"]
type = "port"
doc = "The port serving that deployment"

[settings.region]
type = "string"
required = true
"#;

/// Runs `host ARGS`, asserting exit `code`; returns stderr.
fn refused(sb: &Sandbox, args: &[&str], code: i32) -> String {
    let out = sb.host().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "host {args:?}: {stderr}");
    stderr
}

/// Runs `host ARGS`, asserting success; returns stderr.
fn ok_stderr(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.host().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "host {args:?}: {stderr}");
    stderr
}

fn settings_of(sb: &Sandbox, env: &str) -> Value {
    json(sb, &["env", "show", env, "--json"])["binding"]["settings"].clone()
}

fn last_audit(sb: &Sandbox) -> Value {
    json(sb, &["audit", "show", "--last", "1", "--json"])[0].clone()
}

fn bind<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["env", "bind", "dev", "--deployer", "envpack.deployer.ledger@^1"];
    args.extend_from_slice(extra);
    args
}

/// A state directory with a trusted key and nothing installed.
fn bare() -> Sandbox {
    let sb = Sandbox::new();
    let key = sb.dir.path().join("key");
    ok(&sb, &["keygen", "--out", &p(&key)]);
    ok(
        &sb,
        &[
            "trust",
            "add",
            &p(&key.with_extension("pub")),
            "--name",
            "ops",
            "--scope",
            "*",
        ],
    );
    sb
}

/// Writes `text` as a manifest in the sandbox; its absolute path.
fn manifest(sb: &Sandbox, text: &str) -> PathBuf {
    let path = sb.dir.path().join("typed.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_typo_is_refused_naming_the_closest_setting_and_nothing_is_stored() {
    let sb = operator();
    ok(&sb, &bind(&["--setting", "unhealthy=R1"]));
    let stderr = refused(&sb, &bind(&["--setting", "unhelthy=R2"]), 2);
    assert!(
        stderr.contains("unknown setting \"unhelthy\" for envpack.deployer.ledger@1.0.0 (did you mean \"unhealthy\"?)"),
        "{stderr}"
    );
    assert_eq!(settings_of(&sb, "dev"), json!({ "unhealthy": "R1" }), "nothing stored");
    let row = last_audit(&sb);
    assert_eq!(row["command"], "env bind");
    assert!(row["outcome"].as_str().unwrap().contains("unknown setting"), "{row:#}");

    // env create: refused before the environment exists.
    let create = [
        "env",
        "create",
        "other",
        "--deployer",
        "envpack.deployer.ledger@^1",
        "--capability",
        "log,kv",
        "--setting",
        "refuse-drian=R1",
    ];
    let stderr = refused(&sb, &create, 2);
    assert!(stderr.contains("(did you mean \"refuse-drain\"?)"), "{stderr}");
    let envs = ok(&sb, &["env", "list"]);
    assert!(!envs.contains("other"), "{envs}");
    let row = last_audit(&sb);
    assert_eq!(row["command"], "env create");
    assert!(row["outcome"].as_str().unwrap().contains("refuse-drian"), "{row:#}");
    assert!(ok(&sb, &["audit", "verify"]).contains("intact"));
}

#[test]
fn ill_typed_and_missing_settings_are_refused_and_defaults_not_stored() {
    let sb = bare();
    let path = manifest(&sb, TYPED);
    install_signed(&sb, LEDGER, &p(&path), "typed");
    let create = |extra: &[&'static str]| {
        let mut args = vec![
            "env",
            "create",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
        ];
        args.extend_from_slice(extra);
        args
    };
    let stderr = refused(&sb, &create(&["--setting", "region=eu", "--setting", "ports=20000"]), 2);
    assert!(
        stderr.contains("setting ports=\"20000\" for envpack.deployer.ledger@1.0.0 is not a port-range"),
        "{stderr}"
    );
    let stderr = refused(
        &sb,
        &create(&["--setting", "region=eu", "--setting", "listen.web=web:80"]),
        2,
    );
    assert!(stderr.contains("is not a port"), "{stderr}");
    let stderr = refused(&sb, &create(&["--setting", "ports=1-2"]), 2);
    assert!(stderr.contains("requires setting \"region\""), "{stderr}");
    assert!(!ok(&sb, &["env", "list"]).contains("dev"));

    ok(
        &sb,
        &create(&["--setting", "region=eu", "--setting", "listen.web=8080"]),
    );
    assert_eq!(
        settings_of(&sb, "dev"),
        json!({ "region": "eu", "listen.web": "8080" }),
        "the default of ports is the pack's, not stored"
    );
    // A kept setting counts: the merged result is checked, so unsetting
    // a required one is refused.
    let stderr = refused(&sb, &bind(&["--unset", "region"]), 2);
    assert!(stderr.contains("requires setting \"region\""), "{stderr}");
    assert_eq!(settings_of(&sb, "dev")["region"], "eu");
}

#[test]
fn bind_keeps_settings_unless_unset_or_reset() {
    let sb = operator();
    ok(&sb, &bind(&["--setting", "unhealthy=R1"]));
    ok(&sb, &bind(&["--setting", "refuse-drain=R2"]));
    assert_eq!(
        settings_of(&sb, "dev"),
        json!({ "unhealthy": "R1", "refuse-drain": "R2" }),
        "the first is kept"
    );
    ok(&sb, &bind(&["--setting", "unhealthy=R3"]));
    assert_eq!(settings_of(&sb, "dev")["unhealthy"], "R3", "given overrides kept");
    ok(&sb, &bind(&[]));
    assert_eq!(settings_of(&sb, "dev")["unhealthy"], "R3", "nothing given: all kept");

    ok(&sb, &bind(&["--unset", "unhealthy"]));
    assert_eq!(settings_of(&sb, "dev"), json!({ "refuse-drain": "R2" }));
    let stderr = refused(&sb, &bind(&["--unset", "refuse-drian"]), 2);
    assert!(
        stderr.contains("no setting \"refuse-drian\" (did you mean \"refuse-drain\"?)"),
        "{stderr}"
    );
    let stderr = refused(
        &sb,
        &bind(&["--unset", "refuse-drain", "--setting", "refuse-drain=R1"]),
        2,
    );
    assert!(stderr.contains("contradict"), "{stderr}");
    assert_eq!(settings_of(&sb, "dev"), json!({ "refuse-drain": "R2" }));

    ok(&sb, &bind(&["--reset-settings", "--setting", "unhealthy=R4"]));
    assert_eq!(settings_of(&sb, "dev"), json!({ "unhealthy": "R4" }));
    ok(&sb, &bind(&["--reset-settings"]));
    assert_eq!(settings_of(&sb, "dev"), json!({}));
    // --unset and --reset-settings do not go together, and create has neither.
    refused(&sb, &bind(&["--reset-settings", "--unset", "x"]), 2);
    refused(
        &sb,
        &[
            "env",
            "create",
            "x",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--reset-settings",
        ],
        2,
    );
}

#[test]
fn a_pack_without_settings_warns_and_rebinding_drops_what_the_new_pack_does_not_declare() {
    let sb = bare();
    install_signed(&sb, LEDGER, "packs/ledger/pack.toml", "ledger");
    install_signed(
        &sb,
        envpack_test_packs::INDIE_KVHEAVY,
        "packs/indie-kvheavy/pack.toml",
        "kvheavy",
    );
    let stderr = ok_stderr(
        &sb,
        &[
            "env",
            "create",
            "indie",
            "--deployer",
            "indie.deployer.kvheavy@^0.1",
            "--capability",
            "log,kv",
            "--setting",
            "colour=red",
            "--setting",
            "unhealthy=R1",
        ],
    );
    let warning = "host: warning: indie.deployer.kvheavy@0.1.0 declares no settings; they are passed unchecked";
    assert_eq!(stderr.matches(warning).count(), 1, "one warning line: {stderr}");
    assert_eq!(settings_of(&sb, "indie"), json!({ "colour": "red", "unhealthy": "R1" }));

    // Onto the ledger, which declares `unhealthy` but not `colour`.
    let stderr = ok_stderr(
        &sb,
        &["env", "bind", "indie", "--deployer", "envpack.deployer.ledger@^1"],
    );
    assert!(
        stderr.contains(
            "host: warning: dropped setting colour kept from the previous binding: envpack.deployer.ledger@1.0.0 does not declare it"
        ),
        "{stderr}"
    );
    assert_eq!(settings_of(&sb, "indie"), json!({ "unhealthy": "R1" }));
}

#[test]
fn inspect_shows_the_declared_settings() {
    let sb = bare();
    let path = manifest(&sb, TYPED);
    let sealed = sb.dir.path().join("typed.wasm");
    ok(
        &sb,
        &["pack", "seal", LEDGER, "--manifest", &p(&path), "-o", &p(&sealed)],
    );
    let v = json(&sb, &["inspect", &p(&sealed), "--json"]);
    let settings = v["settings"].as_array().expect("a list");
    let names: Vec<&str> = settings.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["listen.<deployment>", "ports", "region"]);
    assert_eq!(
        settings[1],
        json!({ "name": "ports", "type": "port-range", "required": false,
                "default": "20000-20999", "doc": "TCP ports revisions listen on" })
    );
    assert_eq!(settings[2]["required"], true);
    let text = ok(&sb, &["inspect", &p(&sealed)]);
    assert!(text.contains("settings\n"), "{text}");
    let ports = text
        .lines()
        .find(|l| l.trim_start().starts_with("ports"))
        .unwrap_or_default();
    assert!(
        ports.contains("port-range") && ports.contains("default 20000-20999") && ports.contains("TCP ports"),
        "{text}"
    );

    // The reference packs declare theirs; an unsealed pack declares none.
    let ledger = Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/ledger/pack.toml");
    let sealed = sb.dir.path().join("ledger.wasm");
    ok(
        &sb,
        &["pack", "seal", LEDGER, "--manifest", &p(&ledger), "-o", &p(&sealed)],
    );
    let v = json(&sb, &["inspect", &p(&sealed), "--json"]);
    let names: Vec<&str> = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["refuse-drain", "unhealthy"]);
    assert_eq!(json(&sb, &["inspect", LEDGER, "--json"])["settings"], Value::Null);
    assert!(ok(&sb, &["inspect", LEDGER]).contains("settings     none declared"));
}

#[test]
fn a_manifest_with_bad_settings_is_refused_at_seal() {
    let sb = bare();
    let cases = [
        ("type = \"prot\"", "did you mean \"port\""),
        ("type = \"port\"\ndefault = \"http\"", "is not a port"),
    ];
    for (body, expected) in cases {
        let path = manifest(&sb, &format!("{TYPED}\n[settings.extra]\n{body}\n"));
        let stderr = refused(
            &sb,
            &["pack", "seal", LEDGER, "--manifest", &p(&path), "-o", "/dev/null"],
            2,
        );
        assert!(stderr.contains(expected), "{body}: {stderr}");
    }
    let path = manifest(&sb, &format!("{TYPED}\n[settings.\"a<b>.c\"]\ntype = \"string\"\n"));
    let stderr = refused(
        &sb,
        &["pack", "seal", LEDGER, "--manifest", &p(&path), "-o", "/dev/null"],
        2,
    );
    assert!(stderr.contains("placeholder"), "{stderr}");
}

/// Grants are replaced as a whole when any `--allow-*` is given (unlike
/// settings): the command names every grant it drops.
#[test]
fn a_bind_that_drops_grants_names_them() {
    let sb = operator();
    ok(&sb, &bind(&["--allow-env", "PORT", "--allow-env", "FAIL_*"]));
    let stderr = ok_stderr(&sb, &bind(&["--allow-env", "PORT"]));
    assert!(stderr.contains("no longer granted: env FAIL_*"), "{stderr}");
    let stderr = ok_stderr(&sb, &bind(&["--allow-env", "PORT"]));
    assert!(
        !stderr.contains("no longer granted"),
        "nothing dropped, nothing said: {stderr}"
    );
}

/// `env upgrade` moves the pin only if the environment's settings fit what
/// the new version declares; otherwise it is refused, naming the setting,
/// and `env bind` changes the settings and the pin in one step.
#[test]
fn an_upgrade_to_a_version_whose_settings_do_not_fit_is_refused() {
    let sb = bare();
    let path = manifest(&sb, TYPED);
    let sealed = sb.dir.path().join("typed.wasm");
    ok(
        &sb,
        &["pack", "seal", LEDGER, "--manifest", &p(&path), "-o", &p(&sealed)],
    );
    let key = sb.dir.path().join("key");
    ok(&sb, &["sign", &p(&sealed), "--key", &p(&key)]);
    ok(&sb, &["pack", "install", &p(&sealed)]);
    ok(
        &sb,
        &[
            "env",
            "create",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
            "--setting",
            "region=eu",
        ],
    );
    // 1.0.9: the same code, a manifest that requires `zone` too.
    let component = crate::common::with_version(&sb, LEDGER, "envpack.deployer.ledger", "1.0.0", "1.0.9");
    let newer = TYPED.replace("@1.0.0", "@1.0.9") + "\n[settings.zone]\ntype = \"string\"\nrequired = true\n";
    let newer_path = sb.dir.path().join("newer.toml");
    std::fs::write(&newer_path, newer).unwrap();
    let newer_sealed = sb.dir.path().join("newer.wasm");
    ok(
        &sb,
        &[
            "pack",
            "seal",
            &p(&component),
            "--manifest",
            &p(&newer_path),
            "-o",
            &p(&newer_sealed),
        ],
    );
    ok(&sb, &["sign", &p(&newer_sealed), "--key", &p(&key)]);
    ok(&sb, &["pack", "install", &p(&newer_sealed)]);
    let stderr = refused(&sb, &["env", "upgrade", "dev"], 2);
    assert!(stderr.contains("zone"), "names the missing setting: {stderr}");
    assert!(stderr.contains("--setting KEY=VALUE"), "says what to do: {stderr}");
    let shown = json(&sb, &["env", "show", "dev", "--json"]);
    assert_eq!(
        shown["binding"]["descriptor"], "envpack.deployer.ledger@1.0.0",
        "the pin stays"
    );
    assert!(last_audit(&sb)["outcome"].as_str().unwrap().starts_with("error"));
    ok(&sb, &bind(&["--setting", "zone=a"]));
    let shown = json(&sb, &["env", "show", "dev", "--json"]);
    assert_eq!(shown["binding"]["descriptor"], "envpack.deployer.ledger@1.0.9");
    assert_eq!(settings_of(&sb, "dev"), json!({ "region": "eu", "zone": "a" }));
}
