//! Unit tests of the settings rules.

use super::*;

fn spec(kind: SettingType) -> SettingSpec {
    SettingSpec {
        kind,
        required: false,
        default: None,
        doc: String::new(),
    }
}

fn declared() -> Declared {
    let mut map = BTreeMap::new();
    map.insert("ports".to_string(), spec(SettingType::PortRange));
    map.insert("listen.<deployment>".to_string(), spec(SettingType::String));
    map.insert("health-timeout-ms".to_string(), spec(SettingType::DurationMs));
    map.insert(
        "region".to_string(),
        SettingSpec {
            required: true,
            ..spec(SettingType::String)
        },
    );
    Declared(map)
}

fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn types_accept_and_refuse() {
    use SettingType::*;
    let cases: &[(SettingType, &[&str], &[&str])] = &[
        (String, &["", "anything at all"], &[]),
        (
            Integer,
            &["0", "42", "-7"],
            &["", "4.2", "+1", "x", "99999999999999999999"],
        ),
        (Boolean, &["true", "false"], &["yes", "1", "True"]),
        (Port, &["1", "8080", "65535"], &["0", "65536", "-1", " 80", "http"]),
        (
            PortRange,
            &["20000-20999", "5-5"],
            &["2-1", "0-10", "10", "a-b", "1-65536"],
        ),
        (DurationMs, &["0", "20000"], &["-1", "1.5", "", "10s"]),
        (
            Url,
            &["http://127.0.0.1:5000", "https://ecs.example.com/path"],
            &["ftp://x", "http://", "http:// x", "127.0.0.1:5000"],
        ),
    ];
    for (kind, good, bad) in cases {
        for v in *good {
            assert_eq!(kind.check(v), Ok(()), "{kind} should accept {v:?}");
        }
        for v in *bad {
            assert!(kind.check(v).is_err(), "{kind} should refuse {v:?}");
        }
    }
}

#[test]
fn type_names_round_trip_and_suggest() {
    for kind in SettingType::ALL {
        assert_eq!(SettingType::try_from(kind.name().to_string()), Ok(kind));
    }
    let error = SettingType::try_from("prot-range".to_string()).unwrap_err();
    assert!(error.contains("did you mean \"port-range\""), "{error}");
    assert!(error.contains("duration-ms"), "{error}");
}

#[test]
fn names_and_patterns() {
    for good in ["ports", "listen-ports", "env.A_B", "listen.<deployment>", "x<id>"] {
        assert!(parse_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "<deployment>",
        "a<b>c",
        "a<b><c>",
        "a<>",
        "a b",
        "a>",
        "a<b",
        "a.<b c>",
    ] {
        assert!(parse_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn declarations_are_validated() {
    assert_eq!(declared().validate(), Ok(()));
    let with = |name: &str, spec: SettingSpec| Declared(BTreeMap::from([(name.to_string(), spec)]));
    let bad_default = with(
        "ports",
        SettingSpec {
            default: Some("20000".into()),
            ..spec(SettingType::PortRange)
        },
    );
    assert!(matches!(bad_default.validate(), Err(SettingsError::BadDefault { .. })));
    let both = with(
        "region",
        SettingSpec {
            required: true,
            default: Some("x".into()),
            ..spec(SettingType::String)
        },
    );
    assert!(matches!(
        both.validate(),
        Err(SettingsError::RequiredWithDefault { .. })
    ));
    let pattern = with(
        "listen.<d>",
        SettingSpec {
            required: true,
            ..spec(SettingType::String)
        },
    );
    assert!(matches!(
        pattern.validate(),
        Err(SettingsError::PatternRequiredOrDefault { .. })
    ));
    assert!(matches!(
        with("a<b>c", spec(SettingType::String)).validate(),
        Err(SettingsError::BadName { .. })
    ));
}

#[test]
fn lookup_matches_fixed_names_and_patterns() {
    let d = declared();
    assert_eq!(d.lookup("ports").map(|(n, _)| n), Some("ports"));
    assert_eq!(d.lookup("listen.web").map(|(n, _)| n), Some("listen.<deployment>"));
    assert_eq!(d.lookup("listen."), None, "the placeholder needs an id");
    assert_eq!(d.lookup("listen.a b"), None, "not an id");
    assert_eq!(
        d.lookup("listen.<deployment>"),
        None,
        "the pattern itself is not a setting"
    );
    assert_eq!(d.lookup("port"), None);
}

#[test]
fn unknown_settings_name_the_closest() {
    let d = declared();
    let pack = "envpack.deployer.local-process@1.0.0";
    let error = d.check(pack, &given(&[("prots", "1-2"), ("region", "x")])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown setting \"prots\" for envpack.deployer.local-process@1.0.0 (did you mean \"ports\"?)"
    );
    let error = d
        .check(pack, &given(&[("lisen.web", "x"), ("region", "x")]))
        .unwrap_err();
    assert!(error.to_string().contains("did you mean \"listen.web\""), "{error}");
    let error = d.check(pack, &given(&[("colour", "x"), ("region", "x")])).unwrap_err();
    assert!(error.to_string().contains("it declares: "), "{error}");
    assert!(!error.to_string().contains("did you mean"), "{error}");
    let none = Declared::default().check(pack, &given(&[("a", "b")])).unwrap_err();
    assert!(none.to_string().ends_with("it declares no settings"), "{none}");
}

#[test]
fn values_are_typed_and_required_ones_present() {
    let d = declared();
    let pack = "p@1.0.0";
    assert_eq!(
        d.check(
            pack,
            &given(&[("region", "eu"), ("ports", "1-2"), ("listen.web", "127.0.0.1:80")])
        ),
        Ok(())
    );
    let error = d
        .check(pack, &given(&[("region", "eu"), ("ports", "20000")]))
        .unwrap_err();
    assert!(matches!(
        error,
        SettingsError::IllTyped {
            kind: SettingType::PortRange,
            ..
        }
    ));
    assert!(error.to_string().contains("is not a port-range"), "{error}");
    let error = d.check(pack, &given(&[("health-timeout-ms", "5s")])).unwrap_err();
    assert!(error.to_string().contains("duration-ms"), "{error}");
    let error = d.check(pack, &given(&[])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "p@1.0.0 requires setting \"region\" (give it with --setting KEY=VALUE)"
    );
}

#[test]
fn distance_counts_swaps_once() {
    assert_eq!(distance("ports", "prots"), 1);
    assert_eq!(distance("", "abc"), 3);
    assert_eq!(distance("kitten", "sitting"), 3);
    assert_eq!(closest("regoin", ["region", "ports"]), Some("region"));
    assert_eq!(closest("zzz", ["region", "ports"]), None);
}

#[test]
fn toml_defaults_may_be_numbers_or_booleans() {
    let spec: SettingSpec = serde_json::from_str(r#"{"type": "duration-ms", "default": 20000}"#).unwrap();
    assert_eq!(spec.default.as_deref(), Some("20000"));
    let spec: SettingSpec = serde_json::from_str(r#"{"type": "boolean", "default": true}"#).unwrap();
    assert_eq!(spec.default.as_deref(), Some("true"));
    assert!(serde_json::from_str::<SettingSpec>(r#"{"type": "string", "colour": 1}"#).is_err());
}
