//! `ozone plugins new`: a strategy crate that builds anywhere, on a fresh machine.
//!
//! `ozone-sdk` is not on crates.io, so the crate carries it: the SDK's sources and its
//! contract (`wit/strategy.wit`) exactly as this `ozone` was built with them, embedded in
//! the binary and written to `<crate>/ozone-sdk/`, a path dependency. Its own
//! dependencies (serde, wit-bindgen) come from crates.io. The crate is a workspace of
//! its own, so it builds inside another workspace too; its policy is a working one with
//! native tests on the SDK's simulated machines.

use std::path::{Path, PathBuf};

/// The kind of strategy (WIT world) to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Context,
    Batch,
    Concurrency,
    Variant,
    Offload,
}

impl Kind {
    fn template(self) -> &'static str {
        match self {
            Kind::Context => include_str!("templates/context.rs.tmpl"),
            Kind::Batch => include_str!("templates/batch.rs.tmpl"),
            Kind::Concurrency => include_str!("templates/concurrency.rs.tmpl"),
            Kind::Variant => include_str!("templates/variant.rs.tmpl"),
            Kind::Offload => include_str!("templates/offload.rs.tmpl"),
        }
    }

    pub fn world(self) -> &'static str {
        match self {
            Kind::Context => "context-strategy",
            Kind::Batch => "batch-strategy",
            Kind::Concurrency => "concurrency-strategy",
            Kind::Variant => "variant-strategy",
            Kind::Offload => "offload-strategy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("plugin name `{0}`: use lowercase letters, digits, `-` and `_`, starting with a letter (it becomes the crate's name)")]
    InvalidName(String),
    #[error("{} already exists and is not empty: choose another --dir, or remove it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The SDK's files, embedded at build time (a test checks that none is missing).
pub const SDK_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../sdk/Cargo.toml")),
    ("README.md", include_str!("../../../sdk/README.md")),
    (
        "wit/strategy.wit",
        include_str!("../../../sdk/wit/strategy.wit"),
    ),
    ("src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("src/bisect.rs", include_str!("../../../sdk/src/bisect.rs")),
    ("src/timing.rs", include_str!("../../../sdk/src/timing.rs")),
    (
        "src/concurrency.rs",
        include_str!("../../../sdk/src/concurrency.rs"),
    ),
    ("src/export.rs", include_str!("../../../sdk/src/export.rs")),
    ("src/log.rs", include_str!("../../../sdk/src/log.rs")),
    ("src/macros.rs", include_str!("../../../sdk/src/macros.rs")),
    ("src/model.rs", include_str!("../../../sdk/src/model.rs")),
    (
        "src/offload.rs",
        include_str!("../../../sdk/src/offload.rs"),
    ),
    (
        "src/settings.rs",
        include_str!("../../../sdk/src/settings.rs"),
    ),
    (
        "src/strategy.rs",
        include_str!("../../../sdk/src/strategy.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../sdk/src/testing.rs"),
    ),
    ("src/tests.rs", include_str!("../../../sdk/src/tests.rs")),
    ("src/types.rs", include_str!("../../../sdk/src/types.rs")),
    (
        "src/variant.rs",
        include_str!("../../../sdk/src/variant.rs"),
    ),
];

/// What `write` made.
#[derive(Debug, Clone)]
pub struct Created {
    pub dir: PathBuf,
    pub name: String,
    /// The component's file name (`<name with underscores>.wasm`).
    pub wasm: String,
    pub files: Vec<PathBuf>,
}

/// Writes the crate `name` of `kind` into `dir` (created; it must not hold anything).
pub fn write(name: &str, kind: Kind, dir: &Path) -> Result<Created, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_string()));
    }
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) || dir.is_file() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("__NAME__", name)
            .replace("__CRATE__", &crate_name)
            .replace("__TYPE__", &type_name(name))
            .replace("__WORLD__", kind.world())
            .replace("__SDK_VERSION__", ozone_sdk::API_VERSION)
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), fill(CARGO_TOML)),
        ("src/lib.rs".into(), fill(kind.template())),
        ("README.md".into(), fill(&readme(kind))),
        (".gitignore".into(), "/target\n".into()),
    ];
    for (path, text) in SDK_FILES {
        files.push((Path::new("ozone-sdk").join(path), (*text).to_string()));
    }
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(&relative);
        let write = |source| ScaffoldError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(&path, text).map_err(write)?;
        written.push(relative);
    }
    Ok(Created {
        dir: dir.to_path_buf(),
        name: name.to_string(),
        wasm: format!("{crate_name}.wasm"),
        files: written,
    })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name != "ozone-sdk"
        && name != "ozone_sdk"
}

/// `my-policy` → `MyPolicy`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|first| first.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

const CARGO_TOML: &str = r#"[package]
name = "__NAME__"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the WebAssembly component ozone loads; rlib: the native tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The plugin SDK, vendored by `ozone plugins new` (it is not on crates.io): the sources
# and the contract (ozone-sdk/wit/strategy.wit, ozone:strategy@__SDK_VERSION__) of the
# ozone that wrote this crate.
ozone-sdk = { path = "ozone-sdk" }
serde = { version = "1", features = ["derive"] }

