//! The public batch schedule: which training records step `t` uses.
//!
//! Epoch `e` visits the training records in the order of a Fisher-Yates
//! permutation drawn from the ChaCha20 stream `("zkaudit/schedule/v1", seed, e)`
//! ([`SeedRng`]); step `t` of the run is step `t mod S` of epoch `t / S`, where
//! `S = floor(n / B)` steps per epoch, and takes the `B` consecutive entries of
//! that permutation starting at `(t mod S) * B`. The `n mod B` records left at
//! the end of an epoch's permutation are skipped for that epoch (every step has
//! exactly `B` records, so one circuit shape serves the whole run); they are
//! visited in other epochs. A verifier recomputes the indices from the seed.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::seed::SeedRng;

/// Domain separator of the schedule stream.
pub const SCHEDULE_DOMAIN: &[u8] = b"zkaudit/schedule/v1";

/// The public schedule parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schedule {
    /// Public seed.
    pub seed: u64,
    /// Number of training records `n`.
    pub num_records: usize,
    /// Batch size `B`.
    pub batch_size: usize,
}

impl Schedule {
    /// Validated schedule.
    pub fn new(seed: u64, num_records: usize, batch_size: usize) -> Result<Self> {
        if batch_size == 0 || batch_size > num_records {
            return Err(ModelError::Config(format!(
                "batch size must be in 1..={num_records} (the number of training records), got {batch_size}"
            )));
        }
        Ok(Schedule {
            seed,
            num_records,
            batch_size,
        })
    }

    /// Steps per epoch, `floor(n / B)`.
    pub fn steps_per_epoch(&self) -> usize {
        self.num_records / self.batch_size
    }

    /// The permutation of epoch `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<u32> {
        SeedRng::new(SCHEDULE_DOMAIN, self.seed, epoch).permutation(self.num_records)
    }

    /// The record indices of step `t` (recomputes the epoch's permutation).
    pub fn batch(&self, t: u64) -> Vec<u32> {
        let spe = self.steps_per_epoch() as u64;
        let order = self.epoch_order(t / spe);
        let start = ((t % spe) as usize) * self.batch_size;
        order[start..start + self.batch_size].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_within_epoch_are_disjoint() {
        let s = Schedule::new(9, 103, 8).unwrap();
        assert_eq!(s.steps_per_epoch(), 12);
        let mut seen = std::collections::HashSet::new();
        for t in 0..12 {
            for i in s.batch(t) {
                assert!(i < 103);
                assert!(seen.insert(i), "index {i} repeated in epoch 0");
            }
        }
        // next epoch uses a different order
        assert_ne!(s.batch(0), s.batch(12));
        assert_eq!(s.batch(12), s.epoch_order(1)[..8].to_vec());
    }

    #[test]
    fn invalid_batch_sizes() {
        assert!(Schedule::new(0, 10, 0).is_err());
        assert!(Schedule::new(0, 10, 11).is_err());
    }
}
