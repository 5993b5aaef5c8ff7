//! `archive.releases` after each archive of the generated sequences: no kv
//! key or value and no file of the work directory names the revision (as a
//! word of its own: longer sibling ids that contain it, however the pack
//! spells their separators, are not it), its artifact directory is gone,
//! and no process started for it still runs.

use std::collections::BTreeSet;

use envpack_host::revision_dir_name;
use envpack_model::quoted;

use super::model::Model;
use super::sequences::{Class, Violation, fail, ids};
use super::{Ctx, Lane};

/// Ids shorter than this (in characters) are not searched for in the
/// pack's state after archive: a short id also reads as a word of the
/// pack's own format.
const DISTINCTIVE_CHARS: usize = 6;

/// After archive: nothing of the pack's state names the revision, its
/// artifact directory is gone, and no process it started runs.
pub(super) fn released(
    ctx: &Ctx<'_>,
    model: &Model,
    revision: &str,
    spawned: Option<&BTreeSet<String>>,
) -> Result<(), Violation> {
    let env = model.env();
    let others = model.other_ids(revision);
    // A deployment (or the environment) with the very same id makes every
    // mention ambiguous: the pack may rightly keep the other one's name.
    let shared = others.iter().any(|other| other == revision);
    if revision.chars().count() >= DISTINCTIVE_CHARS && !shared {
        for (key, value) in ctx.kv_state(&env) {
            let text = format!("{key}\n{}", String::from_utf8_lossy(&value));
            if names(&text, revision, &others) {
                return fail(
                    Class::Archive,
                    format!(
                        "after archive-revision {} the pack's kv key {:?} still names it",
                        quoted(revision),
                        quoted(&key)
                    ),
                );
            }
        }
    }
    if let Some(dir) = ctx.work_dir(&env, Lane::Main) {
        if revision.chars().count() >= DISTINCTIVE_CHARS
            && !shared
            && let Some(file) = file_naming(&dir, revision, &others)
        {
            return fail(
                Class::Archive,
                format!(
                    "after archive-revision {} the pack's file {} in the work directory still names it",
                    quoted(revision),
                    quoted(&file)
                ),
            );
        }
        let left = dir.join("revisions").join(revision_dir_name(revision));
        if left.exists() {
            return fail(
                Class::Archive,
                format!(
                    "after archive-revision {} its directory revisions/{} is still in the work directory",
                    quoted(revision),
                    revision_dir_name(revision)
                ),
            );
        }
    }
    let live = ids(&ctx.live_process_list(&env));
    if let Some(still) = spawned.and_then(|s| s.intersection(&live).next()) {
        return fail(
            Class::Archive,
            format!(
                "after archive-revision {} process {still}, started for it, still runs",
                quoted(revision)
            ),
        );
    }
    Ok(())
}

/// Files the pack keeps at most this large are read for the revision's id.
const READ_BYTES: u64 = 1 << 20;

/// The first file or directory beneath the work directory `dir` whose path
/// or contents name `id` (as [`names`] judges), relative to `dir`. The
/// host's own process logs (`logs/`) are not the pack's to clean; links
/// are not followed.
fn file_naming(dir: &std::path::Path, id: &str, others: &[String]) -> Option<String> {
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > 10_000 {
                return None;
            }
            let path = entry.path();
            let relative = path.strip_prefix(dir).ok()?.to_string_lossy().into_owned();
            if relative == "logs" {
                continue;
            }
            if names(&relative, id, others) {
                return Some(relative);
            }
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file()
                && entry.metadata().is_ok_and(|m| m.len() <= READ_BYTES)
                && let Ok(bytes) = std::fs::read(&path)
                && names(&String::from_utf8_lossy(&bytes), id, others)
            {
                return Some(relative);
            }
        }
    }
    None
}

