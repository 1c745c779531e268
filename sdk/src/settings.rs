//! Reading the plugin's settings: its section of Ozone's YAML config, as JSON text.

use serde::de::DeserializeOwned;

/// Parses `json` into `T`. Blank text means "nothing configured" (`T::default()`).
/// Give `T` `#[serde(default)]` so missing keys take their defaults; unknown keys are
/// ignored (serde's default), so a config shared with newer plugins still loads. A value
/// of the wrong type is an error naming the problem, e.g.
/// `invalid settings: invalid type: string "x", expected f64 at line 1 column 33`.
pub fn parse<T: DeserializeOwned + Default>(json: &str) -> Result<T, String> {
    if json.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(json).map_err(|e| format!("invalid settings: {e}"))
}
