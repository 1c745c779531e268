//! The wasmtime component host for strategy plugins: loading, sandbox limits, bindings.
