//! What a `process` grant allows beyond the program: the argument patterns
//! a spawn must match, the environment variables it may set, and the TCP
//! ports spawned programs may bind or connect to.
//!
//! A command grant is written as the program followed by one pattern per
//! argument, quoted as a shell would: `tar -xzf {path} -C {path}
//! --no-same-owner`. Each pattern is a literal, which the argument must
//! equal, or a placeholder:
//!
//! | placeholder | matches |
//! |---|---|
//! | `{path}` | a relative path inside the work directory: no leading `/` or `-`, no `..` component (the host also refuses one that passes through a symlink) |
//! | `{name}` | one word of `A-Z a-z 0-9 . _ : = @ + , -` not starting with `-` |
//! | `{number}` | decimal digits |
//! | `{any}` | any argument not starting with `-` |
//!
//! `...` after a placeholder repeats it zero or more times, and may come
//! last only. An argument that starts with `-` matches only a literal, so no
//! placeholder lets a pack slip an option (`--checkpoint-action=exec=...`)
//! into a granted program. A program granted with no pattern runs with no
//! arguments.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One pattern of a command grant, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ArgPattern(pub String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    Path,
    Name,
    Number,
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(String),
    Slot(Placeholder),
    /// The placeholder before it, any number of times (last only).
    Repeat(Placeholder),
}

fn placeholder(text: &str) -> Option<Placeholder> {
    Some(match text {
        "{path}" => Placeholder::Path,
        "{name}" => Placeholder::Name,
        "{number}" => Placeholder::Number,
        "{any}" => Placeholder::Any,
        _ => return None,
    })
}

/// Splits a grant (`PROGRAM PATTERN...`) as a shell would, and checks its
/// patterns; the program first.
pub fn split_grant(text: &str) -> Result<(String, Vec<ArgPattern>), String> {
    let words = shlex::split(text).ok_or_else(|| format!("{text:?} has an unclosed quote"))?;
    let Some((program, patterns)) = words.split_first() else {
        return Err("the grant is empty".into());
    };
    let patterns: Vec<ArgPattern> = patterns.iter().cloned().map(ArgPattern).collect();
    tokens(&patterns)?;
    Ok((program.clone(), patterns))
}

fn tokens(patterns: &[ArgPattern]) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let text = pattern.0.as_str();
        if text == "..." {
            let previous = match out.last() {
                Some(Token::Slot(p)) => *p,
                _ => return Err("`...` must follow a placeholder such as {any}".into()),
            };
            if i + 1 != patterns.len() {
                return Err("`...` may only come last".into());
            }
            out.push(Token::Repeat(previous));
        } else if let Some(p) = placeholder(text) {
            out.push(Token::Slot(p));
        } else if text.starts_with('{') && text.ends_with('}') {
            return Err(format!(
                "{text} is not a placeholder (placeholders: {{path}}, {{name}}, {{number}}, {{any}})"
            ));
        } else {
            out.push(Token::Literal(text.to_string()));
        }
    }
    Ok(out)
}

/// Why `arg` does not fit `p`, if it does not.
fn misfit(p: Placeholder, arg: &str) -> Option<&'static str> {
    if arg.starts_with('-') {
        return Some("it starts with `-`, and only a literal may");
    }
    match p {
        Placeholder::Any => None,
        Placeholder::Number => (arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit())).then_some("not a number"),
        Placeholder::Name => (arg.is_empty()
            || !arg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:=@+,".contains(&b)))
        .then_some("not a plain word"),
        Placeholder::Path => {
            if arg.is_empty() {
                Some("an empty path")
            } else if arg.starts_with('/') {
                Some("an absolute path; paths are relative to the working directory, inside the work directory")
            } else if arg.split('/').any(|c| c == "..") {
                Some("a path with `..`")
            } else if arg.contains(['\0', '\n']) {
                Some("a path with a NUL or newline")
            } else {
                None
            }
        }
    }
}

/// Whether `args` match `patterns`; the reason when they do not.
pub fn match_args(patterns: &[ArgPattern], args: &[String]) -> Result<(), String> {
    let tokens = tokens(patterns)?;
    let mut at = 0;
    for token in &tokens {
        match token {
            Token::Literal(text) => match args.get(at) {
                Some(arg) if arg == text => at += 1,
                Some(arg) => return Err(format!("argument {} is {arg:?} where {text:?} is granted", at + 1)),
                None => return Err(format!("argument {} ({text:?}) is missing", at + 1)),
            },
            Token::Slot(p) => match args.get(at) {
                Some(arg) => match misfit(*p, arg) {
                    None => at += 1,
                    Some(why) => return Err(format!("argument {} ({arg:?}) is {why}", at + 1)),
                },
                None => return Err(format!("argument {} is missing", at + 1)),
            },
            Token::Repeat(p) => {
                while let Some(arg) = args.get(at) {
                    if let Some(why) = misfit(*p, arg) {
                        return Err(format!("argument {} ({arg:?}) is {why}", at + 1));
                    }
                    at += 1;
                }
            }
        }
    }
    match args.get(at) {
        None => Ok(()),
        Some(arg) => Err(format!("argument {} ({arg:?}) is more than the grant allows", at + 1)),
    }
}

