//! A live trial against a real Ollama, only where one is configured: set `OLLAMA_HOST`
//! (and `OLLAMA_MODEL`, default `llama3.2:1b`, already pulled). Without `OLLAMA_HOST`
//! the test says so and does nothing; the Ollama contract is covered offline by the
//! captured-body tests in `backend::ollama`.

use ozone::backend::ollama::OllamaClient;
use ozone::backend::BackendSpec;
use ozone::guard::SamplerOptions;
use ozone::record::{Phase, Stage, TrialConfig, Verdict};
use ozone::trial::{TrialRunner, TrialSettings};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn live_ollama_trial() {
    let Some(host) = std::env::var("OLLAMA_HOST").ok().filter(|h| !h.is_empty()) else {
        eprintln!("OLLAMA_HOST is not set: live Ollama test not run");
        return;
    };
    let model = std::env::var("OLLAMA_MODEL").unwrap_or_else(|_| "llama3.2:1b".into());
    let client = OllamaClient::new(&host, &model);
    let version = client.version().await.expect("Ollama answers /api/version");
    assert!(!version.is_empty());

    let backend = BackendSpec::Ollama {
        base_url: host.clone(),
        model: model.clone(),
    };
    let settings = TrialSettings {
        samples: 2,
        n_predict: 16,
        ..TrialSettings::default()
    };
    let mut runner = TrialRunner::new(backend, settings, SamplerOptions::default());
    let facts = runner
        .spec()
        .model_metadata()
        .await
        .expect("/api/show facts");
    assert!(
        facts.trained_context.is_some_and(|c| c >= 2048),
        "{facts:?}"
    );

    let config = TrialConfig {
        ctx: 2048,
        batch: 512,
        ubatch: 512,
        concurrency: 1,
        variant: Default::default(),
    };
    let record = runner
        .run(
            1,
            Phase::Context,
            Stage::Verify,
            &config,
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_ne!(record.verdict, Verdict::Failed, "{:?}", record.failure);
    assert_eq!(record.granted_ctx, Some(2048));
    for s in record.samples.iter().filter(|s| s.ok) {
        assert!(s.prompt_tokens.is_some_and(|n| n >= 1600), "{s:?}");
    }
    let loaded = client
        .loaded()
        .await
        .expect("/api/ps")
        .expect("model loaded");
    assert!(loaded.size > 0);
}
