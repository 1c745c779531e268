//! The trials of a run, and the requests of a phase.

use std::collections::HashMap;

use crate::record::{Stage, TrialConfig, TrialRecord};

/// Every trial of one run, keyed by configuration and stage, in the order measured: a
/// configuration is measured again only when a context plugin repeats a proposal or its
/// spread alone made it unstable, and `--resume` answers the k-th request of a
/// configuration with its k-th record.
#[derive(Debug, Default)]
pub struct TrialBook {
    by_key: HashMap<(TrialConfig, Stage), Vec<usize>>,
    records: Vec<TrialRecord>,
}

impl TrialBook {
    pub fn from_records(records: impl IntoIterator<Item = TrialRecord>) -> Self {
        let mut book = Self::default();
        for r in records {
            book.insert(r);
        }
        book
    }

    /// Adds a record; one with the id of a record already in the book replaces it.
    pub(super) fn insert(&mut self, record: TrialRecord) {
        if let Some(old) = self.records.iter_mut().find(|r| r.id == record.id) {
            if old.config == record.config && old.stage == record.stage {
                *old = record;
                return;
            }
        }
        self.by_key
            .entry((record.config.clone(), record.stage))
            .or_default()
            .push(self.records.len());
        self.records.push(record);
    }

    /// How many times `config` was measured at `stage`.
    pub fn count(&self, config: &TrialConfig, stage: Stage) -> usize {
        self.by_key
            .get(&(config.clone(), stage))
            .map_or(0, Vec::len)
    }

    /// The `k`-th measurement (0-based) of `config` at `stage`.
    pub fn nth(&self, config: &TrialConfig, stage: Stage, k: usize) -> Option<&TrialRecord> {
        let indices = self.by_key.get(&(config.clone(), stage))?;
        indices.get(k).map(|&i| &self.records[i])
    }

    /// The latest measurement of `config` at `stage`.
    pub fn latest(&self, config: &TrialConfig, stage: Stage) -> Option<&TrialRecord> {
        let indices = self.by_key.get(&(config.clone(), stage))?;
        indices.last().map(|&i| &self.records[i])
    }

    pub fn records(&self) -> &[TrialRecord] {
        &self.records
    }

    pub(super) fn next_id(&self) -> u32 {
        self.records.iter().map(|r| r.id).max().unwrap_or(0) + 1
    }
}

/// How many times each (configuration, stage) was asked for in the current phase.
#[derive(Debug, Default)]
pub(super) struct Requests(HashMap<(TrialConfig, Stage), usize>);

impl Requests {
    /// The 0-based index of this request of `config` at `stage` in the phase.
    pub(super) fn next(&mut self, config: &TrialConfig, stage: Stage) -> usize {
        let n = self.0.entry((config.clone(), stage)).or_default();
        *n += 1;
        *n - 1
    }

    /// The record the phase's latest verify-stage request of `config` was answered
    /// with, if the phase asked for one.
    pub(super) fn seen_verified(
        &self,
        book: &TrialBook,
        config: &TrialConfig,
    ) -> Option<TrialRecord> {
        let asked = *self.0.get(&(config.clone(), Stage::Verify))?;
        // Past the measurements allowed, requests are answered by the latest.
        book.nth(config, Stage::Verify, asked - 1)
            .or_else(|| book.latest(config, Stage::Verify))
            .cloned()
    }
}
