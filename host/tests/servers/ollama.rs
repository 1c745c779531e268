//! Ollama's wire contract, end to end through the HTTP client: a local socket replays
//! response bodies captured from Ollama (`tests/fixtures/ollama/`), line by line as
//! Ollama streams them. No live Ollama needed; `ollama_live.rs` covers a real one.

use std::time::Duration;

use ozone::backend::ollama::{OllamaClient, OllamaOptions};
use ozone::record::FailureKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ollama");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}"))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Serves one request with `status` and `body`, streaming the body a line at a time;
/// returns the base URL and a handle yielding the request it received.
async fn replay(status: u16, body: String) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 8192];
        // Headers, then as many body bytes as Content-Length says.
        loop {
            let n = socket.read(&mut buf).await.expect("read");
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length || n == 0 {
                    break;
                }
            }
        }
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n");
        socket.write_all(head.as_bytes()).await.expect("write head");
        for line in body.lines() {
            socket
                .write_all(format!("{line}\n").as_bytes())
                .await
                .expect("write line");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        socket.shutdown().await.ok();
        String::from_utf8_lossy(&request).into_owned()
    });
    (url, handle)
}

fn options() -> OllamaOptions {
    OllamaOptions {
        num_ctx: 4096,
        num_batch: 512,
        num_predict: 4,
        num_thread: Some(2),
        num_gpu: None,
    }
}

#[tokio::test]
async fn streamed_generation_takes_counts_from_the_final_chunk() {
    let (url, request) = replay(200, fixture("generate_stream.ndjson")).await;
    let client = OllamaClient::new(&url, "llama3.2:1b");
    let g = client
        .generate("The sky", &options(), "5m")
        .await
        .expect("generation");
    assert_eq!(g.token_events, 4);
    assert_eq!(g.prompt_tokens, Some(3686));
    assert_eq!(g.completion_tokens, Some(4));
    // Durations arrive in nanoseconds.
    assert_eq!(g.server.prompt_ms, Some(325.441));
    assert!(g.ttft <= g.total && g.decode_span > Duration::ZERO);

    let sent = request.await.expect("request");
    assert!(sent.starts_with("POST /api/generate "), "{sent}");
    let body: serde_json::Value =
        serde_json::from_str(&sent[sent.find("\r\n\r\n").expect("body") + 4..]).expect("JSON body");
    assert_eq!(body["options"]["num_ctx"], 4096);
    assert_eq!(body["options"]["num_batch"], 512);
    assert_eq!(body["options"]["num_thread"], 2);
    assert!(body["options"].get("num_gpu").is_none());
    assert_eq!(body["keep_alive"], "5m");
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn http_500_out_of_memory_is_classified() {
    let (url, _) = replay(500, fixture("generate_oom_500.json")).await;
    let f = OllamaClient::new(&url, "big")
        .generate("x", &options(), "5m")
        .await
        .expect_err("must fail");
    assert_eq!(f.kind, FailureKind::OutOfMemory, "{f:?}");
    assert!(f.message.contains("cudaMalloc failed"), "{f:?}");
}

#[tokio::test]
async fn error_line_mid_stream_is_classified() {
    let (url, _) = replay(200, fixture("generate_midstream_error.ndjson")).await;
    let f = OllamaClient::new(&url, "m")
        .generate("x", &options(), "5m")
        .await
        .expect_err("must fail");
    assert_eq!(f.kind, FailureKind::OutOfMemory, "{f:?}");
}

#[tokio::test]
async fn show_and_ps_through_http() {
    let (url, _) = replay(200, fixture("show.json")).await;
    let facts = OllamaClient::new(&url, "llama3.2:1b")
        .model_metadata()
        .await
        .expect("facts");
    assert_eq!(facts.trained_context, Some(131_072));
    let (url, _) = replay(200, fixture("ps.json")).await;
    let loaded = OllamaClient::new(&url, "llama3.2:1b")
        .loaded()
        .await
        .expect("ps")
        .expect("loaded");
    assert_eq!(loaded.context_length, Some(8192));
    let (url, _) = replay(200, fixture("version.json")).await;
    assert_eq!(
        OllamaClient::new(&url, "m")
            .version()
            .await
            .expect("version"),
        "0.9.0"
    );
}
