//! BM25 as sparse vectors, the way Qdrant computes them (issue 20): text in, a
//! [`SparseVector`] out, to store under a sparse vector whose IDF the database keeps up to date.
//! Use it directly, or declare the sparse vector with `bm25` (`SparseVectorConfig::bm25`) and
//! give the database the text itself, in points and queries.
//!
//! A text is split into words on everything that is not a letter or a digit and lower-cased:
//! Qdrant's `word` tokenizer, the same words as the full-text filter. A word's index is the
//! absolute value of its 32-bit MurmurHash3 (seed 0) read as a signed integer, as Qdrant's
//! (and fastembed's) `Qdrant/bm25` model does, so vectors made here and there are
//! interchangeable. A document's value for a word is its term frequency saturated and normalised
//! by length:
//!
//! ```text
//! tf * (k + 1) / (tf + k * (1 - b + b * words / avg_len))
//! ```
//!
//! A query's value for each distinct word is 1. The inverse document frequency is not in either
//! vector: a sparse vector configured with the IDF modifier multiplies each query value by
//! `ln(1 + (N - n + 0.5) / (n + 0.5))` at search time, `N` being the points with that vector and
//! `n` those with the word, so it follows the points as they come and go.
//!
//! Unlike Qdrant's `Bm25` model, whose default language is English, there is no stemming and
//! no stop words: the vectors equal Qdrant's with `stemmer: disabled` and no stop words, which
//! the conformance test (`tests/qdrant_conformance.rs`) checks on generated text.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::filter::words;
use crate::point::SparseVector;

/// The parameters of [`Bm25`]; the defaults are Qdrant's.
///
/// ```
/// let c = grape_vector_db::Bm25Config::default();
/// assert_eq!((c.k, c.b, c.avg_len), (1.2, 0.75, 256.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bm25Config {
    /// Term frequency saturation: how much a word's repetitions add (`k1` of the literature).
    pub k: f32,
    /// Length normalisation, 0 (none) to 1 (full).
    pub b: f32,
    /// The document length, in words, taken as average: the length at which `b` neither
    /// raises nor lowers a value.
    pub avg_len: f32,
}

impl Default for Bm25Config {
    fn default() -> Self {
        Bm25Config {
            k: 1.2,
            b: 0.75,
            avg_len: 256.0,
        }
    }
}

/// Turns text into BM25 sparse vectors: [`Bm25::embed_document`] for what is stored,
/// [`Bm25::embed_query`] for what is searched.
///
/// ```
/// use grape_vector_db::{Bm25, Bm25Config};
///
/// let bm25 = Bm25::new(Bm25Config::default())?;
/// let doc = bm25.embed_document("The cat sat; the CAT slept.");
/// assert_eq!(doc.len(), 4); // the, cat, sat, slept
/// let query = bm25.embed_query("cat cat");
/// assert_eq!(query.values(), &[1.0]);
/// assert!(doc.dot(&query).unwrap() > 0.0);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25 {
    config: Bm25Config,
}

impl Bm25 {
    /// A model with these parameters: `k` finite and at least 0, `b` within 0..=1, `avg_len`
    /// finite and above 0.
    pub fn new(config: Bm25Config) -> Result<Self> {
        let Bm25Config { k, b, avg_len } = config;
        if !(k.is_finite() && k >= 0.0) {
            return Err(Error::InvalidConfig(format!(
                "bm25 k must be a finite number of at least 0, not {k}"
            )));
        }
        if !(0.0..=1.0).contains(&b) {
            return Err(Error::InvalidConfig(format!(
                "bm25 b must be within 0 and 1, not {b}"
            )));
        }
        if !(avg_len.is_finite() && avg_len > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "bm25 avg_len must be a finite number above 0, not {avg_len}"
            )));
        }
        Ok(Bm25 { config })
    }

    /// The parameters.
    pub fn config(&self) -> Bm25Config {
        self.config
    }

    /// The vector of a stored text: each distinct word's saturated, length-normalised
    /// frequency. A text without words gives an empty vector.
    pub fn embed_document(&self, text: &str) -> SparseVector {
        // Sorted word indices, counted in runs: no map (and a sort the crate has anyway).
        let mut words: Vec<u32> = words(text).map(word_index).collect();
        let length = words.len();
        words.sort_unstable();
        let Bm25Config { k, b, avg_len } = self.config;
        let norm = k * (1.0 - b + b * length as f32 / avg_len);
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        for run in words.chunk_by(|a, b| a == b) {
            let tf = run.len() as f32;
            indices.push(run[0]);
            values.push(tf * (k + 1.0) / (tf + norm));
        }
        SparseVector::from_sorted(indices, values)
    }

    /// The vector of a query: 1 for each distinct word.
    pub fn embed_query(&self, text: &str) -> SparseVector {
        let mut indices: Vec<u32> = words(text).map(word_index).collect();
        indices.sort_unstable();
        indices.dedup();
        let values = vec![1.0; indices.len()];
        SparseVector::from_sorted(indices, values)
    }
}

