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
/// everything else. A token the reference lists but `other` does not ranks below all of
/// `other`'s list: it gets `other`'s smallest listed probability, the most it can have —
/// but no more than an equal share of `other`'s unlisted mass, shared with the other
/// such tokens and the bucket. Between two close distributions such a token has just
/// dropped off the end of the list, next to that edge; spreading the unlisted mass evenly
/// over the vocabulary instead makes it a million times less likely, and the few tokens
/// that cross the list's edge outweigh every listed one (on Gemma 3 270M a q8_0 cache
/// measured 0.037 nats that way with 20 tokens listed and 0.021 with 100, against 0.0046
/// and 0.0058 from the edge: the figure followed the list's length, not the cache). The
/// bucket compares the reference's unlisted mass with what `other` gives outside the
/// reference's list. 0 for identical lists.
pub fn kl_divergence(reference: &Distribution, other: &Distribution) -> f64 {
    let missing = reference
        .top
        .iter()
        .filter(|(id, _)| other.prob(*id).is_none())
        .count();
    let edge = other
        .top
        .last()
        .map_or(0.0, |&(_, p)| p)
        .min(other.tail() / (missing + 1) as f64);
    let q = |id: u32| other.prob(id).unwrap_or(edge).max(FLOOR);
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
pub fn compare(reference: &[Distribution], other: &[Distribution]) -> ozone_sdk::Quality {
    let pairs: Vec<(&Distribution, &Distribution)> = reference.iter().zip(other).collect();
    let n = pairs.len().max(1) as f64;
    let klds: Vec<f64> = pairs.iter().map(|(r, o)| kl_divergence(r, o)).collect();
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
        assert_eq!(kl_divergence(&p, &p), 0.0);
        assert!(top1_agrees(&p, &p));
        // The same two tokens, swapped.
        let q = dist(&[(3, 0.6), (7, 0.3)]);
        let rest = 0.1f64 * (0.1f64 / 0.1).ln();
        let expected = 0.6 * (0.6f64 / 0.3).ln() + 0.3 * (0.3f64 / 0.6).ln() + rest;
        assert!((kl_divergence(&p, &q) - expected).abs() < 1e-12);
        assert!(!top1_agrees(&p, &q));
        // A token the other did not list: its smallest listed probability ...
        let r = dist(&[(7, 0.5), (5, 0.2), (1, 0.05)]);
        let kl = kl_divergence(&p, &r);
        let expected = 0.6 * (0.6f64 / 0.5).ln()
            + 0.3 * (0.3f64 / 0.05).ln()
            + 0.1 * (0.1f64 / (1.0 - 0.5 - 0.05)).ln();
        assert!((kl - expected).abs() < 1e-12, "{kl} vs {expected}");
        // ... unless that is more than its share of the unlisted mass, which it splits
        // with the rest.
        let r = dist(&[(7, 0.9)]);
        let kl = kl_divergence(&p, &r);
        let expected = 0.6 * (0.6f64 / 0.9).ln()
            + 0.3 * (0.3f64 / 0.05).ln()
            + 0.1 * (0.1f64 / (1.0 - 0.9 - 0.05)).ln();
        assert!((kl - expected).abs() < 1e-12, "{kl} vs {expected}");
        // A token that crossed the edge of a long list costs about what it moved, not
        // what spreading the unlisted mass over the vocabulary would make of it.
        let edge_of = |crossed: u32| {
            let mut top: Vec<(u32, f64)> = (0..19).map(|i| (i, 0.9 / 19.0)).collect();
            top.push((crossed, 0.005));
            dist(&top)
        };
        let (a, b) = (edge_of(100), edge_of(101));
        assert!(kl_divergence(&a, &b) < 0.005, "{}", kl_divergence(&a, &b));
        let q = compare(&[p.clone(), p.clone()], &[p.clone(), q]);
        assert_eq!((q.positions, q.top1_agreement), (2, 0.5));
        assert!(q.kld_mean > 0.0 && q.kld_stddev > 0.0);
    }
}
