//! The ordered list of a shard's segments: sealed ones (read-only, oldest first) and the active
//! one the writer appends to. Offsets are contiguous across the list.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use crate::segment::{BatchEntry, ReadPlan, Segment};

/// All segments of one shard, guarded by the shard's `RwLock`.
///
/// Invariants: `sealed[i].next_offset == sealed[i + 1].base_offset`, the last sealed segment ends
/// where `active` begins, and every sealed segment holds at least one batch.
#[derive(Debug)]
pub(crate) struct Segments {
    sealed: VecDeque<Segment>,
    active: Segment,
    /// The active segment's file, shared with the writer and with in-flight reads.
    active_file: Arc<File>,
    /// Arrival time of the newest record ever committed or found on disk; survives trimming.
    last_arrival: Option<i64>,
}

impl Segments {
    pub(crate) fn new(sealed: Vec<Segment>, active: Segment, active_file: Arc<File>) -> Segments {
        let last_arrival = active
            .last_arrival_ms()
            .or_else(|| sealed.last().and_then(Segment::last_arrival_ms));
        Segments {
            sealed: sealed.into(),
            active,
            active_file,
            last_arrival,
        }
    }

    /// Earliest retained offset.
    pub(crate) fn start_offset(&self) -> u64 {
        self.sealed
            .front()
            .map_or(self.active.base_offset, |s| s.base_offset)
    }

    /// One past the newest durable record.
    pub(crate) fn end_offset(&self) -> u64 {
        self.active.next_offset
    }

    pub(crate) fn last_arrival_ms(&self) -> Option<i64> {
        self.last_arrival
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.sealed.iter().map(|s| s.size).sum::<u64>() + self.active.size
    }

    /// Every segment, oldest first, the active one last.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Segment> {
        self.sealed.iter().chain(std::iter::once(&self.active))
    }

    pub(crate) fn active(&self) -> &Segment {
        &self.active
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Publishes a durable round: its batches become visible to readers.
    pub(crate) fn commit(
        &mut self,
        entries: &mut Vec<BatchEntry>,
        size: u64,
        next_offset: u64,
        arrival_ms: i64,
    ) {
        self.active.index.append(entries);
        self.active.size = size;
        self.active.next_offset = next_offset;
        self.last_arrival = Some(arrival_ms);
    }

    /// Seals the active segment (closing its file once in-flight reads are done with it) and
    /// makes `next`, which starts at the end offset, active.
    pub(crate) fn roll(&mut self, next: Segment, next_file: Arc<File>) {
        debug_assert_eq!(next.base_offset, self.active.next_offset);
        let sealed = std::mem::replace(&mut self.active, next);
        self.active_file = next_file;
        self.sealed.push_back(sealed);
    }

    /// The segment holding `offset`, by binary search, with its file if it is open.
    fn find(&self, offset: u64) -> Option<(&Segment, Option<&Arc<File>>)> {
        if offset >= self.active.base_offset {
            return Some((&self.active, Some(&self.active_file)));
        }
        let i = self
            .sealed
            .partition_point(|s| s.base_offset <= offset)
            .checked_sub(1)?;
        self.sealed.get(i).map(|s| (s, None))
    }

    /// Plans the next read from `offset`; `None` if `offset` is not retained or not yet durable.
    pub(crate) fn plan_read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Option<ReadPlan> {
        let (segment, file) = self.find(offset)?;
        segment.plan_read(offset, max_records, max_bytes, file)
    }

    /// First retained offset whose arrival time is `>= ts_ms`, or the end offset.
    pub(crate) fn offset_at_time(&self, ts_ms: i64) -> u64 {
        // Arrival times never decrease along the log, so "all older than ts" is a prefix.
        let i = self
            .sealed
            .partition_point(|s| s.last_arrival_ms().is_some_and(|a| a < ts_ms));
        self.sealed
            .get(i)
            .unwrap_or(&self.active)
            .offset_at_time(ts_ms)
            .unwrap_or(self.active.next_offset)
    }

    /// Number of sealed segments, oldest first, whose newest record is older than `cutoff_ms`.
    pub(crate) fn expired_prefix(&self, cutoff_ms: i64) -> usize {
        self.sealed
            .iter()
            .take_while(|s| s.last_arrival_ms().is_none_or(|a| a < cutoff_ms))
            .count()
    }

    /// Takes the oldest sealed segment out of the list (before its file is deleted).
    pub(crate) fn pop_oldest(&mut self) -> Option<Segment> {
        self.sealed.pop_front()
    }

    /// Puts back a segment taken by [`pop_oldest`](Self::pop_oldest) whose file could not be
    /// deleted.
    pub(crate) fn push_oldest(&mut self, segment: Segment) {
        self.sealed.push_front(segment);
    }
}
