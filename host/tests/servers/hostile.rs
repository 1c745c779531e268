//! The backends' clients against a hostile fake server (`common::hostile`): model-info
//! requests end at their deadline and stop at their body cap, streamed lines are capped
//! and cut by the deadline and by cancellation — never a hang, never unbounded memory.

use std::time::{Duration, Instant};

use ozone::backend::llama_server::LlamaClient;
use ozone::backend::ollama::{OllamaClient, OllamaOptions};
use ozone::backend::openai::OpenAiClient;
use ozone::backend::{BackendError, GenerationRequest, Prompt};
use tokio_util::sync::CancellationToken;

use crate::common::hostile::{Behaviour, HostileServer};

// Model-info requests: a deadline, a body cap, no hang.

/// Every request that is not a generation, against one server.
async fn info_requests(url: &str, timeout: Duration) -> Vec<(&'static str, BackendError)> {
    let openai = OpenAiClient::new(url, "m", None).with_request_timeout(timeout);
    let ollama = OllamaClient::new(url, "m").with_request_timeout(timeout);
    let llama = LlamaClient::new(url.to_string()).with_request_timeout(timeout);
    let (models, show, version, ps, props, tokenize) = tokio::join!(
        openai.model_metadata(),
        ollama.model_metadata(),
        ollama.version(),
        ollama.loaded(),
        llama.granted_ctx(),
        llama.tokenize("hello"),
    );
    vec![
        ("/v1/models", models.map(drop)),
        ("/api/show", show.map(drop)),
        ("/api/version", version.map(drop)),
        ("/api/ps", ps.map(drop)),
        ("/props", props.map(drop)),
        ("/tokenize", tokenize.map(drop)),
    ]
    .into_iter()
    .map(|(path, result)| match result {
        Ok(()) => panic!("{path} succeeded against a hostile server"),
        Err(e) => (path, e),
    })
    .collect()
}

#[tokio::test]
async fn info_requests_end_at_their_deadline_when_the_server_never_answers_or_drips() {
    for behaviour in [Behaviour::Silent, Behaviour::Drip] {
        let server = HostileServer::always(behaviour.clone());
        let started = Instant::now();
        let errors = tokio::time::timeout(
            Duration::from_secs(20),
            info_requests(&server.url, Duration::from_secs(1)),
        )
        .await
        .unwrap_or_else(|_| panic!("{behaviour:?}: requests still hung after 20 s"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{behaviour:?}: took {took:?}"
        );
        for (path, error) in errors {
            assert!(
                matches!(error, BackendError::Timeout { secs: 1, .. }),
                "{behaviour:?} {path}: {error}"
            );
            let text = error.to_string();
            assert!(
                text.contains(path) && text.contains("did not answer within 1 s"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn endless_bodies_stop_at_the_cap_and_garbage_is_an_error() {
    let server = HostileServer::always(Behaviour::EndlessBody);
    let errors = tokio::time::timeout(
        Duration::from_secs(60),
        info_requests(&server.url, Duration::from_secs(30)),
    )
    .await
    .expect("an endless body is cut at the cap, not read to the deadline");
    for (path, error) in errors {
        let text = error.to_string();
        assert!(
            matches!(error, BackendError::TooLarge { .. })
                && text.contains(path)
                && text.contains("16 MiB"),
            "{path}: {text}"
        );
    }

    let server = HostileServer::always(Behaviour::Garbage);
    let errors = tokio::time::timeout(
        Duration::from_secs(20),
        info_requests(&server.url, Duration::from_secs(5)),
    )
    .await
    .expect("garbage is an error, not a hang");
    for (path, error) in errors {
        assert!(error.to_string().contains(path), "{path}: {error}");
    }
}

// Streamed lines: capped, cut by the deadline and by cancellation.

fn request(timeout: Duration) -> GenerationRequest {
    GenerationRequest {
        prompt: Prompt::Text("hello".into()),
        n_predict: 4,
        timeout,
    }
}

#[tokio::test]
async fn a_line_without_end_stops_at_the_cap_in_every_backend() {
    let server = HostileServer::always(Behaviour::EndlessLine);
    let llama = LlamaClient::new(server.url.clone());
    let openai = OpenAiClient::new(&server.url, "m", None);
    let ollama = OllamaClient::new(&server.url, "m");
    let options = OllamaOptions::default();
    let request = request(Duration::from_secs(60));
    let started = Instant::now();
    let (l, o, n) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            llama.complete(&request),
            openai.complete("hello", 4),
            ollama.generate("hello", &options, "0"),
        )
    })
    .await
    .expect("an endless line is cut at the cap");
    for (backend, result) in [("llama-server", l), ("openai", o), ("ollama", n)] {
        let failure = result.expect_err("no generation from an endless line");
        assert!(
            failure
                .message
                .contains("longer than 16 MiB without a newline")
                && failure.message.contains(&server.url),
            "{backend}: {}",
            failure.message
        );
    }
    eprintln!(
        "three endless lines cut at the cap in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dripping_line_is_cut_by_the_deadline_and_by_cancellation() {
    let server = HostileServer::always(Behaviour::DrippingLine);
    let openai = OpenAiClient::new(&server.url, "m", None);
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(1), openai.complete("hello", 4)).await;
    assert!(
        outcome.is_err(),
        "the request ended on its own: {outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let cancel = CancellationToken::new();
    let cancelling = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancelling.cancel();
    });
    let started = Instant::now();
    tokio::select! {
        () = cancel.cancelled() => {}
        out = openai.complete("hello", 4) => panic!("ended on its own: {out:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_error_mid_stream_fails_the_request_with_the_servers_words() {
    let server = HostileServer::always(Behaviour::ErrorMidStream);
    let llama = LlamaClient::new(server.url.clone());
    let openai = OpenAiClient::new(&server.url, "m", None);
    let l = llama.complete(&request(Duration::from_secs(10))).await;
    let o = openai.complete("hello", 4).await;
    for (backend, result) in [("llama-server", l), ("openai", o)] {
        let failure = result.expect_err("a failed stream is no generation");
        assert!(
            failure.message.contains("the slot crashed mid-stream"),
            "{backend}: {}",
            failure.message
        );
    }
}
