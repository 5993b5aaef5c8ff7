//! Limits as data: the caps on what a call may return, and the largest
//! shape a pack may have before it is compiled (the walk that measures a
//! pack's shape is the host's; the figures and their names are here).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Largest artifact the host fetches for a revision.
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Caps on a call's result, checked after the call returns.
#[derive(Clone, Copy, Debug)]
pub struct ResultCaps {
    /// Largest total size of a result's strings and lists, in bytes.
    pub bytes: usize,
}

impl Default for ResultCaps {
    fn default() -> Self {
        ResultCaps { bytes: 1 << 20 }
    }
}

/// The six figures of a pack's shape, by the names `--pack-limit NAME=N`
/// uses: what the walk counted (the largest of each kind), and, inside
/// [`PackLimits`], what it may count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Core modules in the component (nested ones included).
    pub core_modules: u64,
    /// Functions defined by one core module.
    pub functions: u64,
    /// Locals declared by one function.
    pub locals_per_function: u64,
    /// Bytes of one function body.
    pub function_body_bytes: u64,
    /// Blocks, loops and ifs open at once in one function.
    pub nesting_depth: u64,
    /// Bytes of function bodies across the whole component.
    pub code_bytes: u64,
}

impl Shape {
    /// The figure called `name`: the one place names meet fields.
    pub fn slot(&mut self, name: &str) -> Option<&mut u64> {
        Some(match name {
            "core-modules" => &mut self.core_modules,
            "functions" => &mut self.functions,
            "locals-per-function" => &mut self.locals_per_function,
            "function-body-bytes" => &mut self.function_body_bytes,
            "nesting-depth" => &mut self.nesting_depth,
            "code-bytes" => &mut self.code_bytes,
            _ => return None,
        })
    }

    /// The figure called `name`.
    pub fn get(mut self, name: &str) -> Option<u64> {
        self.slot(name).map(|v| *v)
    }
}

/// The largest shape a pack may have before it is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PackLimits(pub Shape);

impl Default for PackLimits {
    fn default() -> Self {
        PackLimits(Shape {
            core_modules: 64,
            functions: 100_000,
            locals_per_function: 4_096,
            function_body_bytes: 1 << 20,
            nesting_depth: 1_024,
            code_bytes: 32 << 20,
        })
    }
}

/// The limit names, in the order the README lists them.
pub const LIMIT_NAMES: [&str; 6] = [
    "core-modules",
    "functions",
    "locals-per-function",
    "function-body-bytes",
    "nesting-depth",
    "code-bytes",
];

impl PackLimits {
    /// Sets one limit from `NAME=N`.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("{assignment:?} is not NAME=N (names: {})", LIMIT_NAMES.join(", ")))?;
        let value = u64::from_str(value.trim())
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("pack limit {name}: {value:?} is not a positive whole number"))?;
        let slot = self.0.slot(name.trim()).ok_or_else(|| {
            format!(
                "there is no pack limit named {name:?} (names: {})",
                LIMIT_NAMES.join(", ")
            )
        })?;
        *slot = value;
        Ok(())
    }
}

/// A pack past a limit, or bytes the walk cannot read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    #[error("{0}")]
    Over(Over),
    #[error("malformed WebAssembly at byte {offset}: {message}")]
    Malformed { offset: usize, message: String },
}

/// Which limit, by how much, and where.
#[derive(Debug, PartialEq, Eq)]
pub struct Over {
    pub limit: &'static str,
    pub cap: u64,
    pub found: u64,
    pub at: String,
}

impl fmt::Display for Over {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} where the pack limit {} is {}",
            self.at, self.found, self.limit, self.cap
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_by_name() {
        let mut limits = PackLimits::default();
        limits.set("nesting-depth=9").unwrap();
        assert_eq!(limits.0.nesting_depth, 9);
        for name in LIMIT_NAMES {
            limits.set(&format!("{name}=1")).unwrap();
        }
        assert_eq!(limits.0.code_bytes, 1);
        assert!(
            limits
                .set("stack=1")
                .unwrap_err()
                .contains("no pack limit named \"stack\"")
        );
        assert!(
            limits
                .set("functions=0")
                .unwrap_err()
                .contains("not a positive whole number")
        );
        assert!(limits.set("functions").unwrap_err().contains("is not NAME=N"));
    }
}