# A workspace of its own (with the vendored SDK), wherever the folder lives.
[workspace]
"#;

fn readme(kind: Kind) -> String {
    let (what, lab) = match kind {
        Kind::Context => (
            "context search",
            "ozone lab run --strategy binary-search \\\n        --strategy target/wasm32-wasip2/release/__CRATE__.wasm \\\n        --profile <ozone checkout>/examples/profiles/",
        ),
        Kind::Batch => (
            "batch scaler",
            "ozone lab run --strategy binary-search \\\n        --batch-strategy target/wasm32-wasip2/release/__CRATE__.wasm \\\n        --profile <ozone checkout>/examples/profiles/",
        ),
        Kind::Concurrency => (
            "concurrency search",
            "ozone plugins check target/wasm32-wasip2/release/__CRATE__.wasm --max-concurrency 16",
        ),
        Kind::Variant => (
            "variant search",
            "ozone plugins check target/wasm32-wasip2/release/__CRATE__.wasm",
        ),
        Kind::Offload => (
            "offload search",
            "ozone plugins check target/wasm32-wasip2/release/__CRATE__.wasm",
        ),
    };
    format!(
        "# __NAME__\n\
         \n\
         A {what} for Ozone (world `__WORLD__`, plugin API __SDK_VERSION__), written with\n\
         `ozone-sdk`, vendored in `ozone-sdk/` by `ozone plugins new` (its README is the\n\
         author's guide; `ozone-sdk/wit/strategy.wit` is the contract).\n\
         \n\
         The loop, from this folder:\n\
         \n\
         \x20   cargo test                                      # native: the SDK's simulated machines\n\
         \x20   rustup target add wasm32-wasip2                 # once\n\
         \x20   cargo build --target wasm32-wasip2 --release    # → target/wasm32-wasip2/release/__CRATE__.wasm\n\
         \x20   ozone plugins check target/wasm32-wasip2/release/__CRATE__.wasm\n\
         \x20   {lab}\n\
         \n\
         The first wasm build compiles the binding generator (wit-bindgen) for the target\n\
         folder: 70–90 s on two cores; after that a build takes seconds. Every crate has its\n\
         own `target/`, so share one between plugin crates to pay it once:\n\
         `export CARGO_TARGET_DIR=$HOME/.cache/ozone-plugins` (the `.wasm` is then under\n\
         `$CARGO_TARGET_DIR/wasm32-wasip2/release/`).\n\
         \n\
         Settings: `ozone.plugin_settings.__CRATE__` in `ozone.yaml`, or\n\
         `ozone lab run --settings '__CRATE__={{...}}'` to try variants offline.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_file_is_embedded() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        let mut on_disk = Vec::new();
        for folder in ["src", "wit"] {
            for entry in std::fs::read_dir(sdk.join(folder)).expect("sdk folder") {
                let name = entry.expect("entry").file_name();
                on_disk.push(format!("{folder}/{}", name.to_string_lossy()));
            }
        }
        for file in on_disk {
            assert!(
                SDK_FILES.iter().any(|(path, _)| *path == file),
                "sdk/{file} is not in scaffold::SDK_FILES: a new crate would miss it"
            );
        }
    }

    #[test]
    fn the_vendored_sdk_manifest_inherits_nothing_from_a_workspace() {
        let (_, manifest) = SDK_FILES[0];
        assert!(
            !manifest.contains("workspace = true"),
            "sdk/Cargo.toml must spell out its values: a vendored copy has no workspace"
        );
    }

    #[test]
    fn the_sdk_manifest_spells_out_the_workspace_values() {
        let (_, sdk) = SDK_FILES[0];
        let workspace = include_str!("../../../Cargo.toml");
        for key in ["version", "edition", "license", "rust-version"] {
            let line = |text: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("{key} = ")))
                    .map(str::to_string)
            };
            assert_eq!(line(sdk), line(workspace), "sdk/Cargo.toml `{key}`");
        }
        for dep in ["serde", "serde_json", "wit-bindgen"] {
            let line = |text: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("{dep} = ")))
                    .map(str::to_string)
            };
            assert_eq!(
                line(sdk),
                line(workspace),
                "sdk/Cargo.toml dependency `{dep}`"
            );
        }
    }

    #[test]
    fn names_become_crate_and_type_names() {
        assert_eq!(type_name("my-policy_2"), "MyPolicy2");
        assert!(valid_name("my-policy") && !valid_name("My") && !valid_name("1x"));
        assert!(!valid_name("ozone-sdk") && !valid_name("a b") && !valid_name(""));
    }

    #[test]
    fn a_crate_is_written_once_into_an_empty_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("my-search");
        let created = write("my-search", Kind::Context, &target).expect("written");
        assert_eq!(created.wasm, "my_search.wasm");
        let lib = std::fs::read_to_string(target.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("pub struct MySearch") && !lib.contains("__"));
        let manifest = std::fs::read_to_string(target.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("name = \"my-search\"") && manifest.contains("[workspace]"));
        assert!(target.join("ozone-sdk/wit/strategy.wit").is_file());
        assert!(matches!(
            write("my-search", Kind::Batch, &target),
            Err(ScaffoldError::Exists(_))
        ));
    }
}
