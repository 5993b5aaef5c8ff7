//! The top-level sections of a pack file: finding, stripping and appending the
//! custom sections that carry the manifest and signatures. Nested modules and
//! components are skipped whole; only the outermost level is ever touched.

use std::ops::Range;

use wasm_encoder::{CustomSection, Section};
use wasmparser::{Chunk, Parser, Payload};

/// The custom section holding the pack's manifest (JSON).
pub const MANIFEST: &str = "envpack-manifest";
/// The custom section holding one signature (JSON); a pack may carry several.
pub const SIGNATURE: &str = "envpack-signature";

/// The file's section structure cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the file's section structure is damaged at byte {offset}: {message}")]
pub struct Malformed {
    pub offset: usize,
    pub message: String,
}

/// One top-level section: its byte range and, for custom sections, its name
/// and the range of its data.
#[derive(Clone, Debug)]
pub struct TopSection {
    pub range: Range<usize>,
    pub custom: Option<(String, Range<usize>)>,
}

/// Every top-level section after the 8-byte header, in order.
pub fn top_level(bytes: &[u8]) -> Result<Vec<TopSection>, Malformed> {
    if !bytes.starts_with(b"\0asm") {
        return Err(Malformed {
            offset: 0,
            message: "the file does not start with the WebAssembly magic bytes (\\0asm)".into(),
        });
    }
    let mut parser = Parser::new(0);
    let mut pos = 0usize;
    let mut sections = Vec::new();
    loop {
        let chunk = parser.parse(&bytes[pos..], true).map_err(|e| Malformed {
            offset: e.offset(),
            message: e.message().to_string(),
        })?;
        let Chunk::Parsed { consumed, payload } = chunk else {
            return Err(Malformed {
                offset: pos,
                message: "the file ends in the middle of a section".into(),
            });
        };
        let start = pos;
        pos = match &payload {
            // A nested module's declared size is not checked against the
            // bytes there are (found by the property tests).
            Payload::ModuleSection { unchecked_range, .. } | Payload::ComponentSection { unchecked_range, .. }
                if unchecked_range.end > bytes.len() =>
            {
                return Err(Malformed {
                    offset: start,
                    message: format!(
                        "a nested section claims to end at byte {}, past the end of the file ({} bytes)",
                        unchecked_range.end,
                        bytes.len()
                    ),
                });
            }
            Payload::ModuleSection { unchecked_range, .. } | Payload::ComponentSection { unchecked_range, .. } => {
                unchecked_range.end
            }
            _ => pos + consumed,
        };
        match payload {
            Payload::Version { .. } => {}
            Payload::End(_) => return Ok(sections),
            Payload::CustomSection(reader) => sections.push(TopSection {
                range: start..pos,
                custom: Some((
                    reader.name().to_string(),
                    reader.data_offset()..reader.data_offset() + reader.data().len(),
                )),
            }),
            _ => sections.push(TopSection {
                range: start..pos,
                custom: None,
            }),
        }
    }
}

/// The data of every top-level custom section named `name`.
pub fn custom<'a>(bytes: &'a [u8], name: &str) -> Result<Vec<&'a [u8]>, Malformed> {
    Ok(top_level(bytes)?
        .into_iter()
        .filter_map(|s| s.custom.filter(|(n, _)| n == name).map(|(_, data)| &bytes[data]))
        .collect())
}

/// The file without its top-level custom sections named in `names`.
pub fn strip(bytes: &[u8], names: &[&str]) -> Result<Vec<u8>, Malformed> {
    let sections = top_level(bytes)?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..8.min(bytes.len())]);
    for section in sections {
        let drop = section
            .custom
            .as_ref()
            .is_some_and(|(n, _)| names.contains(&n.as_str()));
        if !drop {
            out.extend_from_slice(&bytes[section.range]);
        }
    }
    Ok(out)
}

/// The names a component imports and exports at its top level (its
/// world's interfaces, e.g. `envpack:deployer/deployer@1.1.0`), in order.
pub fn component_world(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), Malformed> {
    let malformed = |e: wasmparser::BinaryReaderError| Malformed {
        offset: e.offset(),
        message: e.message().to_string(),
    };
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.map_err(malformed)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export.map_err(malformed)?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// Appends a custom section at the end of the file.
pub fn append(bytes: &mut Vec<u8>, name: &str, data: &[u8]) {
    CustomSection {
        name: name.into(),
        data: data.into(),
    }
    .append_to(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty component: magic, component version and layer.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn append_find_and_strip() {
        let mut bytes = EMPTY_COMPONENT.to_vec();
        append(&mut bytes, MANIFEST, b"{}");
        append(&mut bytes, SIGNATURE, b"sig-1");
        append(&mut bytes, SIGNATURE, b"sig-2");
        assert_eq!(custom(&bytes, SIGNATURE).unwrap(), vec![&b"sig-1"[..], &b"sig-2"[..]]);
        assert_eq!(custom(&bytes, MANIFEST).unwrap(), vec![&b"{}"[..]]);
        let stripped = strip(&bytes, &[SIGNATURE]).unwrap();
        let mut expected = EMPTY_COMPONENT.to_vec();
        append(&mut expected, MANIFEST, b"{}");
        assert_eq!(stripped, expected);
    }

    #[test]
    fn truncated_file_is_malformed() {
        let mut bytes = EMPTY_COMPONENT.to_vec();
        append(&mut bytes, MANIFEST, b"{\"descriptor\":1}");
        bytes.truncate(bytes.len() - 3);
        assert!(top_level(&bytes).is_err());
    }
}

#[cfg(test)]
mod regression {
    use super::top_level;

    /// A component whose nested module claims more bytes than the file has
    /// (found by `host/tests/untrusted_bytes.rs`): malformed, not a panic.
    #[test]
    fn a_nested_module_longer_than_the_file_is_malformed() {
        // Component header, then a module section (id 1) claiming 50 bytes.
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend_from_slice(&[1, 50]);
        bytes.extend_from_slice(b"\0asm\x01\0\0\0");
        let error = top_level(&bytes).unwrap_err();
        assert!(error.message.contains("past the end of the file"), "{error:?}");
    }
}
