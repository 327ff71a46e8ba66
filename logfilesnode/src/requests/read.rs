//! The scan stream behind GetRange and GetAll: visits the channel's bucket files overlapping the
//! range in bucket order ([`RangeScan`]), sends the records in range whose value passes the filter
//! as LZ4 batches (or uncompressed batches when the request's flags ask for them), and ends with
//! Ok.
//!
//! - Read-your-writes: the channel's write buffers are flushed when the read starts.
//! - Each bucket is read with its time index ([`crate::storage::index`]): the writer's for a
//!   bucket open for writing, else the index file; a missing, stale or damaged index is rebuilt
//!   by the read (in budgeted slices, as any read) and saved.
//! - Bounded work per step ([`STEP_BUDGET`], [`BUCKETS_PER_STEP`]): a bucket is read in slices
//!   ([`BucketCursor`]), so neither a huge bucket nor a filter that matches nothing holds the
//!   loop, and a bucket already in key order is sent without any index in memory.
//! - Damaged records are skipped and logged with the file and offset; the scan goes on with the
//!   next bucket. A bucket file that cannot be read is logged and skipped.
//! - The bucket being sent is memory-mapped; the engine is told ([`Engine::mapped`]) so that no
//!   writer truncates it meanwhile, and unmaps big maps off the event loop when the read is done
//!   with them ([`crate::engine::unmap`]).
//! - A channel removed during the read ends the stream with Ok after what was sent.
//! - Memory: the batch (LZ4 or uncompressed) is the node's shared one, filled and sent within a
//!   step (a step that used its work budget sends what it found); between steps a read holds
//!   its request (channel, filter), a window of bucket ids ([`RangeScan`]) and its bucket's
//!   cursor, with the index it is building or sorting by, and reports them to the stream memory
//!   budgets ([`BucketCursor::held_bytes`]). Both indexes are taken only if the budgets have
//!   room for them: without room to rebuild a bucket's time index the read goes through the
//!   bucket without one (no seek, nothing saved, logged); without room for the sort index of an
//!   out-of-order bucket the bucket is sent in file order (logged).

use crate::engine::Engine;
use crate::service::LogfilesNode;
use crate::storage::scan::{BucketCursor, Step, StepBudget, MAX_SORTED_RECORDS};
use crate::storage::{CursorOptions, IndexSource, RangeScan};
use memchr::memmem::Finder;
use node_core::protocol::batch::{BatchBuilder, BatchEncoding, PushOutcome};
use node_core::protocol::logfiles::{Filter, FilterMode, ReadFlags};
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, StreamOut, StreamStep, StreamTask};

/// Work per step of the event loop: records decoded and bucket bytes gone over (filters search
/// at most these bytes).
pub const STEP_BUDGET: StepBudget = StepBudget {
    records: 16 * 1024,
    bytes: 2 * 1024 * 1024,
};
/// Buckets finished per step at most (a range over many small or empty buckets).
pub const BUCKETS_PER_STEP: usize = 64;
/// Compiled size limit of a regular expression (the `regex` crate's program size).
pub const REGEX_SIZE_LIMIT_BYTES: usize = 1024 * 1024;
/// Cache limit of a regular expression's lazy DFA.
pub const REGEX_DFA_SIZE_LIMIT_BYTES: usize = 2 * REGEX_SIZE_LIMIT_BYTES;

/// A compiled value filter.
enum ValueFilter {
    All,
    /// A prebuilt two-way searcher: linear in the value's length whatever the pattern.
    Substring(Box<Finder<'static>>),
    /// The `regex` crate runs in time linear in the value's length; no match limit is needed.
    Regex(regex::bytes::Regex),
}

impl ValueFilter {
    fn compile(filter: &Filter<'_>) -> Result<ValueFilter, String> {
        let regex = |case_insensitive| {
            let pattern = std::str::from_utf8(filter.pattern)
                .map_err(|_| "the regular expression is not valid UTF-8".to_string())?;
            regex::bytes::RegexBuilder::new(pattern)
                .case_insensitive(case_insensitive)
                .size_limit(REGEX_SIZE_LIMIT_BYTES)
                .dfa_size_limit(REGEX_DFA_SIZE_LIMIT_BYTES)
                .build()
                .map(ValueFilter::Regex)
                // The regex crate's messages span lines (a caret under the pattern): one line here.
                .map_err(|e| {
                    let message = e.to_string();
                    let words: Vec<&str> = message.split_whitespace().collect();
                    format!("bad regular expression: {}", words.join(" "))
                })
        };
        match filter.mode {
            FilterMode::None => Ok(ValueFilter::All),
            FilterMode::Substring => Ok(ValueFilter::Substring(Box::new(
                Finder::new(filter.pattern).into_owned(),
            ))),
            FilterMode::Regex => regex(false),
            FilterMode::RegexCaseInsensitive => regex(true),
        }
    }

