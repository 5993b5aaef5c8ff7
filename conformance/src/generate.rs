//! Generated environments and operator sequences for the model-based checks:
//! proptest strategies for a [`Scenario`] (deployments, revisions with ids
//! of every shape the host accepts, settings, and a list of operator steps),
//! seeded so that a run is reproducible, and shrinkable so that a failure
//! is reported as a minimal case.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::select;

use envpack_model::MAX_ID_BYTES;

/// One revision of a generated deployment.
#[derive(Clone, Debug)]
pub struct GenRevision {
    pub id: String,
    pub settings: BTreeMap<String, String>,
    pub drain_seconds: u32,
}

/// One generated deployment: revisions the operator works with, and an
/// archived history the pack has never seen.
#[derive(Clone, Debug)]
pub struct GenDeployment {
    pub id: String,
    pub revisions: Vec<GenRevision>,
    pub history: Vec<String>,
}

/// One step an operator could take. Indices pick a revision (over every
/// working revision of the environment) or a deployment, modulo their
/// count; a step the host would refuse in the model's state is skipped.
#[derive(Clone, Debug)]
pub enum Op {
    Stage(usize),
    Warm(usize),
    Drain(usize),
    Archive(usize),
    /// Record a new split: raw weights for the deployment's revisions in
    /// order (scaled to 10000 over the ready ones), `true` to list them in
    /// reverse.
    Split(usize, Vec<u32>, bool),
    Apply(usize),
    Probe(usize),
    Report,
}

/// A generated environment and the steps to take in it.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub deployments: Vec<GenDeployment>,
    pub ops: Vec<Op>,
}

/// Ids of every shape the host accepts: ULIDs in either case, one byte,
/// 256 bytes (ASCII and two-byte characters), unicode, mixed case with
/// punctuation.
fn id_shape() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[0-9A-HJKMNP-TV-Z]{26}",
        2 => "[0-9a-hjkmnp-tv-z]{26}",
        2 => "[a-zA-Z0-9]",
        3 => "[a-zA-Z][a-zA-Z0-9._:/-]{0,10}",
        1 => "[a-z]{256}",
        1 => Just("é".repeat(MAX_ID_BYTES / 2)),
        2 => (select(vec!["ревизия", "部署", "é", "Ωmega", "ñ", "✓", "𝔘"]), "[a-z0-9-]{0,6}")
            .prop_map(|(word, tail)| format!("{word}{tail}")),
    ]
}

/// How an id relates to the one before it: its own shape, or a prefix of
/// it, or it extended, or it in the other case (ids that a careless pack
/// confuses).
#[derive(Clone, Copy, Debug)]
enum Relation {
    Own,
    Prefix,
    Extended,
    OtherCase,
}

fn relation() -> impl Strategy<Value = Relation> {
    prop_oneof![
        3 => Just(Relation::Own),
        1 => Just(Relation::Prefix),
        1 => Just(Relation::Extended),
        1 => Just(Relation::OtherCase),
    ]
}

/// `len` bytes of `id` at most, cut at a character boundary.
fn truncate(id: &str, len: usize) -> String {
    let mut end = len.min(id.len());
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].to_string()
}

fn related(previous: Option<&String>, own: String, relation: Relation) -> String {
    let Some(previous) = previous else { return own };
    let id = match relation {
        Relation::Own => own,
        Relation::Prefix => truncate(previous, previous.len().div_ceil(2)),
        Relation::Extended => format!("{}{}", truncate(previous, MAX_ID_BYTES - 2), "-1"),
        Relation::OtherCase => previous
            .chars()
            .map(|c| {
                if c.is_uppercase() {
                    c.to_lowercase().next().unwrap_or(c)
                } else {
                    c.to_uppercase().next().unwrap_or(c)
                }
            })
            .collect(),
    };
    truncate(&id, MAX_ID_BYTES)
}

