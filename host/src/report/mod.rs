//! Every output file: JSONL trial log, summary, defaults YAML, env JSON, deploy files, HTML.
