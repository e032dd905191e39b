#include "server/blockcache/migrator.h"

#include <algorithm>
#include <chrono>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/blockcache/line_key.h"
#include "server/blockcache/migration_policy.h"

namespace tmem::blockcache {
namespace {

constexpr size_t kReadChunkLines = 256;  // lines read from the cache device per batch read

// Calls fn(byte offset in the line, length) for each run of adjacent dirty sectors in `mask`,
// in order; stops at the first error.
template <typename Fn>
absl::Status ForEachDirtyRun(uint8_t mask, Fn fn) {
  for (uint32_t s = 0; s < kSectorsPerLine;) {
    if ((mask >> s & 1) == 0) {
      ++s;
      continue;
    }
    uint32_t t = s;
    while (t < kSectorsPerLine && (mask >> t & 1)) ++t;
    TMEM_RETURN_IF_ERROR(fn(s * kSectorBytes, (t - s) * kSectorBytes));
    s = t;
  }
  return absl::OkStatus();
}

}  // namespace

Migrator::~Migrator() { Stop(); }

void Migrator::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Migrator::Stop() {
  {
    MutexLock lock(&wake_mu_);
    stopping_ = true;
    wake_cv_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

void Migrator::Kick() {
  MutexLock lock(&wake_mu_);
  kicked_ = true;
  wake_cv_.SignalAll();
}

void Migrator::Loop() {
  const log::LogGeometry& g = c_.log->geometry();
  const uint64_t capacity_lines = g.segment_count * (g.segment_bytes / kLineBytes - 1);
  while (true) {
    MigrationDecision d;
    {
      MutexLock lock(&wake_mu_);
      if (stopping_) return;
      MigrationInputs in;
      in.segment_count = g.segment_count;
      in.head_seq = c_.log->head_seq();
      in.flushed_seq = c_.log->flushed_seq();
      in.migrated_seq = c_.migrated_seq.load();
      in.idle_ns = c_.clock->NowNanos() - c_.last_io_ns.load(std::memory_order_relaxed);
      in.oldest_dirty_age_ns = c_.index.OldestDirtyAgeNs();
      in.dirty_lines = c_.index.dirty_lines();
      in.capacity_lines = capacity_lines;
      in.kicked = kicked_;
      in.copy_forward_enabled = c_.options.copy_forward;
      in.tunables = c_.tunables.get();
      d = DecideMigration(in);
      if (!d.run) {
        wake_cv_.WaitFor(&wake_mu_, std::chrono::milliseconds(d.wait_ms));
        continue;
      }
      kicked_ = false;
    }
    bool progress = false;
    absl::Status st = RunBatch(c_.tunables.get().migrate_batch_segments, d.copy_forward, &progress);
    if (st.ok()) {
      c_.migration_failing_since_ns.store(0, std::memory_order_relaxed);
      continue;
    }
    int64_t expected = 0;
    c_.migration_failing_since_ns.compare_exchange_strong(expected, c_.clock->NowNanos(), std::memory_order_relaxed);
    c_.counters.migration_errors.fetch_add(1, std::memory_order_relaxed);
    TMEM_LOG_RATE_LIMITED(Error) << c_.Describe() << ": migration failed, will retry: " << st;
    MutexLock lock(&wake_mu_);
    if (!stopping_) wake_cv_.WaitFor(&wake_mu_, std::chrono::milliseconds(c_.options.migrate_retry_ms));
  }
}

absl::Status Migrator::RunBatch(uint32_t max_segments, bool copy_forward, bool* progress) {
  MutexLock lock(&batch_mu_);
  *progress = false;
  Batch b;
  if (!SelectBatch(max_segments, b)) return absl::OkStatus();
  TMEM_RETURN_IF_ERROR(WriteBack(b, copy_forward));
  TMEM_RETURN_IF_ERROR(Commit(b));
  c_.counters.migrated_bytes.fetch_add(b.bytes, std::memory_order_relaxed);
  *progress = true;
  return absl::OkStatus();
}

bool Migrator::SelectBatch(uint32_t max_segments, Batch& b) {
  const uint64_t from = c_.migrated_seq.load() + 1;
  b.upto = c_.log->flushed_seq();
  if (b.upto < from) return false;
  // Up to `max_segments` segments that hold lines to write back: the lines noted in a segment
  // whose newest version is there (or earlier). The sequence numbers in between hold none (clean
  // promotions, numbers skipped after a crash), and neither do segments whose lines all have
  // newer versions later (overwritten data): those go along free, up to a span of an eighth of
  // the log, so that a cache full of overwritten data frees its room with one record update per
  // span rather than per `max_segments` segments (each update costs two device syncs).
  const uint64_t max_span = std::max<uint64_t>(max_segments, c_.log->geometry().segment_count / 8);
  uint32_t taken = 0;
  for (uint64_t next = from;;) {
    std::optional<LineIndex::NotedSegment> seg = c_.index.NextNoted(next);
    if (!seg.has_value() || seg->seq > b.upto) break;  // all up to upto go along
    if (seg->seq >= from + max_span) {
      b.upto = from + max_span - 1;
      break;
    }
    next = seg->seq + 1;
    const size_t before = b.items.size();
    for (uint64_t line : seg->lines) {
      std::optional<LineEntry> e = c_.index.Lookup(line);
      // Lines whose newest version is in a later segment wait for that segment's turn.
      if (e.has_value() && e->dirty != 0 && e->seq <= seg->seq) b.items.push_back({line, *e});
    }
    if (b.items.size() > before && ++taken == max_segments) {
      b.upto = seg->seq;
      break;
    }
  }
  // A line noted twice (in one segment, or in two at the same version) is written back once.
  std::sort(b.items.begin(), b.items.end(), [](const Item& x, const Item& y) { return x.line < y.line; });
  b.items.erase(
      std::unique(b.items.begin(), b.items.end(), [](const Item& x, const Item& y) { return x.line == y.line; }),
      b.items.end());
  b.written_back.assign(b.items.size(), false);
  return true;
}

absl::Status Migrator::WriteBack(Batch& b, bool copy_forward) {
  // Every version written back must be durable in the cache first. Were the store to get a
  // version whose segment a power cut then took from the cache, recovery would bring back an
  // older version of the line, whose clean sectors claim to equal the store's: the lost newer
  // data would show through them once the line left the cache.
  if (!b.items.empty() && c_.synced_seq.load(std::memory_order_acquire) < b.upto) {
    TMEM_RETURN_IF_ERROR(commit_.SyncAll());
  }
  // Read the lines (in sorted order, in chunks) and write their dirty sectors back, coalescing
  // adjacent sectors of adjacent lines into one write.
  const std::string store = c_.backing->Describe();
  std::vector<uint8_t> data;
  std::vector<uint8_t> extent;
  uint64_t extent_offset = 0;
  auto put_extent = [&]() -> absl::Status {
    if (extent.empty()) return absl::OkStatus();
    absl::Status st = c_.backing->Pwrite(extent.data(), static_cast<uint32_t>(extent.size()), extent_offset, false);
    b.bytes += extent.size();
    // Progress within a batch, for writers waiting for room (a long batch to a slow store works).
    if (st.ok()) c_.counters.written_back_bytes.fetch_add(extent.size(), std::memory_order_relaxed);
    extent.clear();
    return Io(st, "migrate to " + store);
  };
  for (size_t at = 0; at < b.items.size(); at += kReadChunkLines) {
    const size_t n = std::min(kReadChunkLines, b.items.size() - at);
    data.resize(n * kLineBytes);
    std::vector<log::SegmentLog::PageRead> reads(n);
    for (size_t i = 0; i < n; ++i) {
      const LineEntry& e = b.items[at + i].entry;
      reads[i].loc = {e.seq, e.offset};
      reads[i].len = kLineBytes;
      reads[i].expected_crc = e.crc;
      reads[i].out = data.data() + i * kLineBytes;
    }
    c_.log->ReadMany(reads);
    for (size_t i = 0; i < n; ++i) {
      const Item& item = b.items[at + i];
      if (!reads[i].outcome.ok()) return Io(reads[i].outcome.status(), "migrate: read the cache device");
      if (*reads[i].outcome != log::SegmentLog::ReadOutcome::kOk) {
        const std::string why = absl::StrCat("migration lost block ", item.line * kLineBytes,
                                             ": its segment on the cache device is unreadable");
        c_.Fail(why);
        return absl::DataLossError(why);
      }
      const uint8_t* line_data = data.data() + i * kLineBytes;
      if (copy_forward && CopyForward(item.line, item.entry, line_data)) continue;
      b.written_back[at + i] = true;
      TMEM_RETURN_IF_ERROR(ForEachDirtyRun(item.entry.dirty, [&](uint32_t begin, uint32_t len) -> absl::Status {
        const uint64_t off = item.line * kLineBytes + begin;
        if (!extent.empty() && (extent_offset + extent.size() != off || extent.size() + len > kMaxBackingIo)) {
          TMEM_RETURN_IF_ERROR(put_extent());
        }
        if (extent.empty()) extent_offset = off;
        extent.insert(extent.end(), line_data + begin, line_data + begin + len);
        return absl::OkStatus();
      }));
    }
  }
  TMEM_RETURN_IF_ERROR(put_extent());
  if (b.bytes > 0) TMEM_RETURN_IF_ERROR(Io(c_.backing->Flush(), "migrate: flush " + store));
  return absl::OkStatus();
}

absl::Status Migrator::Commit(Batch& b) {
  // Lines skipped by the selection have their newest version in a later segment, and lines
  // copied forward have their copy there: it must be on the device before the record says these
  // segments need no replay.
  TMEM_RETURN_IF_ERROR(commit_.SyncAll());
  uint64_t cleaned = 0;
  for (size_t k = 0; k < b.items.size(); ++k) {
    if (!b.written_back[k]) continue;
    ++cleaned;
    c_.index.MarkClean(b.items[k].line, b.items[k].entry);
  }
  TMEM_RETURN_IF_ERROR(record_.Write(b.upto));
  c_.migrated_seq.store(b.upto);
  c_.log->SetReclaimLimit(b.upto);
  c_.index.ForgetUpTo(b.upto);
  c_.counters.migrated_lines.fetch_add(cleaned, std::memory_order_relaxed);
  return absl::OkStatus();
}

bool Migrator::CopyForward(uint64_t line, const LineEntry& entry, const uint8_t* data) {
  LineIndex::Stripe& s = c_.index.StripeOf(line);
  // Waiting for a writer is safe: none holds write_mu while it waits for room (it lets go
  // first), so whoever holds it finishes without migration. Not waiting would send the line
  // to the store instead, which is what copying forward avoids.
  MutexLock write_lock(&s.write_mu);
  std::optional<LineEntry> now = c_.index.Lookup(line);
  if (!now.has_value() || !now->SameVersion(entry)) return false;
  uint8_t raw[log::kSlotKeyBytes];
  EncodeLineKey(line, now->dirty, raw);
  absl::StatusOr<log::Location> loc =
      c_.log->Append(raw, data, kLineBytes, now->crc, {.pin = true, .may_wait = false, .use_reserve = true});
  if (!loc.ok()) return false;
  c_.ram.Insert(loc->seq, loc->offset, data);
  c_.index.Moved(s, line, *loc);
  c_.log->Unpin(loc->seq);
  c_.counters.copied_forward_lines.fetch_add(1, std::memory_order_relaxed);
  return true;
}

absl::Status Migrator::MigrateNow() {
  TMEM_RETURN_IF_ERROR(commit_.SyncAll());
  const uint64_t target = c_.log->flushed_seq();
  while (c_.migrated_seq.load() < target) {
    bool progress = false;
    TMEM_RETURN_IF_ERROR(RunBatch(c_.tunables.get().migrate_batch_segments, /*copy_forward=*/false, &progress));
    if (!progress) break;
  }
  return absl::OkStatus();
}

absl::Status Migrator::Drain(std::optional<std::chrono::steady_clock::time_point> deadline) {
  // Each pass migrates what was written before it; a quiet export needs one or two.
  for (int pass = 0; pass < 1000; ++pass) {
    TMEM_RETURN_IF_ERROR(MigrateNow());
    if (c_.index.dirty_lines() == 0) return absl::OkStatus();
    if (deadline.has_value() && std::chrono::steady_clock::now() >= *deadline) {
      return absl::DeadlineExceededError(absl::StrCat("drain stopped at the call's deadline with ",
                                                      c_.index.dirty_lines(),
                                                      " dirty lines left; migration goes on in the background"));
    }
  }
  return absl::UnavailableError("writes kept the cache dirty; drain again once they stop");
}

}  // namespace tmem::blockcache
