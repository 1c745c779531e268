//! Where the llama-server binary comes from: `--llama-server PATH`, else `LLAMA_SERVER`,
//! else `llama-server` on `PATH`. Nothing else is searched: the choice stays explicit.

use std::path::{Path, PathBuf};

use crate::backend::BackendError;

/// Resolves the binary from the flag value, the environment, or `PATH`.
pub fn resolve_binary(flag: Option<&Path>) -> Result<PathBuf, BackendError> {
    if let Some(path) = flag {
        return checked(path.to_owned(), "--llama-server");
    }
    if let Some(path) = std::env::var_os("LLAMA_SERVER").filter(|v| !v.is_empty()) {
        return checked(PathBuf::from(path), "LLAMA_SERVER");
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join("llama-server"))
        .find(|candidate| is_executable(candidate))
        .ok_or(BackendError::LlamaServerNotFound)
}

fn checked(path: PathBuf, origin: &'static str) -> Result<PathBuf, BackendError> {
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(BackendError::LlamaServerNotExecutable { path, origin })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn flag_path_must_be_an_executable_file() {
        let dir = std::env::temp_dir().join(format!("ozone-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let exe = dir.join("llama-server");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(resolve_binary(Some(&exe)).expect("resolves"), exe);

        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = resolve_binary(Some(&exe))
            .expect_err("not executable")
            .to_string();
        assert!(
            err.contains("--llama-server") && err.contains("llama-server"),
            "{err}"
        );
        let err = resolve_binary(Some(&dir))
            .expect_err("a folder")
            .to_string();
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }
}
