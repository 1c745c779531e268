//! A context strategy exactly as a plugin built for plugin API 0.2.0 looks: written with
//! raw wit-bindgen against the frozen `wit/v0.2.0`, so it exports
//! `ozone:strategy/context@0.2.0`. The host must refuse it with the rebuild message.
//! Built by `host/tests/artifacts` for the tests only.

#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    path: "../../../../wit/v0.2.0",
    world: "ozone:strategy/context-strategy@0.2.0",
});

use exports::ozone::strategy::context::{ContextSearch, Guest, GuestContextSearch};
use ozone::strategy::types::{HardwareFacts, ModelFacts, TrialOutcome};

struct Legacy;

impl Guest for Legacy {
    type ContextSearch = Fixed;
}

/// Proposes the model's minimum context once.
struct Fixed(std::cell::Cell<Option<u32>>);

impl GuestContextSearch for Fixed {
    fn create(_: String, _: HardwareFacts, model: ModelFacts) -> Result<ContextSearch, String> {
        Ok(ContextSearch::new(Fixed(std::cell::Cell::new(Some(
            model.bounds.min,
        )))))
    }
    fn propose(&self) -> Option<u32> {
        self.0.get()
    }
    fn observe(&self, _: TrialOutcome) {
        self.0.set(None);
    }
    fn best(&self) -> Option<u32> {
        None
    }
}

export!(Legacy);
