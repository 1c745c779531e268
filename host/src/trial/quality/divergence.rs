//! How far a quantized KV cache moves the model's next-token distribution from the f16
//! cache's, at the same position of the same text: the KL divergence over the tokens the
//! server listed (`n_probs`), with the mass it did not list accounted for, and whether
//! both rank the same token first.

use serde::Deserialize;

/// The next-token distribution at one position, as llama-server lists its top tokens
/// (`completion_probabilities[0].top_logprobs`), most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// `(token id, probability)`, descending.
    pub top: Vec<(u32, f64)>,
}

impl Distribution {
    /// From one `/completion` answer with `n_probs` (the first generated token's list).
    pub fn from_completion(body: &serde_json::Value) -> Option<Self> {
        #[derive(Deserialize)]
        struct Entry {
            id: u32,
            logprob: f64,
        }
        let list = body
            .get("completion_probabilities")?
            .get(0)?
            .get("top_logprobs")?;
        let entries: Vec<Entry> = serde_json::from_value(list.clone()).ok()?;
        let mut top: Vec<(u32, f64)> = entries
            .into_iter()
            .map(|e| (e.id, e.logprob.exp()))
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        (!top.is_empty()).then_some(Self { top })
    }

    fn prob(&self, id: u32) -> Option<f64> {
        self.top.iter().find(|(t, _)| *t == id).map(|(_, p)| *p)
    }

    /// The mass of every token not listed.
    fn tail(&self) -> f64 {
        (1.0 - self.top.iter().map(|(_, p)| p).sum::<f64>()).max(0.0)
    }

    fn first(&self) -> Option<u32> {
        self.top.first().map(|(id, _)| *id)
    }
}

/// The smallest probability a term divides by: a token the other cache gives no
/// listed mass at all is very unlikely there, not impossible.
const FLOOR: f64 = 1e-12;

/// KL(reference ‖ other) in nats, over the reference's listed tokens plus one bucket for
/// everything else. A token the reference lists but `other` does not gets `other`'s
/// unlisted mass spread evenly over the `vocab` tokens it did not list; the bucket
/// compares the reference's unlisted mass with what `other` gives outside the
/// reference's list. 0 for identical lists.
pub fn kl_divergence(reference: &Distribution, other: &Distribution, vocab: u32) -> f64 {
    let unlisted = f64::from(vocab.saturating_sub(other.top.len() as u32).max(1));
    let spread = other.tail() / unlisted;
    let q = |id: u32| other.prob(id).unwrap_or(spread).max(FLOOR);
    let mut kl: f64 = reference
        .top
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|&(id, p)| p * (p / q(id)).ln())
        .sum();
    let p_rest = reference.tail();
    if p_rest > 0.0 {
        let q_listed: f64 = reference.top.iter().map(|&(id, _)| q(id)).sum();
        let q_rest = (1.0 - q_listed).max(FLOOR);
        kl += p_rest * (p_rest / q_rest).ln();
    }
    kl.max(0.0)
}

/// Whether both rank the same token first.
pub fn top1_agrees(reference: &Distribution, other: &Distribution) -> bool {
    reference.first().is_some() && reference.first() == other.first()
}

/// Mean KL divergence, its sample standard deviation and the top-1 agreement over
/// paired positions.
pub fn compare(
    reference: &[Distribution],
    other: &[Distribution],
    vocab: u32,
) -> ozone_sdk::Quality {
    let pairs: Vec<(&Distribution, &Distribution)> = reference.iter().zip(other).collect();
    let n = pairs.len().max(1) as f64;
    let klds: Vec<f64> = pairs
        .iter()
        .map(|(r, o)| kl_divergence(r, o, vocab))
        .collect();
    let mean = klds.iter().sum::<f64>() / n;
    let var = if klds.len() > 1 {
        klds.iter().map(|k| (k - mean).powi(2)).sum::<f64>() / (klds.len() - 1) as f64
    } else {
        0.0
    };
    let agree = pairs.iter().filter(|(r, o)| top1_agrees(r, o)).count() as f64;
    ozone_sdk::Quality {
        kld_mean: mean,
        kld_stddev: var.sqrt(),
        top1_agreement: agree / n,
        positions: pairs.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(top: &[(u32, f64)]) -> Distribution {
        Distribution { top: top.to_vec() }
    }

    #[test]
    fn the_server_s_list_is_read_from_a_real_answer() {
        let body: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/llama_server/completion-n-probs-gemma3.json"
        )))
        .expect("fixture");
        let d = Distribution::from_completion(&body).expect("a list");
        assert_eq!(d.top.len(), 3);
        assert!(d.top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(d.top.iter().all(|(_, p)| *p > 0.0 && *p <= 1.0));
        assert!(Distribution::from_completion(&serde_json::json!({"content": "x"})).is_none());
    }

    #[test]
    fn identical_lists_diverge_by_nothing_and_a_moved_mass_by_its_kl() {
        let p = dist(&[(7, 0.6), (3, 0.3)]);
        assert_eq!(kl_divergence(&p, &p, 262_144), 0.0);
        assert!(top1_agrees(&p, &p));
        // The same two tokens, swapped.
        let q = dist(&[(3, 0.6), (7, 0.3)]);
        let rest = 0.1f64 * (0.1f64 / 0.1).ln();
        let expected = 0.6 * (0.6f64 / 0.3).ln() + 0.3 * (0.3f64 / 0.6).ln() + rest;
        assert!((kl_divergence(&p, &q, 262_144) - expected).abs() < 1e-12);
        assert!(!top1_agrees(&p, &q));
        // A token the other did not list: its unlisted mass spread over the vocabulary.
        let r = dist(&[(7, 0.9)]);
        let spread: f64 = 0.1 / (1000.0 - 1.0);
        let kl = kl_divergence(&p, &r, 1000);
        let expected = 0.6 * (0.6f64 / 0.9).ln()
            + 0.3 * (0.3 / spread).ln()
            + 0.1 * (0.1f64 / (1.0 - 0.9 - spread)).ln();
        assert!((kl - expected).abs() < 1e-9, "{kl} vs {expected}");
        let q = compare(&[p.clone(), p.clone()], &[p.clone(), q], 262_144);
        assert_eq!((q.positions, q.top1_agreement), (2, 0.5));
        assert!(q.kld_mean > 0.0 && q.kld_stddev > 0.0);
    }
}