/// The arguments of `args` that a `{path}` placeholder matched, for the host
/// to check against the file system (call after [`match_args`] succeeded).
pub fn path_args<'a>(patterns: &[ArgPattern], args: &'a [String]) -> Vec<&'a str> {
    let Ok(tokens) = tokens(patterns) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let token = tokens.get(i).or_else(|| tokens.last());
        if matches!(
            token,
            Some(Token::Slot(Placeholder::Path) | Token::Repeat(Placeholder::Path))
        ) {
            paths.push(arg.as_str());
        }
    }
    paths
}

/// A grant's patterns as the operator wrote them.
pub struct Shown<'a>(pub &'a [ArgPattern]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self
            .0
            .iter()
            .map(|p| {
                let plain = !p.0.is_empty()
                    && p.0
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./{}:=@+,%".contains(&b));
                if plain {
                    p.0.clone()
                } else {
                    shlex::try_quote(&p.0).map_or_else(|_| p.0.clone(), |q| q.into_owned())
                }
            })
            .collect();
        f.write_str(&words.join(" "))
    }
}

/// Environment variables no grant can give a spawned program, exactly.
const REFUSED_NAMES: [(&str, &str); 20] = [
    ("PATH", "it decides which programs run"),
    ("HOME", "the host sets it"),
    ("TMPDIR", "the host sets it"),
    ("SHELL", "it names a program to run"),
    ("ENV", "a shell runs the file it names"),
    ("BASH_ENV", "a shell runs the file it names"),
    ("IFS", "it changes how a shell splits words"),
    ("CDPATH", "it changes where a shell goes"),
    ("PS4", "a shell expands it"),
    ("SHELLOPTS", "it changes how a shell runs"),
    ("BASHOPTS", "it changes how a shell runs"),
    ("GCONV_PATH", "it makes the C library load code"),
    ("LOCPATH", "it changes which files the C library reads"),
    ("NLSPATH", "it changes which files the C library reads"),
    ("HOSTALIASES", "it changes name resolution"),
    ("RESOLV_HOST_CONF", "it changes name resolution"),
    ("GLIBC_TUNABLES", "it changes how the C library runs"),
    ("NODE_OPTIONS", "it makes node load code"),
    ("PERL5OPT", "it makes perl load code"),
    ("ENVPACK_WORK_DIR", "the host sets it"),
];

/// Prefixes of environment variables no grant can give.
const REFUSED_PREFIXES: [(&str, &str); 11] = [
    ("LD_", "it changes how programs load code"),
    ("DYLD_", "it changes how programs load code"),
    ("MALLOC_", "it changes how the C library runs"),
    ("PYTHON", "it changes what python runs"),
    ("PERL", "it changes what perl runs"),
    ("RUBY", "it changes what ruby runs"),
    ("NODE_", "it changes what node runs"),
    ("JAVA_", "it changes what the JVM runs"),
    ("_JAVA", "it changes what the JVM runs"),
    ("GIT_", "it changes what git runs"),
    ("BASH_FUNC_", "a shell defines functions from it"),
];

/// Why no grant may give a spawned program variable `name`, if none may.
pub fn refused_env_var(name: &str) -> Option<&'static str> {
    REFUSED_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .or_else(|| REFUSED_PREFIXES.iter().find(|(p, _)| name.starts_with(p)))
        .map(|(_, why)| *why)
}

/// Checks an `--allow-env` grant: a variable name, or a prefix ending in
/// `*`; neither may reach a variable refused by name.
pub fn validate_env_grant(grant: &str) -> Result<(), String> {
    let (stem, prefix) = match grant.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (grant, false),
    };
    let valid = !stem.is_empty()
        && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !stem.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(format!(
            "cannot grant environment variable {grant:?}: a name is letters, digits and `_`, optionally ending in `*`"
        ));
    }
    if let Some(why) = refused_env_var(stem) {
        return Err(format!(
            "cannot grant environment variable {grant:?}: {why} (refused by name)"
        ));
    }
    if prefix {
        let reaches = REFUSED_NAMES
            .iter()
            .chain(REFUSED_PREFIXES.iter())
            .find(|(name, _)| name.starts_with(stem));
        if let Some((name, _)) = reaches {
            return Err(format!(
                "cannot grant environment variables {grant:?}: it would include {name}, which is refused by name"
            ));
        }
    }
    Ok(())
}

