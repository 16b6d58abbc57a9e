//! Tells the SSH tests whether OpenSSH is installed. Without `sshd` and `ssh-keygen` (and
//! unless `PULSAR_REQUIRE_SSHD=1`, as CI sets) the tests that need them are compiled as
//! ignored, so every test summary counts them as skipped instead of passed.

use std::path::Path;

/// Where the tests look for the server (`pulsar_e2e::sshd::SSHD`).
const SSHD: &str = "/usr/sbin/sshd";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_openssh)");
    println!("cargo::rerun-if-env-changed=PULSAR_REQUIRE_SSHD");
    println!("cargo::rerun-if-env-changed=PATH");
    // Installing or removing OpenSSH changes these directories.
    println!("cargo::rerun-if-changed=/usr/sbin");
    let keygen = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("ssh-keygen"))
            .find(|path| path.is_file())
    });
    if let Some(dir) = keygen.as_deref().and_then(Path::parent) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let required = std::env::var("PULSAR_REQUIRE_SSHD").is_ok_and(|v| v == "1");
    let installed = Path::new(SSHD).is_file() && keygen.is_some();
    if !required && !installed {
        println!("cargo::rustc-cfg=no_openssh");
    }
}