/// `id`, or a variant of it not in `seen` (still at most 256 bytes).
fn unique(id: String, seen: &mut BTreeSet<String>) -> String {
    let mut candidate = if id.is_empty() { "x".to_string() } else { id };
    let mut n = 0u32;
    while seen.contains(&candidate) || candidate.is_empty() {
        n += 1;
        let tail = format!("~{n}");
        candidate = format!("{}{tail}", truncate(&candidate, MAX_ID_BYTES - tail.len()));
    }
    seen.insert(candidate.clone());
    candidate
}

/// A chain of ids, each related to the one before, all distinct.
fn ids(count: usize, seen: &mut BTreeSet<String>, raw: Vec<(String, Relation)>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (own, relation) in raw.into_iter().take(count) {
        let id = related(out.last(), own, relation);
        out.push(unique(id, seen));
    }
    out
}

/// Settings as operators write them: tokens and passwords, URLs (with
/// their trailing slash), connection strings, empty values, spaces at
/// either end, JSON, several lines. A pack must pass them on as they are.
pub const REALISTIC_SETTINGS: &[(&str, &str)] = &[
    ("GITHUB_TOKEN", "ghp_0123456789abcdefghijABCDEFGHIJ012345"),
    ("OPENAI_API_KEY", "sk-proj-AbC123_dEf456-GhI789"),
    ("SLACK_BOT_TOKEN", "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp"),
    ("AUTHORIZATION", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"),
    ("DB_PASSWORD", "p@ss w0rd!#$%&'()*+,-./:;<=>?[\\]^_`{|}~"),
    (
        "DATABASE_URL",
        "postgres://app:s3cr%40t@db.internal:5432/app?sslmode=require",
    ),
    ("API_URL", "https://api.example.com/v1/"),
    ("CALLBACK_URL", "http://127.0.0.1:8080/hooks/deploy?x=1&y=2#frag"),
    ("EMPTY", ""),
    ("PADDED", "  two spaces either side  "),
    ("JSON", "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}"),
    ("MULTILINE", "line one\nline two\r\n\ttabbed"),
    ("GREETING", "héllo wörld ✓ 部署"),
    ("LOG_LEVEL", "info"),
    ("REPLICAS", "0"),
];

fn settings() -> impl Strategy<Value = BTreeMap<String, String>> {
    let realistic = select(REALISTIC_SETTINGS).prop_map(|(k, v)| (k.to_string(), v.to_string()));
    let random = (
        "[A-Za-z_][A-Za-z0-9_]{0,11}",
        prop_oneof!["[ -~]{0,16}", "[a-zé✓ж0-9]{1,8}"],
    );
    prop::collection::vec(prop_oneof![realistic, random], 0..5).prop_map(|pairs| pairs.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    let index = any::<u8>().prop_map(usize::from);
    prop_oneof![
        5 => index.clone().prop_map(Op::Stage),
        5 => index.clone().prop_map(Op::Warm),
        1 => index.clone().prop_map(Op::Drain),
        1 => index.clone().prop_map(Op::Archive),
        4 => (index.clone(), prop::collection::vec(prop_oneof![1 => Just(0u32), 4 => 0u32..=10_000], 1..6), any::<bool>())
            .prop_map(|(d, w, reverse)| Op::Split(d, w, reverse)),
        4 => index.clone().prop_map(Op::Apply),
        1 => index.prop_map(Op::Probe),
        1 => Just(Op::Report),
    ]
}

/// Raw material of one deployment: its id, its revisions' ids and settings, history ids.
type RawDeployment = (
    (String, Relation),
    Vec<((String, Relation), BTreeMap<String, String>, u32)>,
    Vec<(String, Relation)>,
);

fn raw_deployment() -> impl Strategy<Value = RawDeployment> {
    (
        (id_shape(), relation()),
        prop::collection::vec(((id_shape(), relation()), settings(), 0u32..3), 1..6),
        prop::collection::vec((id_shape(), relation()), 0..2),
    )
}

/// The scenarios the model-based checks run: 1 to 3 deployments of 1 to 4
/// working revisions each, and up to `max_ops` steps.
pub fn scenario(max_ops: usize) -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(raw_deployment(), 1..4),
        prop::collection::vec(op(), 1.max(max_ops / 2)..=max_ops.max(1)),
    )
        .prop_map(|(raw, ops)| build(raw, ops))
}

