//! A hostile HTTP server on 127.0.0.1 for the tests of Ozone in hostile surroundings.
//!
//! This is a fake, on purpose: a real inference server cannot be made to accept a
//! connection and never answer, drip its answer, send a body or a line that never ends,
//! babble bytes that are not HTTP, or fail in the middle of a stream on demand — and
//! those are exactly what Ozone must survive. What each path does is chosen per test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Accepts the connection, reads the request, never answers.
    Silent,
    /// Answers a valid response one byte every 100 ms: a minute and a half for all of it.
    Drip,
    /// `200 OK`, then a body that never ends.
    EndlessBody,
    /// `200 OK` as a stream, then one line that never ends, as fast as the socket takes.
    EndlessLine,
    /// `200 OK` as a stream, then one line that never ends, one byte every 100 ms.
    DrippingLine,
    /// Bytes that are not HTTP at all.
    Garbage,
    /// `200 OK` as a stream, two token events, an HTTP-500 error event (as llama-server
    /// and OpenAI-compatible servers send them), then the connection closes.
    ErrorMidStream,
    /// `200 OK` with this JSON body.
    Json(String),
}

/// A running hostile server; stops (and drops every connection) when dropped.
pub struct HostileServer {
    pub url: String,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl HostileServer {
    /// Serves `route(method, path)` for every request, on a port of its own.
    pub fn start(route: impl Fn(&str, &str) -> Behaviour + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let route = Arc::new(route);
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let route = Arc::clone(&route);
                let stop = Arc::clone(&stopping);
                thread::spawn(move || serve(stream, &*route, &stop));
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            stop,
            port,
        }
    }

    /// One behaviour for every path.
    pub fn always(behaviour: Behaviour) -> Self {
        Self::start(move |_, _| behaviour.clone())
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, route: &(dyn Fn(&str, &str) -> Behaviour + Sync), stop: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the socket"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let behaviour = route(method, path);
    let mut out = stream;
    let _ = act(&mut out, &behaviour, stop);
    let _ = out.shutdown(Shutdown::Both);
}

const STREAM_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

fn act(out: &mut TcpStream, behaviour: &Behaviour, stop: &AtomicBool) -> std::io::Result<()> {
    let running = || !stop.load(Ordering::SeqCst);
    match behaviour {
        Behaviour::Silent => {
            while running() {
                thread::sleep(Duration::from_millis(50));
            }
        }
        Behaviour::Drip => {
            let answer = json_response(&format!(
                "{{\"data\": [], \"pad\": \"{}\"}}",
                "x".repeat(800)
            ));
            for byte in answer.bytes() {
                if !running() {
                    break;
                }
                out.write_all(&[byte])?;
                thread::sleep(Duration::from_millis(100));
            }
        }
        Behaviour::EndlessBody => {
            out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"data\": [",
            )?;
            let filler = [b' '; 64 << 10];
            while running() {
                out.write_all(&filler)?;
            }
        }
        Behaviour::EndlessLine => {
            out.write_all(STREAM_HEAD.as_bytes())?;
            out.write_all(b"data: {\"content\": \"")?;
            let filler = [b'a'; 64 << 10];
            while running() {
                out.write_all(&filler)?;
            }
        }
        Behaviour::DrippingLine => {
            out.write_all(STREAM_HEAD.as_bytes())?;
            out.write_all(b"data: {\"content\": \"")?;
            while running() {
                out.write_all(b"a")?;
                thread::sleep(Duration::from_millis(100));
            }
        }
        Behaviour::Garbage => {
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut noise = vec![0u8; 4096];
            for _ in 0..64 {
                for b in noise.iter_mut() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *b = state as u8;
                }
                out.write_all(&noise)?;
            }
        }
        Behaviour::ErrorMidStream => {
            out.write_all(STREAM_HEAD.as_bytes())?;
            let token = "data: {\"content\":\"a\",\"stop\":false,\"choices\":[{\"text\":\"a\"}],\"response\":\"a\",\"done\":false}\n\n";
            out.write_all(token.as_bytes())?;
            out.write_all(token.as_bytes())?;
            out.write_all(
                b"data: {\"error\":{\"code\":500,\"message\":\"the slot crashed mid-stream\",\"type\":\"server_error\"}}\n\n",
            )?;
        }
        Behaviour::Json(body) => out.write_all(json_response(body).as_bytes())?,
    }
    out.flush()
}

fn json_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