/// The index of a word: the absolute value of the MurmurHash3 (x86, 32 bits, seed 0) of its
/// lower-cased UTF-8, read as a signed integer.
fn word_index(word: &str) -> u32 {
    // Not only upper-case letters change: title-case ones (`ǅ`) do too, so anything beyond
    // ASCII goes through `to_lowercase`.
    let hash = match word
        .bytes()
        .any(|b| !b.is_ascii() || b.is_ascii_uppercase())
    {
        true => murmur3_32(word.to_lowercase().as_bytes()),
        false => murmur3_32(word.as_bytes()),
    };
    (hash as i32).unsigned_abs()
}

/// MurmurHash3's 32-bit x86 variant with seed 0 (Austin Appleby's public-domain reference).
fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h = 0u32;
    let blocks = data.chunks_exact(4);
    let tail = blocks.remainder();
    for block in blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        h = (h ^ mix(k))
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }
    if !tail.is_empty() {
        let k = tail
            .iter()
            .rev()
            .fold(0u32, |k, &byte| (k << 8) | u32::from(byte));
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        // Published test vectors of MurmurHash3_x86_32 with seed 0.
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!"), 0xc036_3e43);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
        // Tails of one to three bytes.
        assert_eq!(murmur3_32(b"a"), 0x3c25_69b2);
        assert_eq!(murmur3_32(b"ab"), 0x9bbf_d75f);
        assert_eq!(murmur3_32(b"abc"), 0xb3dd_93fa);
    }

    #[test]
    fn word_indices_are_qdrants() {
        // As Qdrant Edge 0.9's `Bm25` gave them.
        for (word, index) in [
            ("fox", 1_621_867_415),
            ("quick", 771_291_085),
            ("42", 1_135_041_482),
            ("café", 605_818_632),
            ("ünïcode", 1_347_515_812),
            ("Fox", 1_621_867_415),
            ("ǅemal", 1_253_692_765), // a title-case letter: found by the conformance test
        ] {
            assert_eq!(word_index(word), index, "{word}");
        }
    }

    #[test]
    fn documents_saturate_and_normalise_by_length() {
        let bm25 = Bm25::new(Bm25Config::default()).unwrap();
        // 17 words, "the" three times: Qdrant Edge's values for this text.
        let doc = bm25.embed_document(
            "The quick brown Fox, jumps; über-cool e-mail x_y 3.14 ÄÖ naïve the the",
        );
        assert_eq!(doc.len(), 15);
        let once = 2.2 / (1.0 + 1.2 * (0.25 + 0.75 * 17.0 / 256.0));
        let thrice = 3.0 * 2.2 / (3.0 + 1.2 * (0.25 + 0.75 * 17.0 / 256.0));
        let the = doc.indices().iter().position(|&i| i == word_index("the"));
        for (i, &v) in doc.values().iter().enumerate() {
            let expected = if Some(i) == the { thrice } else { once };
            assert!((v - expected).abs() < 1e-6, "{v} vs {expected}");
        }
        assert!((once - 1.617_925_9).abs() < 1e-6 && (thrice - 1.964_422_7).abs() < 1e-6);
        assert!(bm25.embed_document(" ,;! ").is_empty());
    }

    #[test]
    fn parameters_out_of_range_are_refused() {
        for (k, b, avg_len) in [
            (-1.0, 0.5, 10.0),
            (1.0, 1.5, 10.0),
            (1.0, 0.5, 0.0),
            (f32::NAN, 0.5, 1.0),
        ] {
            assert!(matches!(
                Bm25::new(Bm25Config { k, b, avg_len }),
                Err(Error::InvalidConfig(_))
            ));
        }
    }
}
