//! What became of a write's records when writing failed: the records a write (Put, PutBatch)
//! appended, by open writer and record number ([`WriteTickets`]); the buffered records a failed
//! write-out dropped ([`Discard`], `fsync = "always"` only, where no buffered record was
//! acknowledged yet); and from both, with the group commit's fsync result, the write's answer
//! ([`WriteOutcome`]). So a write answered InternalError stored nothing, and one whose records
//! are stored but not confirmed durable says so (NotDurable), never the same status for both.

use std::ops::Range;

/// The records one write appended: per open writer (its serial number), a range of its record
/// numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteTickets {
    ranges: Vec<(u64, Range<u64>)>,
}

impl WriteTickets {
    /// Adds record `record` of writer `writer` (consecutive records of one writer merge).
    pub fn push(&mut self, writer: u64, record: u64) {
        if let Some((last_writer, range)) = self.ranges.last_mut() {
            if *last_writer == writer && range.end == record {
                range.end += 1;
                return;
            }
        }
        self.ranges.push((writer, record..record + 1));
    }

    /// Records appended.
    pub fn count(&self) -> u64 {
        self.ranges
            .iter()
            .map(|(_, range)| range.end - range.start)
            .sum()
    }

    /// How many of these records `discards` dropped.
    pub fn discarded(&self, discards: &[Discard]) -> u64 {
        let mut dropped = 0;
        for (writer, range) in &self.ranges {
            for discard in discards.iter().filter(|d| d.writer == *writer) {
                let start = range.start.max(discard.records.start);
                let end = range.end.min(discard.records.end);
                dropped += end.saturating_sub(start);
            }
        }
        dropped
    }
}

/// Buffered records of one open writer dropped unwritten after a failed write-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discard {
    pub writer: u64,
    pub records: Range<u64>,
    /// The write error, for the answer.
    pub reason: String,
}

/// The answer to a write once its group commit is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Every record stored and fsynced.
    Durable,
    /// Nothing stored (InternalError).
    NotStored(String),
    /// Some or all records stored, readable, but not confirmed durable (NotDurable).
    NotDurable(String),
}

impl WriteOutcome {
    /// The outcome of a write with `tickets` whose group commit dropped `discards` and whose
    /// fsync ended with `synced`.
    pub fn of(tickets: &WriteTickets, discards: &[Discard], synced: &Result<(), String>) -> Self {
        let total = tickets.count();
        let dropped = tickets.discarded(discards);
        let reason = || {
            discards
                .iter()
                .map(|d| d.reason.as_str())
                .next()
                .unwrap_or("a write failed")
                .to_string()
        };
        if dropped > 0 && dropped >= total {
            return WriteOutcome::NotStored(format!("not stored: {}", reason()));
        }
        if dropped > 0 {
            let stored = total - dropped;
            let durable = match synced {
                Ok(()) => String::new(),
                Err(e) => format!(", and not made durable ({e})"),
            };
            return WriteOutcome::NotDurable(format!(
                "stored {stored} of {total} records (the others were not: {}){durable}",
                reason()
            ));
        }
        match synced {
            Ok(()) => WriteOutcome::Durable,
            Err(e) => WriteOutcome::NotDurable(format!("stored but not made durable: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discard(writer: u64, records: Range<u64>) -> Discard {
        Discard {
            writer,
            records,
            reason: "No space left on device".into(),
        }
    }

    #[test]
    fn a_write_is_not_stored_durable_or_in_part_exactly_as_its_records_went() {
        let mut put = WriteTickets::default();
        put.push(7, 3);
        let mut batch = WriteTickets::default();
        for record in 10..14 {
            batch.push(7, record);
        }
        batch.push(8, 0);
        assert_eq!(batch.count(), 5);
        let ok = Ok(());
        let failed = Err("fdatasync: EIO".to_string());
        assert_eq!(WriteOutcome::of(&put, &[], &ok), WriteOutcome::Durable);
        assert!(matches!(
            WriteOutcome::of(&put, &[discard(7, 2..4)], &ok),
            WriteOutcome::NotStored(m) if m == "not stored: No space left on device"
        ));
        assert_eq!(
            WriteOutcome::of(&put, &[discard(8, 0..9), discard(7, 4..9)], &failed),
            WriteOutcome::NotDurable("stored but not made durable: fdatasync: EIO".into())
        );
        let part = WriteOutcome::of(&batch, &[discard(7, 12..20)], &ok);
        assert!(
            matches!(&part, WriteOutcome::NotDurable(m) if m.starts_with("stored 3 of 5 records")),
            "{part:?}"
        );
        let all = [discard(7, 0..100), discard(8, 0..1)];
        assert!(matches!(
            WriteOutcome::of(&batch, &all, &failed),
            WriteOutcome::NotStored(_)
        ));
    }
}
