//! chrF (Popović 2015): the character n-gram F-score of a translation against a reference, the
//! measure machine-translation work uses for short segments in many languages. Character
//! n-grams of orders 1 to 6 (spaces removed), precision and recall averaged over the orders,
//! combined with recall weighted β = 2 (chrF2), over the whole test set.

use std::collections::HashMap;

const MAX_ORDER: usize = 6;
const BETA: f64 = 2.0;

fn ngrams(text: &str, n: usize) -> HashMap<Vec<char>, usize> {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = HashMap::new();
    for w in chars.windows(n) {
        *out.entry(w.to_vec()).or_insert(0) += 1;
    }
    out
}

/// Corpus chrF2 (0-100) of `hypotheses` against `references`, pair by pair.
pub fn chrf(references: &[String], hypotheses: &[String]) -> f64 {
    let (mut precision, mut recall) = (0.0, 0.0);
    let mut orders = 0;
    for n in 1..=MAX_ORDER {
        let (mut matched, mut hyp_total, mut ref_total) = (0usize, 0usize, 0usize);
        for (r, h) in references.iter().zip(hypotheses) {
            let (rg, hg) = (ngrams(r, n), ngrams(h, n));
            matched += hg
                .iter()
                .map(|(g, c)| (*c).min(*rg.get(g).unwrap_or(&0)))
                .sum::<usize>();
            hyp_total += hg.values().sum::<usize>();
            ref_total += rg.values().sum::<usize>();
        }
        if hyp_total == 0 && ref_total == 0 {
            continue;
        }
        orders += 1;
        precision += matched as f64 / hyp_total.max(1) as f64;
        recall += matched as f64 / ref_total.max(1) as f64;
    }
    if orders == 0 {
        return 0.0;
    }
    let (p, r) = (precision / orders as f64, recall / orders as f64);
    let b2 = BETA * BETA;
    if p + r == 0.0 {
        return 0.0;
    }
    100.0 * (1.0 + b2) * p * r / (b2 * p + r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_unrelated_and_close() {
        let s = |t: &str| vec![t.to_owned()];
        assert!((chrf(&s("la chaqueta roja"), &s("la chaqueta roja")) - 100.0).abs() < 1e-9);
        assert_eq!(chrf(&s("abc"), &s("xyz")), 0.0);
        let close = chrf(&s("la chaqueta roja"), &s("la chaqueta rosa"));
        assert!(close > 50.0 && close < 100.0, "{close}");
    }
}
