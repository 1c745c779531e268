//! Registration macros: one line makes a type the component's export.

/// Exports a [`ContextSearch`](crate::ContextSearch) implementation as the component's
/// `ozone:strategy/context` interface (world `context-strategy`).
///
/// ```ignore
/// struct MySearch { /* … */ }
/// impl ozone_sdk::ContextSearch for MySearch { /* … */ }
/// ozone_sdk::export_context_search!(MySearch);
/// ```
///
/// Build with `cargo build --target wasm32-wasip2 --release` (crate-type `cdylib`).
/// Natively the macro expands to nothing, so the crate still builds and tests on the host.
#[macro_export]
macro_rules! export_context_search {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __OzoneContextExport = $crate::__export::ContextExport<$ty>;
            $crate::__export::context::__export_context_strategy!(
                __OzoneContextExport with_types_in $crate::__export::context
            );
        };
    };
}

/// Exports a [`BatchScaler`](crate::BatchScaler) implementation as the component's
/// `ozone:strategy/batch` interface (world `batch-strategy`). See
/// [`export_context_search!`].
#[macro_export]
macro_rules! export_batch_scaler {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __OzoneBatchExport = $crate::__export::BatchExport<$ty>;
            $crate::__export::batch::__export_batch_strategy!(
                __OzoneBatchExport with_types_in $crate::__export::batch
            );
        };
    };
}

/// Exports a [`ConcurrencySearch`](crate::ConcurrencySearch) implementation as the
/// component's `ozone:strategy/concurrency` interface (world `concurrency-strategy`).
/// See [`export_context_search!`].
#[macro_export]
macro_rules! export_concurrency_search {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __OzoneConcurrencyExport = $crate::__export::ConcurrencyExport<$ty>;
            $crate::__export::concurrency::__export_concurrency_strategy!(
                __OzoneConcurrencyExport with_types_in $crate::__export::concurrency
            );
        };
    };
}

/// Exports a [`VariantSearch`](crate::VariantSearch) implementation as the component's
/// `ozone:strategy/variants` interface (world `variant-strategy`). See
/// [`export_context_search!`].
#[macro_export]
macro_rules! export_variant_search {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __OzoneVariantExport = $crate::__export::VariantExport<$ty>;
            $crate::__export::variants::__export_variant_strategy!(
                __OzoneVariantExport with_types_in $crate::__export::variants
            );
        };
    };
}

/// Exports an [`OffloadSearch`](crate::OffloadSearch) implementation as the component's
/// `ozone:strategy/offload` interface (world `offload-strategy`). See
/// [`export_context_search!`].
#[macro_export]
macro_rules! export_offload_search {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __OzoneOffloadExport = $crate::__export::OffloadExport<$ty>;
            $crate::__export::offload::__export_offload_strategy!(
                __OzoneOffloadExport with_types_in $crate::__export::offload
            );
        };
    };
}
