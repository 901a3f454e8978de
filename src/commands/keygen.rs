//! `keygen`: a new Ed25519 key pair for signed manifests.

use crate::cli::KeygenArgs;
use std::io::Write;
use std::process::ExitCode;

/// Writes OUT.key and OUT.pub and prints the key id.
pub fn keygen(args: &KeygenArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let pair = crate::signing::keygen(&args.out)?;
    writeln!(
        out,
        "private key {} (mode 0600: give it to `serve --signing-key`, keep it secret)",
        pair.private.display()
    )?;
    writeln!(out, "public key  {} (embed it in the apps; `request --verify-key`)", pair.public.display())?;
    writeln!(out, "key id      {}", pair.key_id)?;
    Ok(ExitCode::SUCCESS)
}
