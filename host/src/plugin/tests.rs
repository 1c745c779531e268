//! The contract's versions: the one this host speaks, and the frozen older ones.

use sha2::{Digest, Sha256};

use super::API_VERSION;

fn package_line(wit: &str) -> Option<&str> {
    wit.lines().find_map(|l| l.strip_prefix("package "))
}

#[test]
fn the_host_binds_the_contract_of_its_api_version() {
    // `bindings.rs` binds `../wit/v0.3.0`; API_VERSION is the SDK's.
    let wit = include_str!("../../../wit/v0.3.0/strategy.wit");
    assert_eq!(
        package_line(wit),
        Some(format!("ozone:strategy@{API_VERSION};").as_str()),
        "bindings.rs binds wit/v0.3.0, but API_VERSION is {API_VERSION}: move both together"
    );
}

/// Plugins built for 0.2.0 exist: its contract stays as it was released.
#[test]
fn contract_0_2_0_is_frozen() {
    let wit = include_str!("../../../wit/v0.2.0/strategy.wit").replace("\r\n", "\n");
    assert_eq!(package_line(&wit), Some("ozone:strategy@0.2.0;"));
    let digest: String = Sha256::digest(wit.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest, "48aa0cea8d7c9e87890dd4682fb3e9ff0f68bb596b9e16fddbb31d26e3e12e64",
        "wit/v0.2.0/strategy.wit changed: a released contract is frozen; change wit/v{API_VERSION} (or start a new version) instead"
    );
}

/// A published contract never changes: plugins built against it exist. (Line endings
/// are normalised, so a Windows checkout passes too.)
#[test]
fn contract_0_1_0_is_frozen() {
    let wit = include_str!("../../../wit/v0.1.0/strategy.wit").replace("\r\n", "\n");
    assert_eq!(package_line(&wit), Some("ozone:strategy@0.1.0;"));
    let digest: String = Sha256::digest(wit.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest, "347fd5291317b8de7dc27563649c91272aa0e05dc5b449d680db2422c343c104",
        "wit/v0.1.0/strategy.wit changed: a released contract is frozen; change wit/v{API_VERSION} (or start a new version) instead"
    );
}
