//! Compile bombs through the real binary: components that are valid
//! WebAssembly but built to make the compiler slow or hungry. Each is
//! refused with the limit it crossed and how to raise it, within a bound on
//! time (the command's timeout) and memory (the largest child's peak RSS),
//! and leaves nothing in the compiled-code cache.

use crate::common::{LEDGER, Sandbox};
use envpack_test_packs::AWS_ECS;
use wasm_encoder::{
    CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection, TypeSection, ValType,
};

/// A component holding one core module with `functions` functions, each
/// built by `body` from its declared locals.
fn component(functions: u32, locals: u32, body: impl Fn(&mut Function)) -> Vec<u8> {
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
        body(&mut f);
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    module.section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// Every local live at once: each is read into a sum after all were written.
fn live_locals(locals: u32) -> impl Fn(&mut Function) {
    move |f| {
        for i in 0..locals {
            f.instruction(&Instruction::I64Const(i64::from(i)));
            f.instruction(&Instruction::LocalSet(i));
        }
        f.instruction(&Instruction::I64Const(0));
        for i in 0..locals {
            f.instruction(&Instruction::LocalGet(i));
            f.instruction(&Instruction::I64Add);
        }
        f.instruction(&Instruction::Drop);
    }
}

/// The peak RSS of the largest process this test binary has waited for
/// (a `host` or, through it, its compile worker), in bytes.
fn largest_child_rss() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    (usage.ru_maxrss as u64) << 10
}

/// The memory no bomb may make any process of the host take.
const RSS_BOUND: u64 = 1 << 30;

/// `host inspect` on `bytes` with `flags`: refused with exit 3 and a message
/// containing each of `needles`; returns the message.
fn refused(sb: &Sandbox, name: &str, bytes: &[u8], flags: &[&str], needles: &[&str]) -> String {
    let path = sb.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = sb.host().arg("inspect").arg(&path).args(flags).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{name}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{name}: expected {needle:?} in {stderr}");
    }
    assert!(
        largest_child_rss() < RSS_BOUND,
        "{name}: a process took {} MiB",
        largest_child_rss() >> 20
    );
    stderr
}

fn cache_entries(sb: &Sandbox) -> usize {
    std::fs::read_dir(sb.state_dir().join("cache"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn fifty_thousand_live_locals_are_refused_before_compiling() {
    let sb = Sandbox::new();
    refused(
        &sb,
        "locals.wasm",
        &component(1, 50_000, live_locals(50_000)),
        &[],
        &[
            "function 1 of core module 1 has 50000 where the pack limit locals-per-function is 4096",
            "raise it with --pack-limit locals-per-function=N",
        ],
    );
    assert_eq!(cache_entries(&sb), 0);
}

#[test]
fn millions_of_nested_blocks_are_refused_before_compiling() {
    let sb = Sandbox::new();
    // 400,000 nested blocks in one function: deep, and over a MiB of body.
    let nest = |depth: u32| {
        move |f: &mut Function| {
            for _ in 0..depth {
                f.instruction(&Instruction::Block(wasm_encoder::BlockType::Empty));
            }
            for _ in 0..depth {
                f.instruction(&Instruction::End);
            }
        }
    };
    refused(
        &sb,
        "deep.wasm",
        &component(1, 0, nest(400_000)),
        &[],
        &["pack limit function-body-bytes is 1048576"],
    );
    refused(
        &sb,
        "nested.wasm",
        &component(1, 0, nest(5_000)),
        &[],
        &["pack limit nesting-depth is 1024", "--pack-limit nesting-depth=N"],
    );
    assert_eq!(cache_entries(&sb), 0);
}

#[test]
fn tens_of_mebibytes_of_straight_line_code_are_refused_before_compiling() {
    let sb = Sandbox::new();
    // 40 functions of ~1,000,000 bytes each: every one within the body
    // limit, together over the 32 MiB of code.
    let straight = |f: &mut Function| {
        for _ in 0..1_000_000 {
            f.instruction(&Instruction::Nop);
        }
    };
    refused(
        &sb,
        "straight.wasm",
        &component(40, 0, straight),
        &[],
        &["the component's code has", "pack limit code-bytes is 33554432"],
    );
}

#[test]
fn a_bomb_within_every_shape_limit_is_stopped_by_the_compile_workers_limits() {
    let sb = Sandbox::new();
    // 4,000 live locals in each of 512 functions (about 20 MB of code):
    // inside every shape limit, and slow for the register allocator even
    // with Cranelift optimized (64 such functions compiled within 1 s then).
    let bomb = component(512, 4_000, live_locals(4_000));
    let message = refused(
        &sb,
        "slow.wasm",
        &bomb,
        &["--compile-seconds", "1"],
        &[
            "took more than the compile worker's 1 CPU seconds",
            "raise it with --compile-seconds",
        ],
    );
    assert!(!message.contains("panicked"), "{message}");
    assert_eq!(cache_entries(&sb), 0);
    // The same host loads a real pack right after.
    let out = sb.host().args(["inspect", LEDGER]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_compile_over_the_workers_memory_is_stopped_and_named() {
    // Within the shape limits Cranelift stays lean (a dense 640 KB function
    // compiles in under 256 MiB), so the memory limit is a backstop: shown
    // here with the largest reference pack and a limit below its needs.
    let sb = Sandbox::new();
    let pack = std::fs::read(AWS_ECS).unwrap();
    refused(
        &sb,
        "aws-ecs.wasm",
        &pack,
        &["--compile-memory-mib", "100"],
        &[
            "needed more than the compile worker's 100 MiB",
            "raise it with --compile-memory-mib",
        ],
    );
    assert_eq!(cache_entries(&sb), 0);
}

#[test]
fn a_raised_limit_lets_a_pack_through_and_a_bad_one_is_named() {
    let sb = Sandbox::new();
    let pack = component(1, 5_000, live_locals(10));
    // Over the default; let through (to the contract check) once raised.
    refused(&sb, "raised.wasm", &pack, &[], &["locals-per-function is 4096"]);
    let message = refused(
        &sb,
        "raised.wasm",
        &pack,
        &["--pack-limit", "locals-per-function=5000"],
        &["does not fit the envpack:deployer@1 contract"],
    );
    assert!(!message.contains("pack limit"), "{message}");
    let out = sb
        .host()
        .args(["inspect", LEDGER, "--pack-limit", "stack=1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("there is no pack limit named \"stack\""), "{stderr}");
}

#[test]
fn operator_paths_refuse_an_untrusted_bomb_before_compiling_it() {
    let sb = Sandbox::new();
    // Slow to compile but within every shape limit: only trust can stop it here.
    let path = sb.dir.path().join("bomb.wasm");
    std::fs::write(&path, component(64, 4_000, live_locals(4_000))).unwrap();
    let out = sb.host().arg("pack").arg("install").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("unsigned"), "{stderr}");
    assert_eq!(cache_entries(&sb), 0, "an untrusted pack was compiled");
}
