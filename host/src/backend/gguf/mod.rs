//! GGUF files: the metadata reader behind [`ModelMetadata`](super::ModelMetadata), and a small
//! writer used to generate the tiny test model.

mod format;
mod reader;
mod tiny;
mod writer;

pub use format::{GgmlType, GgufValue};
pub use reader::{
    file_digest, read_metadata, read_model_metadata, GgufError, GgufMetadata, TensorInfo,
};
pub use tiny::{write_tiny_model, TinyModelError, TinyModelSpec};
pub use writer::GgufWriter;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::backend::SizeClass;
    use crate::record::KvCacheType;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ozone-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join(name)
    }

    fn tiny(name: &str) -> (PathBuf, Vec<u8>) {
        let path = temp_path(name);
        write_tiny_model(&path, &TinyModelSpec::default()).expect("write tiny model");
        let bytes = std::fs::read(&path).expect("read back");
        (path, bytes)
    }

    #[test]
    fn tiny_model_facts_round_trip() {
        let (path, bytes) = tiny("facts.gguf");
        let spec = TinyModelSpec::default();
        let facts = read_model_metadata(&path).expect("facts");
        assert_eq!(facts.name, "facts");
        assert_eq!(facts.architecture.as_deref(), Some("llama"));
        assert_eq!(facts.trained_context, Some(spec.trained_context));
        assert_eq!(facts.block_count, Some(spec.block_count));
        assert_eq!(facts.head_count, Some(spec.head_count));
        assert_eq!(facts.head_count_kv, Some(spec.head_count_kv));
        assert_eq!(facts.embedding_length, Some(spec.embedding_length));
        assert_eq!(facts.key_length, Some(16));
        assert_eq!(facts.size_class, SizeClass::Small);
        assert_eq!(facts.weights_bytes, Some(bytes.len() as u64));
        let digest = file_digest(&path).expect("digest");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 7 + 64,
            "{digest}"
        );
        // Same spec, same seed: the same file.
        let again = temp_path("facts-again.gguf");
        write_tiny_model(&again, &spec).expect("write again");
        assert_eq!(file_digest(&again).expect("digest"), digest);
        // No general.parameter_count: counted from the tensor shapes. 99 tokens × 64 for
        // the embedding and the output, 2 layers of 4 × 64² attention + 3 × 64 × 128 FFN
        // + 2 × 64 norms, and the output norm.
        let expected = 2 * 99 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64;
        assert_eq!(facts.parameter_count, Some(expected));
        // 2 layers × 4 heads × (16 + 16) × 2 bytes.
        assert_eq!(
            facts.kv_bytes_per_token(KvCacheType::F16, KvCacheType::F16),
            Some(512)
        );
        let meta = read_metadata(&path).expect("metadata");
        assert!(matches!(
            meta.get("tokenizer.ggml.tokens"),
            Some(GgufValue::SkippedArray { len: 99, .. })
        ));
    }

    #[test]
    fn bad_magic_names_the_file() {
        let path = temp_path("not-a-model.gguf");
        std::fs::write(&path, b"PK\x03\x04 this is a zip").expect("write");
        let err = read_model_metadata(&path)
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("not-a-model.gguf") && err.contains("not a GGUF"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_version_is_reported() {
        let (_, mut bytes) = tiny("v1-source.gguf");
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        let path = temp_path("v1.gguf");
        std::fs::write(&path, &bytes).expect("write");
        let err = read_model_metadata(&path)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("unsupported GGUF version 1"), "{err}");
    }

    #[test]
    fn truncated_files_are_reported_where_they_end() {
        let (_, bytes) = tiny("cut-source.gguf");
        for cut in [6, 100, 2000, bytes.len() - 1000] {
            let path = temp_path(&format!("cut-{cut}.gguf"));
            std::fs::write(&path, &bytes[..cut]).expect("write");
            let err = read_model_metadata(&path)
                .expect_err("must fail")
                .to_string();
            assert!(err.contains("is truncated"), "cut at {cut}: {err}");
            assert!(err.contains(&format!("cut-{cut}.gguf")), "{err}");
        }
    }

    #[test]
    fn a_model_without_architecture_is_refused_at_load() {
        let (_, bytes) = tiny("arch-source.gguf");
        // Rename the key in place (same length): the file stays well-formed.
        let key = b"general.architecture";
        let at = bytes
            .windows(key.len())
            .position(|w| w == key)
            .expect("the tiny model names its architecture");
        let mut renamed = bytes.clone();
        renamed[at..at + key.len()].copy_from_slice(b"general.architectur_");
        let path = temp_path("no-arch.gguf");
        std::fs::write(&path, &renamed).expect("write");
        let err = read_model_metadata(&path)
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("no-arch.gguf") && err.contains("no general.architecture"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_model_metadata(&temp_path("absent.gguf"))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("absent.gguf"), "{err}");
    }
}
