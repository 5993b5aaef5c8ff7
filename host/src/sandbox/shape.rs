//! The shape a pack may have before the host compiles it: one linear walk
//! over the component's core modules that counts what makes Cranelift slow
//! or hungry (functions, locals, body sizes, block nesting, code bytes) and
//! refuses a pack past any [`PackLimits`] before a single function is
//! compiled. The limits sit far above what compilers emit for real packs
//! (the reference packs' figures are in the README) and each refusal names
//! the limit and how to raise it. What the walk cannot see (a function that
//! is slow to compile within every limit) is bounded by the compile
//! worker's time and memory limits (`super::compile`).

use envpack_model::{Over, PackLimits, Shape, ShapeError};
use wasmtime::wasmparser::{Operator, Parser, Payload};

fn malformed(e: wasmtime::wasmparser::BinaryReaderError) -> ShapeError {
    ShapeError::Malformed {
        offset: e.offset(),
        message: e.message().to_string(),
    }
}

struct Walk {
    limits: PackLimits,
    shape: Shape,
    module: u64,
    function: u64,
}

impl Walk {
    fn check(&mut self, limit: &'static str, found: u64, at: impl FnOnce() -> String) -> Result<(), ShapeError> {
        let (Some(cap), Some(largest)) = (self.limits.0.get(limit), self.shape.slot(limit)) else {
            unreachable!("the walk checks limits by their own names, {limit:?} is not one")
        };
        *largest = (*largest).max(found);
        if found > cap {
            return Err(ShapeError::Over(Over {
                limit,
                cap,
                found,
                at: at(),
            }));
        }
        Ok(())
    }

    fn where_function(&self) -> String {
        format!("function {} of core module {}", self.function, self.module)
    }

    fn body(&mut self, body: wasmtime::wasmparser::FunctionBody<'_>) -> Result<(), ShapeError> {
        self.function += 1;
        let size = body.range().len() as u64;
        let at = self.where_function();
        self.check("function-body-bytes", size, || at.clone())?;
        let code = self.shape.code_bytes.saturating_add(size);
        self.check("code-bytes", code, || "the component's code".into())?;
        let mut locals = 0u64;
        for entry in body.get_locals_reader().map_err(malformed)? {
            let (count, _) = entry.map_err(malformed)?;
            locals = locals.saturating_add(u64::from(count));
            self.check("locals-per-function", locals, || at.clone())?;
        }
        let mut operators = body.get_operators_reader().map_err(malformed)?;
        let (mut depth, mut deepest) = (0u64, 0u64);
        while !operators.eof() {
            match operators.read().map_err(malformed)? {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::TryTable { .. }
                | Operator::Try { .. } => {
                    depth += 1;
                    if depth > deepest {
                        deepest = depth;
                        self.check("nesting-depth", deepest, || at.clone())?;
                    }
                }
                Operator::End => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Walks `bytes` (a component or a core module) and checks it against `limits`.
pub fn check(bytes: &[u8], limits: &PackLimits) -> Result<Shape, ShapeError> {
    let mut walk = Walk {
        limits: *limits,
        shape: Shape::default(),
        module: 0,
        function: 0,
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::Version {
                encoding: wasmtime::wasmparser::Encoding::Module,
                ..
            } => {
                walk.module += 1;
                walk.function = 0;
                let modules = walk.module;
                walk.check("core-modules", modules, || "the component".into())?;
            }
            Payload::CodeSectionStart { count, .. } => {
                let at = format!("core module {}", walk.module);
                walk.check("functions", u64::from(count), || at)?;
            }
            Payload::CodeSectionEntry(body) => walk.body(body)?,
            _ => {}
        }
    }
    Ok(walk.shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, Module, TypeSection, ValType};

    /// A core module with one function of `locals` locals and `depth` nested blocks.
    fn module(functions: u32, locals: u32, depth: u32) -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut funcs = FunctionSection::new();
        for _ in 0..functions {
            funcs.function(0);
        }
        module.section(&funcs);
        let mut code = CodeSection::new();
        for _ in 0..functions {
            let mut f = Function::new([(locals, ValType::I64)]);
            for _ in 0..depth {
                f.instruction(&Instruction::Block(wasm_encoder::BlockType::Empty));
            }
            for _ in 0..depth {
                f.instruction(&Instruction::End);
            }
            f.instruction(&Instruction::End);
            code.function(&f);
        }
        module.section(&code);
        module.finish()
    }

    #[test]
    fn counts_what_it_sees() {
        let shape = check(&module(3, 7, 5), &PackLimits::default()).unwrap();
        assert_eq!(shape.core_modules, 1);
        assert_eq!(shape.functions, 3);
        assert_eq!(shape.locals_per_function, 7);
        assert_eq!(shape.nesting_depth, 5);
    }

    #[test]
    fn each_limit_refuses_with_its_name() {
        let limits = PackLimits::default();
        let cases = [
            (module(1, 50_000, 0), "locals-per-function"),
            (module(1, 0, 5_000), "nesting-depth"),
            (module(100_001, 0, 0), "functions"),
        ];
        for (bytes, limit) in cases {
            match check(&bytes, &limits) {
                Err(ShapeError::Over(over)) => assert_eq!(over.limit, limit, "{over}"),
                other => panic!("{limit}: {other:?}"),
            }
        }
        let mut small = PackLimits::default();
        small.set("function-body-bytes=8").unwrap();
        let error = check(&module(1, 0, 10), &small).unwrap_err().to_string();
        assert!(
            error.contains("function 1 of core module 1 has 34 where the pack limit function-body-bytes is 8"),
            "{error}"
        );
        small = PackLimits::default();
        small.set("code-bytes=40").unwrap();
        assert!(matches!(
            check(&module(20, 0, 0), &small),
            Err(ShapeError::Over(Over {
                limit: "code-bytes",
                ..
            }))
        ));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bytes in [
            &b"\0asm\x01\0\0\0\x0a\xff\xff"[..],
            b"\0asm",
            b"",
            b"\0asm\x0d\0\x01\0\x01\x02",
        ] {
            let _ = check(bytes, &PackLimits::default());
        }
        assert!(matches!(
            check(b"\0asm\x01\0\0\0\x0a\xff\xff", &PackLimits::default()),
            Err(ShapeError::Malformed { .. })
        ));
    }
}
