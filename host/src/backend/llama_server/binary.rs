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
