//! Configuration: the `o3_ai_config.yaml` layout, defaults, overrides and provenance.
