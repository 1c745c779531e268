//! GGUF files: the metadata reader behind [`ModelFacts`](super::ModelFacts), and a small
//! writer used to generate the tiny test model.

mod format;
mod reader;
mod tiny;
mod writer;

pub use format::{GgmlType, GgufValue};
pub use reader::{read_facts, read_metadata, GgufError, GgufMetadata, TensorInfo};
pub use tiny::{write_tiny_model, TinyModelError, TinyModelSpec};
pub use writer::GgufWriter;
