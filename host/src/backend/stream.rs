//! Reading a streamed HTTP body line by line (NDJSON, and SSE's `data:` lines).

/// Splits a response body into lines as chunks arrive.
pub(crate) struct Lines {
    response: reqwest::Response,
    buf: Vec<u8>,
    done: bool,
}

impl Lines {
    pub(crate) fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next line without its line ending; `None` at the end of the body.
    pub(crate) async fn next_line(&mut self) -> Result<Option<String>, reqwest::Error> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => self.done = true,
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
