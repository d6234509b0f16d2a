//! Compiles the BPF C programs with clang into `$OUT_DIR`, where `src/lib.rs` embeds them, and
//! generates the Rust side of the kernel/user ABI from `bpf/nasflow.h` with bindgen, so the
//! header is the only copy of every shared struct, enum and constant.
use std::{env, path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

/// (object, source, extra clang flags): the client probe, its build for kernels before 5.12 (no
/// fetching atomics), the server probe, and the no-op baseline.
const OBJECTS: &[(&str, &str, &[&str])] = &[
    ("nasflow", "nasflow", &[]),
    ("nasflow-compat", "nasflow", &["-DNASFLOW_COMPAT"]),
    ("nfsd", "nfsd", &[]),
    ("noop", "noop", &[]),
];

/// The kernel's fixed-width types, which `nasflow.h` uses without including anything.
const ABI_PRELUDE: &str = "typedef unsigned char __u8;\n\
typedef unsigned short __u16;\n\
typedef unsigned int __u32;\n\
typedef unsigned long long __u64;\n\
typedef signed char __s8;\n\
typedef short __s16;\n\
typedef int __s32;\n\
typedef long long __s64;\n\
#include \"nasflow.h\"\n";

fn main() -> Result<()> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let arch = match env::var("CARGO_CFG_TARGET_ARCH")?.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => bail!("nasflow's BPF programs are not ported to {other} yet"),
    };
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=bpf");
    for (name, source, flags) in OBJECTS {
        let src = format!("bpf/{source}.bpf.c");
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", "-mcpu=v3", "-Wall", "-Werror"])
            .args(*flags)
            .arg(format!("-D__TARGET_ARCH_{arch}"))
            .args(["-Ibpf", "-c", &src, "-o"])
            .arg(&obj)
            .status()
            .with_context(|| {
                format!(
                    "running {clang} to build {src}: install clang and libbpf-dev (apt-get install clang libbpf-dev)"
                )
            })?;
        if !status.success() {
            bail!("{clang} failed on {src} ({status})");
        }
    }
    generate_abi(&out)
}

/// `$OUT_DIR/abi.rs`: every `nasflow_*` type and `NASFLOW_*` constant of the header, with
/// bindgen's compile-time asserts of each struct's size, alignment and field offsets.
fn generate_abi(out: &std::path::Path) -> Result<()> {
    let bindings = bindgen::Builder::default()
        .header_contents("nasflow_abi.h", ABI_PRELUDE)
        .clang_args(["-Ibpf", "-target", "bpf"])
        .allowlist_type("nasflow_.*")
        .allowlist_var("NASFLOW_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .use_core()
        .layout_tests(true)
        .derive_default(true)
        .derive_eq(true)
        .derive_hash(true)
        .derive_ord(true)
        .derive_debug(true)
        // Shown as its text, not as 24 numbers (`impl Debug` in lib.rs).
        .no_debug("nasflow_proc_name")
        .generate_comments(true)
        .generate()
        .context("generating Rust bindings from bpf/nasflow.h (bindgen needs libclang: apt-get install clang)")?;
    bindings.write_to_file(out.join("abi.rs")).context("writing abi.rs")?;
    Ok(())
}
