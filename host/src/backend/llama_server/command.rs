//! The llama-server command line for a configuration.

use std::path::PathBuf;

use crate::record::TrialConfig;

/// How to run llama-server, apart from the configuration under test (whose variant
/// says the cache types, flash attention, threads and offload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaServerSpec {
    pub binary: PathBuf,
    pub model: PathBuf,
    /// Appended verbatim, last.
    pub extra_args: Vec<String>,
}

/// `-ngl` for "every layer": llama.cpp's idiom (more than any model it runs has).
pub const ALL_LAYERS: u32 = 99;

/// The environment llama-server runs in, for trials and in the deploy script alike. One
/// malloc arena: glibc gives each HTTP thread that serves a request an arena of its own,
/// so the server's memory would grow with the number of requests served (measured on the
/// generated model at 10496 tokens: +0.7 MiB per request over six, flat with one arena),
/// and a one-request screen could not stand for a five-request trial.
pub const SERVER_ENV: &[(&str, &str)] = &[("MALLOC_ARENA_MAX", "1")];

/// The full command line (binary first) that serves `config`: `-c` is the context per
/// slot times the concurrency, with `-np` slots sharing one unified KV cache (`-kvu`),
/// so each of the concurrent streams can hold the context under test. `-fit off` stops
/// llama-server from silently changing what was not set. `--cache-ram 0` turns off the
/// host-memory prompt cache (8 GiB by default), which keeps every finished request's KV
/// cache: the server's memory would grow by one KV cache per request served (measured on
/// the generated model at 10496 tokens: +5 MiB per request, flat without it), so a
/// trial's peak would depend on how many requests it sent and a one-request screen could
/// not stand for the full trial. The deploy script carries the same flag, so what was
/// measured is what runs. Host and port are not included.
pub fn command_line(spec: &LlamaServerSpec, config: &TrialConfig) -> Vec<String> {
    let slots = config.concurrency.max(1);
    let total_ctx = u64::from(config.ctx) * u64::from(slots);
    let mut args = vec![
        spec.binary.display().to_string(),
        "-m".into(),
        spec.model.display().to_string(),
        "-c".into(),
        total_ctx.to_string(),
    ];
    args.extend(shape_args(config));
    args.extend([
        "-fit".into(),
        "off".into(),
        "--cache-ram".into(),
        "0".into(),
        "--metrics".into(),
    ]);
    args.extend(spec.extra_args.iter().cloned());
    args
}

/// The command line of llama.cpp's own fit for `config`'s shape: the same flags as a
/// trial's (the same server, `--cache-ram 0` included) but no `-c` and `-fit on -fitt MARGIN`, so llama-server sizes the context to
/// free device memory itself (it only changes what was not set: `-ngl` stays).
pub fn fit_command_line(
    spec: &LlamaServerSpec,
    config: &TrialConfig,
    margin_mib: u64,
) -> Vec<String> {
    let mut args = vec![
        spec.binary.display().to_string(),
        "-m".into(),
        spec.model.display().to_string(),
    ];
    args.extend(shape_args(config));
    args.extend([
        "-fit".into(),
        "on".into(),
        "-fitt".into(),
        margin_mib.to_string(),
        "--cache-ram".into(),
        "0".into(),
        "--metrics".into(),
    ]);
    args.extend(spec.extra_args.iter().cloned());
    args
}

/// Batch, slots and the variant (cache types, offload, flash attention, threads):
/// everything but the context.
fn shape_args(config: &TrialConfig) -> Vec<String> {
    let slots = config.concurrency.max(1);
    let v = &config.variant;
    let mut args: Vec<String> = vec![
        "-b".into(),
        config.batch.to_string(),
        "-ub".into(),
        config.ubatch.to_string(),
        "-np".into(),
        slots.to_string(),
        "-kvu".into(),
        "-ctk".into(),
        v.cache_type_k.name().into(),
        "-ctv".into(),
        v.cache_type_v.name().into(),
        "-ngl".into(),
        v.gpu_layers.unwrap_or(ALL_LAYERS).to_string(),
    ];
    if v.cpu_moe_layers > 0 {
        args.extend(["--n-cpu-moe".into(), v.cpu_moe_layers.to_string()]);
    }
    args.extend(["-fa".into(), v.flash_attn.name().into()]);
    if let Some(t) = v.threads {
        args.extend(["-t".into(), t.to_string()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FlashAttn, KvCacheType, Variant};

    #[test]
    fn command_line_multiplies_context_by_slots() {
        let spec = LlamaServerSpec {
            binary: "/opt/llama-server".into(),
            model: "/m/model.gguf".into(),
            extra_args: vec!["--no-warmup".into()],
        };
        let config = TrialConfig {
            ctx: 8192,
            batch: 512,
            ubatch: 256,
            concurrency: 4,
            variant: Variant {
                cache_type_k: KvCacheType::Q8_0,
                cache_type_v: KvCacheType::Q8_0,
                flash_attn: FlashAttn::On,
                ..Variant::default()
            },
        };
        let line = command_line(&spec, &config).join(" ");
        assert_eq!(
            line,
            "/opt/llama-server -m /m/model.gguf -c 32768 -b 512 -ub 256 -np 4 -kvu -ctk q8_0 \
             -ctv q8_0 -ngl 99 -fa on -fit off --cache-ram 0 --metrics --no-warmup"
        );
        let fit = fit_command_line(
            &spec,
            &TrialConfig {
                concurrency: 1,
                ..config.clone()
            },
            1024,
        );
        assert_eq!(
            fit.join(" "),
            "/opt/llama-server -m /m/model.gguf -b 512 -ub 256 -np 1 -kvu -ctk q8_0 -ctv q8_0 \
             -ngl 99 -fa on -fit on -fitt 1024 --cache-ram 0 --metrics --no-warmup"
        );
    }

    #[test]
    fn a_variant_sets_every_server_flag_it_holds() {
        let spec = LlamaServerSpec {
            binary: "llama-server".into(),
            model: "m.gguf".into(),
            extra_args: Vec::new(),
        };
        let config = TrialConfig {
            ctx: 4096,
            batch: 64,
            ubatch: 32,
            concurrency: 1,
            variant: Variant {
                cache_type_k: KvCacheType::Q8_0,
                cache_type_v: KvCacheType::Q4_0,
                flash_attn: FlashAttn::Auto,
                threads: Some(6),
                gpu_layers: Some(30),
                cpu_moe_layers: 12,
            },
        };
        assert_eq!(
            command_line(&spec, &config).join(" "),
            "llama-server -m m.gguf -c 4096 -b 64 -ub 32 -np 1 -kvu -ctk q8_0 -ctv q4_0 -ngl 30 \
             --n-cpu-moe 12 -fa auto -t 6 -fit off --cache-ram 0 --metrics"
        );
    }
}
