//! Shared by the plugin tests: a host with a shared compiled-component cache, the test
//! components, and a loop that drives any plugin handle to its end.

#![allow(dead_code)]

use std::path::PathBuf;

use ozone::plugin::{PluginError, PluginHost, PluginRef, SandboxLimits, Strategy};

/// A host sharing one compiled-component cache across the test binaries, so each
/// component is compiled once (cranelift is slow in debug builds).
pub fn host() -> PluginHost {
    host_with(SandboxLimits::default())
}

pub fn host_with(limits: SandboxLimits) -> PluginHost {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    PluginHost::new(limits, Some(cache)).expect("engine")
}

/// A test guest or example component (`ozone_test_artifacts::…`).
pub fn guest(path: &str) -> PluginRef {
    PluginRef::File(PathBuf::from(path))
}

/// What a plugin did when driven to the end.
#[derive(Debug, PartialEq)]
pub struct Run<T = u32> {
    pub proposals: Vec<T>,
    pub best: Option<T>,
}

/// Drives a plugin through the component until it proposes nothing (≤ 64 trials).
pub fn drive<S: Strategy>(
    plugin: &mut S,
    mut trial: impl FnMut(S::Proposal) -> S::Outcome,
) -> Result<Run<S::Proposal>, PluginError>
where
    S::Proposal: Copy + std::fmt::Debug,
{
    let mut proposals = Vec::new();
    while let Some(value) = plugin.propose()? {
        proposals.push(value);
        assert!(proposals.len() <= 64, "no end: {proposals:?}");
        plugin.observe(&trial(value))?;
    }
    Ok(Run {
        proposals,
        best: plugin.best()?,
    })
}
