//! `.ci/gpu-check` on a machine without an NVIDIA GPU: it says so and exits 3 before
//! building or running anything. (On a GPU machine the check itself is run by hand; see
//! DEVELOPERS.md.)

use std::path::Path;
use std::process::Command;

fn gpu_check(nvidia_smi: &Path) -> (Option<i32>, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/gpu-check");
    let out = Command::new(&script)
        .env("NVIDIA_SMI", nvidia_smi)
        .output()
        .expect("run .ci/gpu-check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_nvidia_smi_it_says_so_and_exits_3() {
    let (code, stdout, stderr) = gpu_check(Path::new("/nonexistent/nvidia-smi"));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        "gpu-check: no NVIDIA GPU here (/nonexistent/nvidia-smi: No such file or directory); \
         nothing to check on this machine"
    );
}

#[test]
fn a_driver_without_a_device_is_no_gpu_either() {
    // What nvidia-smi prints with the driver loaded and no device visible.
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = dir.path().join("nvidia-smi");
    std::fs::write(&fake, "#!/bin/sh\necho 'No devices were found'\nexit 6\n").expect("write");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (code, _, stderr) = gpu_check(&fake);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("no NVIDIA GPU here (No devices were found)"),
        "{stderr}"
    );
}