    /// Heap bytes it may hold, for the stream memory budgets: a regular expression counts at
    /// its compile and cache limits (the `regex` crate does not say what it uses), a substring
    /// about twice its length.
    fn held_bytes(&self, pattern_len: usize) -> usize {
        match self {
            ValueFilter::All => 0,
            ValueFilter::Substring(_) => 2 * pattern_len + 256,
            ValueFilter::Regex(_) => {
                REGEX_SIZE_LIMIT_BYTES + REGEX_DFA_SIZE_LIMIT_BYTES + 2 * pattern_len
            }
        }
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueFilter::All => true,
            ValueFilter::Substring(finder) => finder.find(value).is_some(),
            ValueFilter::Regex(regex) => regex.is_match(value),
        }
    }
}

/// What a read asks for: `[from, to]` of `channel` (the name was checked), its filter and flags.
pub(super) struct ReadRequest<'a> {
    pub name: &'static str,
    pub channel: &'a str,
    pub from: u64,
    pub to: u64,
    pub filter: Filter<'a>,
    pub flags: ReadFlags,
}

/// Logs what a read did about its bucket's index: a rebuild at debug (expected after a crash,
/// for reference buckets and buckets of older versions), a rebuild the budgets had no room for
/// at info, a failure to save it as a warning.
fn log_index_use(request_name: &str, channel: &str, bucket: &BucketCursor) {
    match &bucket.index_source {
        Some(IndexSource::Built(why)) => tracing::debug!(
            "{request_name} {channel}: {}: index rebuilt ({why})",
            bucket.path.display()
        ),
        Some(IndexSource::NotBuilt(why)) => tracing::info!(
            "{request_name} {channel}: {}: index not rebuilt ({why}): the stream memory budgets \
             had no room for it; read without",
            bucket.path.display()
        ),
        Some(IndexSource::File | IndexSource::Live) | None => {}
    }
    if let Some(error) = &bucket.index_save_error {
        tracing::warn!(
            "{request_name} {channel}: {}: cannot save the rebuilt index: {error}",
            bucket.path.display()
        );
    }
}

/// Starts a read.
pub(super) fn start(
    node: &mut LogfilesNode,
    request: ReadRequest<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let ReadRequest {
        name: request_name,
        channel,
        from,
        to,
        filter,
        flags,
    } = request;
    let pattern_len = filter.pattern.len();
    let filter = match ValueFilter::compile(&filter) {
        Ok(filter) => filter,
        Err(message) => {
            reply.error(Status::BadRequest, message);
            return Handled::Replied;
        }
    };
    let Some((dir, generation)) = node.engine.channel(channel) else {
        // Reads never create a channel: a missing one is an empty stream.
        reply.ok(&[]);
        return Handled::Replied;
    };
    let options = CursorOptions {
        index_interval_bytes: node.engine.limits().index_interval_bytes,
        save_index: true,
        ..CursorOptions::default()
    };
    let scan = match RangeScan::new(dir, from, to) {
        Ok(scan) => scan.with_options(options),
        Err(error) => {
            tracing::error!("{request_name} {channel}: {error}");
            reply.error(Status::InternalError, error);
            return Handled::Replied;
        }
    };
    node.engine.flush_channel(channel);
    Handled::Stream(Box::new(ReadStream {
        request_name,
        channel: channel.to_string(),
        generation,
        scan,
        current: None,
        filter_bytes: filter.held_bytes(pattern_len),
        filter,
        batch_item: flags.batch_item(),
    }))
}