/// Whether `text` names `id` as a word of its own: other ids containing it
/// are taken out first, and an occurrence must not run into letters or
/// digits on either side, nor continue as a longer sibling id does when a
/// pack writes its separators otherwise (`~1` kept as `-1`, `_7e1`, `%7E1`).
pub(crate) fn names(text: &str, id: &str, others: &[String]) -> bool {
    // A sibling's revision directory, by the contract's rule, is a name
    // of it too: a long id's is its first 64 bytes, `~` and a hash, so the
    // directory of an id extending a 64-byte `id` starts with `id` itself.
    let directories: Vec<String> = others
        .iter()
        .map(|o| revision_dir_name(o))
        .filter(|d| !others.contains(d))
        .collect();
    let mut containing: Vec<&String> = others.iter().chain(&directories).filter(|o| o.contains(id)).collect();
    containing.sort_by_key(|o| std::cmp::Reverse(o.len()));
    // What longer siblings add after the id, from their first letter or digit.
    let continuations: Vec<String> = others
        .iter()
        .filter_map(|o| o.strip_prefix(id))
        .map(|rest| rest.trim_start_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|rest| !rest.is_empty())
        .collect();
    let mut text = text.to_string();
    for other in containing {
        text = text.replace(other.as_str(), "\u{1}");
    }
    text.match_indices(id).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let rest = &text[at + id.len()..];
        let after = rest.chars().next();
        let own_word = !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        own_word && !continues_as_sibling(rest, &continuations)
    })
}

/// Whether `rest` (what follows an occurrence) goes on with one of the
/// `continuations`, past separators and escapes of them.
fn continues_as_sibling(rest: &str, continuations: &[String]) -> bool {
    let bytes = rest.as_bytes();
    let mut at = 0;
    // Skip separators, and `%XX` / `_XX` escapes of them.
    loop {
        match bytes.get(at) {
            Some(b'%' | b'_')
                if bytes.len() >= at + 3 && bytes[at + 1].is_ascii_hexdigit() && bytes[at + 2].is_ascii_hexdigit() =>
            {
                at += 3;
            }
            Some(b) if !b.is_ascii_alphanumeric() && b.is_ascii() => at += 1,
            _ => break,
        }
        if at > 8 {
            break;
        }
    }
    let next = rest[at..].to_lowercase();
    continuations.iter().any(|c| next.starts_with(c.as_str()))
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn a_longer_siblings_directory_does_not_name_its_prefix() {
        let id = "a".repeat(64);
        let sibling = format!("{id}{}", "b".repeat(192));
        let others = vec![sibling.clone()];
        let directory = format!("revisions/{}/run.json", envpack_host::revision_dir_name(&sibling));
        assert!(directory.contains(&id), "{directory}");
        assert!(!names(&directory, &id, &others), "{directory}");
        // The id's own directory still names it.
        assert!(names(&format!("revisions/{id}/run.json"), &id, &others));
    }

    #[test]
    fn an_id_is_named_only_as_a_word_of_its_own() {
        let others = vec!["01JBW-1".to_string(), "web".to_string()];
        assert!(names("rev/01JBW", "01JBW", &others));
        assert!(names("{\"id\":\"01JBW\"}", "01JBW", &others));
        assert!(!names("rev/01JBW-1", "01JBW", &others), "another id containing it");
        assert!(!names("rev/01JBWX", "01JBW", &others), "runs into a letter");
        assert!(!names("x01JBW", "01JBW", &others));
        assert!(!names("nothing here", "01JBW", &others));
        // A sibling the pack spells with other separators is the sibling's.
        let others = vec!["01JBW~1".to_string()];
        for text in [
            "td/01JBW~1",
            "arn:family/envpack-dev-01JBW-1-ab12",
            "ev/01JBW_7e1/2",
            "k/01JBW%7E1",
        ] {
            assert!(!names(text, "01JBW", &others), "{text}");
        }
        assert!(
            names("arn:family/envpack-dev-01JBW-ab12", "01JBW", &others),
            "the revision itself"
        );
        assert!(names("td/01JBW", "01JBW", &others));
    }
}