/// Whether `name` is given by one of `grants` (names or `PREFIX*`).
pub fn env_granted(grants: &[String], name: &str) -> bool {
    grants.iter().any(|g| match g.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => g == name,
    })
}

/// Checks a `--allow-port` grant: `PORT` or `FIRST-LAST`; the range.
pub fn parse_ports(grant: &str) -> Result<(u16, u16), String> {
    let bad = || format!("cannot grant ports {grant:?}: expected PORT or FIRST-LAST (e.g. 8080, 21000-21099)");
    let parse = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    let (first, last) = match grant.split_once('-') {
        Some((a, b)) => (parse(a).ok_or_else(bad)?, parse(b).ok_or_else(bad)?),
        None => {
            let port = parse(grant).ok_or_else(bad)?;
            (port, port)
        }
    };
    if last < first {
        return Err(bad());
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> Vec<ArgPattern> {
        split_grant(text).unwrap().1
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_grant_allows_its_pattern_and_nothing_else() {
        let tar = grant("tar -xzf {path} -C {path} --no-same-owner");
        assert_eq!(
            match_args(
                &tar,
                &args(&["-xzf", "artifact", "-C", "app.partial", "--no-same-owner"])
            ),
            Ok(())
        );
        for bad in [
            vec![
                "-xzf",
                "artifact",
                "-C",
                "app",
                "--no-same-owner",
                "--checkpoint-action=exec=sh",
            ],
            vec!["-cf", "-", "/etc/shadow"],
            vec!["-xzf", "/etc/shadow", "-C", "app", "--no-same-owner"],
            vec!["-xzf", "../../other/artifact", "-C", "app", "--no-same-owner"],
            vec!["-xzf", "--to-command=sh", "-C", "app", "--no-same-owner"],
            vec!["-xzf", "artifact"],
        ] {
            assert!(match_args(&tar, &args(&bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            path_args(&tar, &args(&["-xzf", "a", "-C", "b", "--no-same-owner"])),
            ["a", "b"]
        );
    }

    #[test]
    fn placeholders_and_repeats() {
        let sleep = grant("sleep {number}");
        assert!(match_args(&sleep, &args(&["30"])).is_ok());
        assert!(match_args(&sleep, &args(&["3s"])).is_err());
        assert!(match_args(&sleep, &args(&[])).is_err());
        let echo = grant("echo {any} ...");
        assert!(match_args(&echo, &args(&["a b", "c"])).is_ok());
        assert!(match_args(&echo, &args(&["a", "-n"])).is_err());
        let nginx = grant("nginx -p {path} -c {path} -e stderr -g 'daemon off;'");
        assert!(
            match_args(
                &nginx,
                &args(&["-p", ".", "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"])
            )
            .is_ok()
        );
        assert!(
            match_args(&grant("true"), &args(&["x"])).is_err(),
            "no pattern, no arguments"
        );
        assert!(split_grant("x {file}").unwrap_err().contains("not a placeholder"));
        assert!(split_grant("x ... {any}").is_err());
        assert!(split_grant("x 'open").is_err());
        assert_eq!(
            Shown(&nginx).to_string(),
            "-p {path} -c {path} -e stderr -g 'daemon off;'"
        );
    }

    #[test]
    fn dangerous_variables_are_refused_by_name() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PATH",
            "BASH_ENV",
            "PYTHONPATH",
            "ENVPACK_WORK_DIR",
        ] {
            assert!(refused_env_var(name).is_some(), "{name}");
            assert!(validate_env_grant(name).is_err(), "{name}");
        }
        assert!(refused_env_var("PORT").is_none());
        assert!(validate_env_grant("PORT").is_ok());
        assert!(validate_env_grant("APP_*").is_ok());
        let reach = validate_env_grant("L*").unwrap_err();
        assert!(reach.contains("refused by name"), "{reach}");
        assert!(validate_env_grant("*").is_err());
        assert!(validate_env_grant("1X").is_err());
        assert!(env_granted(&["APP_*".into(), "PORT".into()], "APP_MODE"));
        assert!(!env_granted(&["PORT".into()], "PORTS"));
    }

    #[test]
    fn ports() {
        assert_eq!(parse_ports("8080"), Ok((8080, 8080)));
        assert_eq!(parse_ports("21000-21099"), Ok((21000, 21099)));
        for bad in ["0", "9-8", "x", "1-70000", ""] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }
}
