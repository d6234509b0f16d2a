//! The kubelet stand-in as a program, for the VM suite:
//! `kubelet_standin <listen addr> <PodList file> [<token file> <CA PEM out>]`.
//! With a token file it serves HTTPS and writes its CA to the given path.

// Shared with the integration tests, which use the parts this program does not.
#[allow(dead_code)]
#[path = "../tests/support/kubelet_standin.rs"]
mod kubelet_standin;

use std::path::PathBuf;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(pods)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: kubelet_standin <listen addr> <PodList file> [<token file> <CA PEM out>]");
        std::process::exit(2);
    };
    let token = match args.get(3) {
        Some(f) => Some(std::fs::read_to_string(f)?.trim().to_owned()),
        None => None,
    };
    let s = kubelet_standin::start(listen, PathBuf::from(pods), token).await?;
    if let (Some(pem), Some(out)) = (&s.ca_pem, args.get(4)) {
        std::fs::write(out, pem)?;
    }
    println!("serving {}", s.url());
    std::future::pending::<()>().await;
    Ok(())
}
