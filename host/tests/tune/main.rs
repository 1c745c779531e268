//! `ozone tune` end to end, as a user runs it: the real binary (`common::cli`), a real
//! llama-server on generated models, or the hostile fake server where a fault must be
//! made on demand. Grouped by what is tested: the runs and their files (`runs`), the
//! concurrency phase (`concurrency`), the exit codes (`exit_codes`), stopping
//! (`stops`), a server that cannot start (`cannot_start`), results written whole
//! (`outputs`), the deploy files (`deploy`) and `--resume` (`resume`).

#[path = "../common/mod.rs"]
mod common;

mod cannot_start;
mod concurrency;
mod deploy;
mod exit_codes;
mod outputs;
mod resume;
mod runs;
mod stops;

use std::path::Path;

use common::hostile::Behaviour;

/// A model of 2048 trained tokens: the context search has one step.
pub fn small_model(path: &Path) {
    let spec = ozone::backend::gguf::TinyModelSpec {
        trained_context: 2048,
        ..Default::default()
    };
    ozone::backend::gguf::write_tiny_model(path, &spec).expect("write the model");
}

/// One real trial per model: the smallest context, no batch or concurrency phase.
pub fn one_trial_config(dir: &Path) -> String {
    let path = dir.join("one-trial.yaml");
    let text = format!("{}  warmup: false\n", common::QUICK_CONFIG).replace(
        "search_strategy:\n",
        "search_strategy:\n  batch_adaptation:\n    enabled: false\n",
    );
    std::fs::write(&path, text).expect("write the config");
    path.display().to_string()
}

/// `/v1/models` of a server serving one model with a 4096-token context.
pub fn models_json() -> Behaviour {
    Behaviour::Json(
        r#"{"object":"list","data":[{"id":"m","object":"model","meta":{"n_ctx_train":4096}}]}"#
            .into(),
    )
}
