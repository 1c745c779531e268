//! Nothing a model's name holds is ever executed by a generated file: the deploy script
//! quotes it, the Modelfile refuses what it cannot hold.

use std::path::PathBuf;
use std::process::Command;

use crate::common;
use crate::common::cli::{ozone, OK, RUN_ENDS};
use crate::{one_trial_config, small_model};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_model_names_are_quoted_in_the_script_and_refused_by_the_modelfile() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // Every one of these would run `touch` if pasted into a shell or a Modelfile as is.
    let names = [
        "sp ace's $(touch PWNED1) `touch PWNED2`.gguf",
        "new\ntouch PWNED3\n\"quoted\" $(touch PWNED4).gguf",
    ];
    let models: Vec<PathBuf> = names.iter().map(|n| cwd.join(n)).collect();
    for model in &models {
        small_model(model);
    }
    // The server the deploy scripts will run: the real one during the tune, a stand-in
    // that records its arguments afterwards.
    let server = cwd.join("server.sh");
    std::fs::write(
        &server,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\"\n",
            common::llama_server().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = one_trial_config(cwd);
    let mut args = vec!["tune"];
    args.extend(models.iter().map(|m| m.to_str().unwrap()));
    args.extend([
        "--llama-server",
        server.to_str().unwrap(),
        "--config",
        &config,
        "--skip-concurrency",
    ]);
    let out = ozone(cwd, &args).within(RUN_ENDS).run();
    out.code(OK);

    std::fs::write(
        &server,
        "#!/bin/sh\nfor word in \"$@\"; do printf '%s\\0' \"$word\"; done > \"$ARGS_OUT\"\n",
    )
    .unwrap();
    let deploy = cwd.join("ozone_results/deploy");
    let scripts: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".llama-server.sh"))
        .collect();
    assert_eq!(scripts.len(), 2, "{scripts:?}");
    let mut served = Vec::new();
    for script in &scripts {
        let args_out = cwd.join("args");
        let status = Command::new("sh")
            .arg(script)
            .args(["--port", "8081"])
            .current_dir(cwd)
            .env("ARGS_OUT", &args_out)
            .status()
            .expect("run the deploy script");
        assert!(status.success(), "{}", script.display());
        let words: Vec<String> = std::fs::read(&args_out)
            .unwrap()
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(words[0], "-m", "{words:?}");
        assert_eq!(&words[words.len() - 2..], ["--port", "8081"]);
        served.push(PathBuf::from(&words[1]));
    }
    served.sort();
    let mut expected: Vec<PathBuf> = models
        .iter()
        .map(|m| std::fs::canonicalize(m).unwrap())
        .collect();
    expected.sort();
    assert_eq!(
        served, expected,
        "each script serves its model's exact path"
    );
    let pwned: Vec<_> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("PWNED"))
        .collect();
    assert!(
        pwned.is_empty(),
        "a generated file ran a command: {pwned:?}"
    );

    // The Modelfile of the first holds its path as it is; the second cannot be written.
    let modelfiles: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".Modelfile"))
        .collect();
    assert_eq!(modelfiles.len(), 1, "{modelfiles:?}");
    let text = std::fs::read_to_string(&modelfiles[0]).unwrap();
    let directives: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let from = format!(
        "FROM {}",
        expected
            .iter()
            .find(|p| !p.to_string_lossy().contains('\n'))
            .unwrap()
            .display()
    );
    assert_eq!(directives[0], from, "{text}");
    assert!(
        directives[1..].iter().all(|d| d.starts_with("PARAMETER ")),
        "{text}"
    );
    assert!(
        out.stderr.contains("Modelfile not written: the model path"),
        "{}",
        out.stderr
    );
}
