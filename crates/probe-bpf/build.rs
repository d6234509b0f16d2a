//! Compiles the BPF C programs with clang into `$OUT_DIR`, where `src/lib.rs` embeds them.
use std::{env, path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

const PROGRAMS: &[&str] = &["nasflow", "noop"];

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
    for name in PROGRAMS {
        let src = format!("bpf/{name}.bpf.c");
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", "-mcpu=v3", "-Wall", "-Werror"])
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
    Ok(())
}