struct ReadStream {
    request_name: &'static str,
    channel: String,
    generation: u64,
    scan: RangeScan,
    /// The bucket being sent.
    current: Option<BucketCursor>,
    filter: ValueFilter,
    /// What `filter` counts for in the stream memory budgets.
    filter_bytes: usize,
    /// The item code and encoding of its batches (LZ4 unless the request's flags asked for
    /// uncompressed batches).
    batch_item: (u8, BatchEncoding),
}

impl ReadStream {
    /// Lets go of the current bucket, logging its damage.
    fn release(&mut self, engine: &mut Engine) {
        let Some(mut bucket) = self.current.take() else {
            return;
        };
        let map = bucket.take_map();
        engine.unmapped(&bucket.path, map);
        if let Some(first) = bucket.damage.first() {
            tracing::warn!(
                "{} {}: {}: {} damaged part(s) skipped; first: {first}",
                self.request_name,
                self.channel,
                bucket.path.display(),
                bucket.damage_count
            );
        }
        log_index_use(self.request_name, &self.channel, &bucket);
        if bucket.sent_unsorted {
            tracing::warn!(
                "{} {}: {}: records out of key order, more than {MAX_SORTED_RECORDS} or more \
                 than the stream memory budgets had room to sort; sent in file order",
                self.request_name,
                self.channel,
                bucket.path.display()
            );
        }
    }

    /// Opens the next bucket when there is none. Returns false at the end of the scan.
    fn advance(&mut self, engine: &mut Engine) -> bool {
        while self.current.is_none() {
            let channel = &self.channel;
            let next = self
                .scan
                .next_cursor_with(|bucket| engine.live_index(channel, bucket.id));
            match next {
                None => return false,
                Some(Ok(bucket)) => {
                    engine.mapped(&bucket.path);
                    self.current = Some(bucket);
                }
                Some(Err(error)) => tracing::error!(
                    "{} {}: bucket skipped: {error}",
                    self.request_name,
                    self.channel
                ),
            }
        }
        true
    }

    /// Collects records into `batch` until it is full, the step's work budget is used, or the
    /// scan is over (returns true then).
    fn fill(
        &mut self,
        engine: &mut Engine,
        batch: &mut BatchBuilder,
        out: &mut StreamOut<'_>,
    ) -> bool {
        if engine.generation(&self.channel) != Some(self.generation) {
            // Removed (and maybe re-created) since the read started.
            self.release(engine);
            self.scan = RangeScan::empty();
            return true;
        }
        for _ in 0..BUCKETS_PER_STEP {
            if !self.advance(engine) {
                return true;
            }
            let ReadStream {
                request_name,
                channel,
                current,
                filter,
                ..
            } = self;
            let Some(bucket) = current.as_mut() else {
                continue;
            };
            let mut may_hold = |bytes| out.try_reserve(bytes);
            let step = bucket.step_within(STEP_BUDGET, &mut may_hold, |record| {
                if !filter.matches(record.value) {
                    return true;
                }
                match batch.push(record.key, record.value) {
                    PushOutcome::Added => true,
                    PushOutcome::Full => false,
                    PushOutcome::TooBig => {
                        tracing::warn!(
                            "{request_name} {channel}: record 0x{:016x} too large for a batch, \
                             skipped",
                            record.key
                        );
                        true
                    }
                }
            });
            match step {
                Step::Refused | Step::Budget => return false,
                Step::Finished => self.release(engine),
            }
        }
        // Many small buckets: come back after other work.
        false
    }
}

impl StreamTask<LogfilesNode> for ReadStream {
    fn resume(&mut self, node: &mut LogfilesNode, out: &mut StreamOut<'_>) -> StreamStep {
        let mut batch = node.stream_batch.take();
        let ended = self.fill(&mut node.engine, &mut batch, out);
        let (item_code, encoding) = self.batch_item;
        let step = out.send_batch_or_end(item_code, encoding, &mut batch, ended);
        node.stream_batch.put_back(batch);
        step
    }

    fn held_bytes(&self) -> usize {
        self.channel.capacity()
            + self.filter_bytes
            + self.scan.held_bytes()
            + self.current.as_ref().map_or(0, BucketCursor::held_bytes)
    }

    fn cancel(&mut self, node: &mut LogfilesNode) {
        self.release(&mut node.engine);
    }
}
