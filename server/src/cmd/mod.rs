//! One module per CLI subcommand.

pub mod apply;
pub mod bench;
pub mod bench_cache;
#[cfg(feature = "cuda")]
pub mod bench_gpu;
pub mod device;
pub mod fixtures;
pub mod generate;
pub mod models;

/// The `p`-quantile (0..=1) of `values`, nearest rank; 0 for none.
pub(crate) fn quantile(values: &[f64], p: f64) -> f64 {
    // Nearest rank: the smallest value with at least a fraction p of the
    // values at or below it.
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0];
        assert_eq!(quantile(&values, 0.5), 5.0);
        assert_eq!(quantile(&values, 0.9), 9.0);
        assert_eq!(quantile(&values, 1.0), 10.0);
        assert_eq!(quantile(&values, 0.0), 1.0, "the smallest, not out of range");
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }
}
