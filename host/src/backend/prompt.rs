//! Prompts that fill a given share of the context, in the model's own tokens.
//!
//! The filler is plain English in printable ASCII (every tokenizer handles it, the
//! tiny test model included). Each sample starts at a different point of the filler so
//! that no server can serve a sample's prefill from a cache of the previous one.

use super::Prompt;

pub(crate) const FILLER: &str = "The river leaves the mountains in the early spring and carries \
the melted snow across the wide valley, past farms where people plant barley, oats and beans. \
In the old town by the bridge a baker opens her shop before dawn; the smell of fresh bread \
reaches the square where the market sellers arrange apples, cheese, honey and wool. Children \
walk to school along the canal, counting boats and naming the birds they see: herons, swans, \
a kingfisher once. At noon the clock tower rings twelve times and the workers at the mill stop \
for lunch. Engineers measure the flow of the water every hour, because a sudden flood in 1887 \
destroyed half of the lower district. Their notes fill many books: level 3.2 meters, speed 1.7 \
meters per second, temperature 9 degrees. In the evening the light turns orange over the hills, \
the musicians gather in the tavern, and travellers ask for directions to the next village, which \
lies twenty kilometers to the north, beyond the forest of pines and the quiet lake. ";

/// Prompt tokens to aim for: `fill_ratio` of the context, leaving room for the
/// generated tokens and the BOS the server adds.
pub(crate) fn target_prompt_tokens(ctx: u32, fill_ratio: f64, n_predict: u32) -> u32 {
    let filled = (f64::from(ctx) * fill_ratio.clamp(0.0, 1.0)).floor() as u32;
    filled.min(ctx.saturating_sub(n_predict + 2)).max(1)
}

/// `n` tokens cycling through `filler`, starting at `offset`.
pub(crate) fn token_prompt(filler: &[u32], n: usize, offset: usize) -> Prompt {
    if filler.is_empty() {
        return Prompt::Tokens(Vec::new());
    }
    let tokens = filler
        .iter()
        .copied()
        .cycle()
        .skip(offset % filler.len())
        .take(n)
        .collect();
    Prompt::Tokens(tokens)
}

/// About `chars` characters of filler starting at `offset` (a character boundary: the
/// filler is ASCII).
pub(crate) fn text_prompt(chars: usize, offset: usize) -> String {
    FILLER
        .chars()
        .cycle()
        .skip(offset % FILLER.len())
        .take(chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_leaves_room_for_generation() {
        assert_eq!(target_prompt_tokens(4096, 0.9, 64), 3686);
        assert_eq!(target_prompt_tokens(256, 0.9, 64), 190);
        assert_eq!(target_prompt_tokens(32, 0.9, 64), 1);
    }

    #[test]
    fn prompts_differ_by_offset_and_have_the_asked_length() {
        let filler: Vec<u32> = (0..10).collect();
        assert_eq!(
            token_prompt(&filler, 4, 8),
            Prompt::Tokens(vec![8, 9, 0, 1])
        );
        assert_ne!(text_prompt(50, 0), text_prompt(50, 7));
        assert_eq!(text_prompt(5000, 3).len(), 5000);
        assert!(FILLER.bytes().all(|b| (b' '..=b'~').contains(&b)));
    }
}