fn build(raw: Vec<RawDeployment>, ops: Vec<Op>) -> Scenario {
    let mut deployment_ids = BTreeSet::new();
    let mut revision_ids = BTreeSet::new();
    let names = ids(
        raw.len(),
        &mut deployment_ids,
        raw.iter().map(|(id, _, _)| id.clone()).collect(),
    );
    let mut deployments = Vec::new();
    for (id, (_, revisions, history)) in names.into_iter().zip(raw) {
        let revision_names = ids(
            revisions.len(),
            &mut revision_ids,
            revisions.iter().map(|(id, _, _)| id.clone()).collect(),
        );
        let revisions = revision_names
            .into_iter()
            .zip(revisions)
            .map(|(id, (_, settings, drain_seconds))| GenRevision {
                id,
                settings,
                drain_seconds,
            })
            .collect();
        let history = ids(history.len(), &mut revision_ids, history);
        deployments.push(GenDeployment { id, revisions, history });
    }
    Scenario { deployments, ops }
}

/// The coverage case every run starts with, whatever its seed: one of
/// every edge shape, so that a verdict never depends on the draw.
///
/// Three deployments whose ids are a word, the word in capitals and the
/// word extended; revisions whose ids are a ULID, its extension, its
/// prefix and it in lower case; 256-byte ids in ASCII and in two-byte
/// characters and one 255 bytes long (a prefix of the 256-byte one);
/// unicode; one-byte ids differing in case. Every deployment has one
/// archived revision, so the working revisions of all three share
/// sequences 2, 3, .... Every realistic setting is used. The steps stage
/// and warm everything, split the traffic unevenly (with a zero weight),
/// apply, probe, move all traffic to one revision per deployment, drain
/// and archive the others, and report.
pub fn coverage() -> Scenario {
    let ulid = "01JCOVERAGE000000000000000";
    let long = "l".repeat(MAX_ID_BYTES);
    let shapes: [(&str, Vec<String>); 3] = [
        (
            "svc",
            vec![
                ulid.to_string(),
                format!("{ulid}-1"),
                ulid[..12].to_string(),
                ulid.to_lowercase(),
            ],
        ),
        (
            "SVC",
            vec![
                long.clone(),
                long[..MAX_ID_BYTES - 1].to_string(),
                "é".repeat(MAX_ID_BYTES / 2),
                "ревизия-部署-✓".to_string(),
            ],
        ),
        ("svc-1", vec!["x".to_string(), "X".to_string()]),
    ];
    let mut setting = REALISTIC_SETTINGS.iter().cycle();
    let deployments: Vec<GenDeployment> = shapes
        .into_iter()
        .enumerate()
        .map(|(d, (id, revisions))| GenDeployment {
            id: id.to_string(),
            history: vec![format!("01JCOVERAGEHISTORY00000000{d}")],
            revisions: revisions
                .into_iter()
                .enumerate()
                .map(|(r, id)| GenRevision {
                    id,
                    settings: (0..4)
                        .filter_map(|_| setting.next())
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    drain_seconds: u32::try_from(r % 3).unwrap_or(0),
                })
                .collect(),
        })
        .collect();
    // Revision verbs pick among the revisions the host would send them
    // for, so index 0 takes the next one in order each time.
    let total: usize = deployments.iter().map(|d| d.revisions.len()).sum();
    let others = total - deployments.len();
    let mut ops = Vec::new();
    ops.extend(std::iter::repeat_n(Op::Stage(0), total));
    ops.extend(std::iter::repeat_n(Op::Warm(0), total));
    for (d, deployment) in deployments.iter().enumerate() {
        // Uneven weights, one of them zero where there are three or more.
        let n = deployment.revisions.len();
        let weights = (0..n)
            .map(|i| if i == 1 && n > 2 { 0 } else { 7_001 - 2_000 * i as u32 })
            .collect();
        ops.push(Op::Split(d, weights, false));
        ops.push(Op::Apply(d));
    }
    ops.extend((0..total).map(Op::Probe));
    ops.push(Op::Report);
    // All traffic to the first revision of each deployment, the others
    // listed at weight 0; drain them.
    for (d, deployment) in deployments.iter().enumerate() {
        let mut weights = vec![0; deployment.revisions.len()];
        weights[0] = 10_000;
        ops.push(Op::Split(d, weights, true));
        ops.push(Op::Apply(d));
    }
    ops.extend(std::iter::repeat_n(Op::Drain(0), others));
    // A split no longer listing them (odd weights leave inactive revisions
    // out); archive them.
    for (d, deployment) in deployments.iter().enumerate() {
        let mut weights = vec![1; deployment.revisions.len()];
        weights[0] = 10_000;
        ops.push(Op::Split(d, weights, false));
        ops.push(Op::Apply(d));
    }
    ops.extend(std::iter::repeat_n(Op::Archive(0), others));
    ops.extend((0..total).map(Op::Probe));
    ops.push(Op::Report);
    Scenario { deployments, ops }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let mut runner = TestRunner::deterministic();
        for _ in 0..200 {
            let scenario = scenario(8).new_tree(&mut runner).unwrap().current();
            let mut revisions = BTreeSet::new();
            let mut deployments = BTreeSet::new();
            for d in &scenario.deployments {
                envpack_model::validate_id("deployment", &d.id).unwrap();
                assert!(deployments.insert(d.id.clone()), "duplicate deployment {:?}", d.id);
                for id in d.revisions.iter().map(|r| &r.id).chain(&d.history) {
                    envpack_model::validate_id("revision", id).unwrap();
                    assert!(revisions.insert(id.clone()), "duplicate revision {id:?}");
                }
            }
        }
    }

    #[test]
    fn the_coverage_case_has_every_edge_shape() {
        let scenario = coverage();
        let ids: Vec<&String> = scenario
            .deployments
            .iter()
            .flat_map(|d| d.revisions.iter().map(|r| &r.id))
            .collect();
        for id in &ids {
            envpack_model::validate_id("revision", id).unwrap();
        }
        let has = |f: &dyn Fn(&str, &str) -> bool| {
            ids.iter()
                .any(|a| ids.iter().any(|b| a != b && f(a.as_str(), b.as_str())))
        };
        assert!(has(&|a, b| b.starts_with(a)), "a prefix of another id");
        assert!(
            has(&|a, b| a.to_lowercase() == b.to_lowercase()),
            "ids differing in case"
        );
        assert!(ids.iter().any(|i| i.len() == MAX_ID_BYTES && i.is_ascii()));
        assert!(ids.iter().any(|i| i.len() == MAX_ID_BYTES && !i.is_ascii()));
        let settings: BTreeSet<&str> = scenario
            .deployments
            .iter()
            .flat_map(|d| d.revisions.iter().flat_map(|r| r.settings.keys().map(String::as_str)))
            .collect();
        assert_eq!(settings.len(), REALISTIC_SETTINGS.len(), "every realistic setting");
        assert!(
            scenario.deployments.iter().all(|d| d.history.len() == 1),
            "equal sequences"
        );
    }

    #[test]
    fn related_ids_are_prefixes_extensions_and_case_variants() {
        let base = "01JBWab".to_string();
        assert_eq!(related(Some(&base), "x".into(), Relation::Prefix), "01JB");
        assert_eq!(related(Some(&base), "x".into(), Relation::Extended), "01JBWab-1");
        assert_eq!(related(Some(&base), "x".into(), Relation::OtherCase), "01jbwAB");
        let long = "é".repeat(128);
        assert!(related(Some(&long), "x".into(), Relation::Extended).len() <= MAX_ID_BYTES);
        let mut seen = BTreeSet::from(["a".to_string()]);
        assert_eq!(unique("a".into(), &mut seen), "a~1");
    }
}
