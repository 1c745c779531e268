//! Reading a streamed HTTP body line by line (NDJSON, and SSE's `data:` lines).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

use super::error::error_chain;

/// Longest streamed line accepted. A token event is a few hundred bytes and a final
/// event a few kilobytes (Ollama's `context` array: a few bytes per token); a server
/// that sends more without a newline is broken, and reading on would only grow memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Why the next line could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LineError {
    #[error("{url}: {}", error_chain(.source))]
    Transport { url: String, source: reqwest::Error },
    #[error("{url} sent a line longer than {} MiB without a newline", MAX_LINE_BYTES >> 20)]
    TooLong { url: String },
    #[error("{url} sent a line that is not UTF-8 text")]
    NotText { url: String },
}

/// Splits a response body into lines as chunks arrive. Each byte is looked at once
/// (the codec remembers how far it searched), and a line is never buffered past
/// [`MAX_LINE_BYTES`].
pub(crate) struct Lines {
    url: String,
    response: reqwest::Response,
    buf: BytesMut,
    codec: LinesCodec,
    done: bool,
}

impl Lines {
    pub(crate) fn new(url: &str, response: reqwest::Response) -> Self {
        Self {
            url: url.to_owned(),
            response,
            buf: BytesMut::new(),
            codec: LinesCodec::new_with_max_length(MAX_LINE_BYTES),
            done: false,
        }
    }

    /// The next line without its line ending; `None` at the end of the body.
    pub(crate) async fn next_line(&mut self) -> Result<Option<String>, LineError> {
        loop {
            let decoded = if self.done {
                self.codec.decode_eof(&mut self.buf)
            } else {
                self.codec.decode(&mut self.buf)
            };
            match decoded {
                Ok(Some(line)) => return Ok(Some(line)),
                Ok(None) if self.done => return Ok(None),
                Ok(None) => {}
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    return Err(LineError::TooLong {
                        url: self.url.clone(),
                    })
                }
                Err(LinesCodecError::Io(_)) => {
                    return Err(LineError::NotText {
                        url: self.url.clone(),
                    })
                }
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => self.done = true,
                Err(source) => {
                    return Err(LineError::Transport {
                        url: self.url.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// One server-sent event line, as llama-server and OpenAI-compatible servers send them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SseLine<'a> {
    /// A `data:` payload.
    Data(&'a str),
    /// `data: [DONE]`.
    Done,
    /// An `error:` field (llama-server sends errors this way mid-stream).
    Error(&'a str),
    /// Blank separators, comments, `event:`/`id:` fields.
    Other,
}

pub(crate) fn parse_sse_line(line: &str) -> SseLine<'_> {
    if let Some(data) = line.strip_prefix("data:") {
        let data = data.trim();
        if data == "[DONE]" {
            SseLine::Done
        } else {
            SseLine::Data(data)
        }
    } else if let Some(err) = line.strip_prefix("error:") {
        SseLine::Error(err.trim())
    } else {
        SseLine::Other
    }
}

/// Out-of-memory signatures in server error texts and logs (llama.cpp, CUDA, Vulkan,
/// Metal, Ollama).
pub(crate) fn looks_like_oom(text: &str) -> bool {
    const PATTERNS: [&str; 10] = [
        "out of memory",
        "cudamalloc failed",
        "failed to allocate",
        "unable to allocate",
        "insufficient memory",
        "requires more system memory",
        "erroroutofdevicememory",
        "failed to create context",
        "not enough memory",
        // C++ allocation failure inside llama.cpp ("decode() failed: std::bad_alloc").
        "bad_alloc",
    ];
    let lower = text.to_ascii_lowercase();
    PATTERNS.iter().any(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_lines_are_classified() {
        assert_eq!(
            parse_sse_line("data: {\"a\":1}"),
            SseLine::Data("{\"a\":1}")
        );
        assert_eq!(parse_sse_line("data: [DONE]"), SseLine::Done);
        assert_eq!(
            parse_sse_line("error: {\"code\":500}"),
            SseLine::Error("{\"code\":500}")
        );
        assert_eq!(parse_sse_line(""), SseLine::Other);
        assert_eq!(parse_sse_line(": keep-alive"), SseLine::Other);
    }

    #[test]
    fn oom_texts_are_recognised() {
        assert!(looks_like_oom(
            "llama runner process has terminated: cudaMalloc failed: out of memory"
        ));
        assert!(looks_like_oom(
            "model requires more system memory (8.0 GiB) than is available (4.5 GiB)"
        ));
        assert!(looks_like_oom("ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 1073741824"));
        assert!(looks_like_oom("decode() failed: std::bad_alloc"));
        assert!(!looks_like_oom("model 'llama9' not found"));
    }
}
