#include "server/blockcache/block_cache.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/blockcache/format.h"
#include "server/log/log_format.h"

namespace tmem::blockcache {
namespace {

constexpr uint32_t kMaxBackingIo = 1 << 20;  // migration and miss reads coalesce up to this

uint8_t SectorsTouched(uint32_t begin, uint32_t end) {
  uint8_t m = 0;
  for (uint32_t s = begin / kSectorBytes; s * kSectorBytes < end; ++s) m |= static_cast<uint8_t>(1u << s);
  return m;
}

std::optional<CacheRecordDisk> ParseRecord(const uint8_t* block, const uint8_t (&uuid)[16]) {
  CacheRecordDisk r;
  std::memcpy(&r, block, sizeof(r));
  if (r.magic != kCacheRecordMagic || r.version != kCacheRecordVersion || r.line_bytes != kLineBytes ||
      std::memcmp(r.device_uuid, uuid, 16) != 0 || r.crc != crc32c::Value(&r, offsetof(CacheRecordDisk, crc))) {
    return std::nullopt;
  }
  return r;
}

// The newest valid record, if any.
absl::StatusOr<std::optional<CacheRecordDisk>> ReadRecord(io::BlockDevice* device, const log::LogGeometry& g) {
  std::optional<CacheRecordDisk> best;
  io::AlignedBuffer block(log::kBlockBytes, log::kBlockBytes);
  for (uint64_t offset : log::kOwnerRecordOffset) {
    TMEM_RETURN_IF_ERROR(device->Read(offset, block.data(), log::kBlockBytes));
    auto r = ParseRecord(block.data(), g.device_uuid);
    if (r && (!best || r->generation > best->generation)) best = r;
  }
  return best;
}

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

// A version of a line's slot key (format.h).
void EncodeLineKey(uint64_t line, uint8_t dirty, uint8_t (&raw)[log::kSlotKeyBytes]) {
  LineKeyDisk key{};
  key.magic = kLineKeyMagic;
  key.line = line;
  key.dirty = dirty;
  std::memcpy(raw, &key, sizeof(raw));
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

absl::Status Io(const absl::Status& s, const std::string& what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", std::string(s.message())));
}

}  // namespace

BlockCache::BlockCache(const BlockCacheOptions& options)
    : options_(options),
      device_(options.cache_device),
      backing_(options.backing),
      stripes_(std::make_unique<Stripe[]>(kStripes)),
      ram_(options.ram_cache_bytes, kLineBytes) {
  tunables_ = {options.barrier_deadline_us, options.migrate_batch_segments, options.migrate_idle_ms,
               options.migrate_free_segments_low, options.migrate_max_age_ms};
  clock_ = options.log.clock != nullptr ? options.log.clock : Clock::Real();
}

absl::StatusOr<std::unique_ptr<BlockCache>> BlockCache::Open(const BlockCacheOptions& o) {
  if (o.cache_device == nullptr || o.backing == nullptr) {
    return absl::InvalidArgumentError("a cached export needs a cache device and a backing store");
  }
  const uint64_t backing_bytes = o.backing->size();
  if (backing_bytes == 0 || backing_bytes % kLineBytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the backing store ", o.backing->Describe(), " has ", backing_bytes,
                                                   " bytes; a cached export needs a positive multiple of ", kLineBytes));
  }
  if (o.migrate_batch_segments == 0 || o.barrier_deadline_us < 0 || o.migrate_idle_ms < 0 || o.migrate_retry_ms <= 0 ||
      o.full_write_timeout_ms < 0) {
    return absl::InvalidArgumentError("bad block cache options: the migration batch must be positive and times >= 0");
  }
  io::BlockDevice* dev = o.cache_device;
  const std::string what = dev->Describe();

  // Decide whether the device is this export's cache, fresh, or something else.
  io::AlignedBuffer first(log::kBlockBytes, log::kBlockBytes);
  TMEM_RETURN_IF_ERROR(Io(dev->Read(0, first.data(), log::kBlockBytes), "read " + what));
  bool fresh = AllZero(first.data(), log::kBlockBytes);
  std::optional<CacheRecordDisk> record;
  if (!fresh) {
    absl::StatusOr<log::LogGeometry> g = log::SegmentLog::ReadGeometry(dev);
    if (!g.ok()) {
      if (!o.format) {
        return absl::FailedPreconditionError(
            absl::StrCat("cache device: ", g.status().message(), " (format it as a cache with --format)"));
      }
      fresh = true;
    } else {
      TMEM_ASSIGN_OR_RETURN(record, ReadRecord(dev, *g));
      if (!record.has_value()) {
        if (!o.format) {
          return absl::FailedPreconditionError(absl::StrCat(
              what, " holds a tmem log but no block cache record (a page pool device?); refusing to use it as a "
                    "cache without --format"));
        }
        fresh = true;
      } else if (record->backing_bytes != backing_bytes) {
        // Never formatted over, even with --format: it may hold dirty data of that store.
        return absl::FailedPreconditionError(absl::StrCat(
            what, " is the cache of a backing store of ", record->backing_bytes, " bytes; ", o.backing->Describe(),
            " has ", backing_bytes, ". Drain it with its own backing store, or zero it to discard it"));
      }
    }
  }
  if (fresh) {
    TMEM_RETURN_IF_ERROR(log::SegmentLog::Format(dev, {.segment_bytes = o.segment_bytes, .force = true}));
  }
  std::unique_ptr<BlockCache> cache(new BlockCache(o));
  cache->size_ = backing_bytes;
  TMEM_ASSIGN_OR_RETURN(cache->geometry_, log::SegmentLog::ReadGeometry(dev));
  // Size the index for as many lines as the cache can hold (or the export has), so that a cold
  // cache filling up never rehashes under the writers' locks.
  const uint64_t capacity_lines = cache->geometry_.segment_count * (cache->geometry_.segment_bytes / kLineBytes);
  const uint64_t expect = std::min(capacity_lines, backing_bytes / kLineBytes) / kStripes + 1;
  for (size_t i = 0; i < kStripes; ++i) {
    MutexLock lock(&cache->stripes_[i].index_mu);
    cache->stripes_[i].lines.reserve(expect);
  }
  uint64_t migrated = 0;
  if (fresh) {
    TMEM_RETURN_IF_ERROR(cache->WriteRecord(0));
  } else {
    cache->record_generation_ = record->generation;
    migrated = record->migrated_seq;
    TMEM_RETURN_IF_ERROR(cache->Recover(migrated));
  }
  log::LogOptions lo = o.log;
  // Segments only relocations may open: they make room for every other append.
  if (lo.reserved_segments == 0) {
    lo.reserved_segments = static_cast<uint32_t>(std::clamp<uint64_t>(cache->geometry_.segment_count / 16, 2, 64));
  }
  // After a crash the log starts right after the newest segment that reached the device (its
  // headers are read once more, as Recover just did), so a crash skips no room. The lease then
  // only sets how often a renewal (a checkpoint and a device sync, which stalls the segment
  // writes in flight on some devices) is due: every half lease, half the ring here.
  lo.resume_after_newest_segment = true;
  lo.seq_lease_segments = std::min<uint64_t>(lo.seq_lease_segments, std::max<uint64_t>(cache->geometry_.segment_count, 16));
  TMEM_ASSIGN_OR_RETURN(cache->log_, log::SegmentLog::Open(dev, lo));
  // The segments after the record hold the recovered lines: readable, and not reused until
  // migration has written them back (the reclaim limit never passed the record).
  TMEM_RETURN_IF_ERROR(cache->log_->KeepSegmentsAfter(migrated));
  cache->log_->SetReclaimLimit(migrated);
  // What recovery found is what the device holds now: make it durable before anything is
  // acknowledged on top of it (a killed process may have left it in the device's cache).
  TMEM_RETURN_IF_ERROR(Io(dev->Sync(), "sync the cache device"));
  cache->migrated_seq_.store(migrated);
  cache->synced_seq_.store(cache->log_->head_seq());
  cache->last_io_ns_.store(cache->clock_->NowNanos());
  TMEM_LOG(Info) << "block cache on " << what << " for " << o.backing->Describe() << ": "
                 << cache->geometry_.segment_count << " segments of " << cache->geometry_.segment_bytes << " bytes, "
                 << (fresh ? "formatted" : absl::StrCat("recovered ", cache->counters_.recovered_segments.load(),
                                                        " segments (", cache->counters_.recovered_lines.load(),
                                                        " lines, ", cache->counters_.recovery_torn_pages.load(),
                                                        " torn pages skipped)"));
  cache->migrator_ = std::thread([c = cache.get()] { c->MigratorLoop(); });
  return cache;
}

absl::StatusOr<std::unique_ptr<BlockCache>> BlockCache::OpenOwning(std::unique_ptr<io::BlockDevice> device,
                                                                    std::unique_ptr<nbd::BlockBackend> backing,
                                                                    BlockCacheOptions options) {
  options.cache_device = device.get();
  options.backing = backing.get();
  TMEM_ASSIGN_OR_RETURN(std::unique_ptr<BlockCache> cache, Open(options));
  cache->owned_device_ = std::move(device);
  cache->owned_backing_ = std::move(backing);
  return cache;
}

BlockCache::~BlockCache() {
  if (log_ != nullptr && !failed_.load()) {
    absl::Status st = SyncAll();
    if (!st.ok()) {
      TMEM_LOG(Warning) << Describe() << ": final sync failed: " << st;
    }
  }
  {
    MutexLock lock(&wake_mu_);
    stopping_ = true;
    wake_cv_.SignalAll();
  }
  if (migrator_.joinable()) migrator_.join();
  // A clean close records the log's head, so that the next start continues right after it;
  // after a failure the log's destructor just stops (unsynced buffers are lost like in a
  // crash, and nothing acknowledged by a flush is among them).
  if (log_ != nullptr && !failed_.load()) {
    absl::Status st = log_->CloseClean();
    if (!st.ok()) {
      TMEM_LOG(Warning) << Describe() << ": closing the log cleanly failed: " << st;
    }
  }
  log_.reset();
}

absl::Status BlockCache::Recover(uint64_t migrated_seq) {
  // Rebuilds the index from every valid segment after the record, oldest first, so that each
  // line ends up at its newest whole version; migration writes the dirty ones back later.
  uint64_t skipped = 0;
  absl::Status st = log::SegmentLog::ScanSegments(
      device_, migrated_seq,
      [&](const log::SegmentLog::ScannedSegment& seg) -> absl::Status {
        counters_.recovered_segments.fetch_add(1);
        for (const log::SlotEntryDisk& e : seg.entries) {
          LineKeyDisk key;
          std::memcpy(&key, e.key, sizeof(key));
          if (key.magic != kLineKeyMagic || e.length != kLineBytes || key.line >= size_ / kLineBytes) {
            counters_.recovery_torn_pages.fetch_add(1);
            continue;
          }
          const uint8_t* data = seg.data + e.offset;
          if (crc32c::Value(data, kLineBytes) != e.crc) {
            // Torn: this version never reached the device whole, and no flush acknowledged it;
            // the line keeps its previous version (an older segment's, or the backing store's).
            counters_.recovery_torn_pages.fetch_add(1);
            continue;
          }
          Stripe& s = StripeOf(key.line);
          MutexLock index_lock(&s.index_mu);
          s.lines[key.line] = Entry{seg.seq, e.offset, e.crc, key.dirty};
          if (key.dirty != 0) {
            MutexLock segs_lock(&segs_mu_);
            NoteSegmentLine(seg.seq, key.line);
          }
          counters_.recovered_lines.fetch_add(1);
        }
        return absl::OkStatus();
      },
      &skipped);
  TMEM_RETURN_IF_ERROR(st);
  uint64_t cached = 0, dirty = 0;
  for (size_t i = 0; i < kStripes; ++i) {
    MutexLock lock(&stripes_[i].index_mu);
    cached += stripes_[i].lines.size();
    for (const auto& [line, e] : stripes_[i].lines) dirty += e.dirty != 0 ? 1 : 0;
  }
  counters_.cached_lines.store(cached);
  counters_.dirty_lines.store(dirty);
  return absl::OkStatus();
}

absl::Status BlockCache::WriteRecord(uint64_t migrated_seq) {
  CacheRecordDisk r{};
  r.magic = kCacheRecordMagic;
  r.version = kCacheRecordVersion;
  r.line_bytes = kLineBytes;
  std::memcpy(r.device_uuid, geometry_.device_uuid, 16);
  r.generation = record_generation_ + 1;
  r.migrated_seq = migrated_seq;
  r.backing_bytes = size_;
  r.crc = crc32c::Value(&r, offsetof(CacheRecordDisk, crc));
  io::AlignedBuffer block(log::kBlockBytes, log::kBlockBytes);
  std::memset(block.data(), 0, log::kBlockBytes);
  std::memcpy(block.data(), &r, sizeof(r));
  TMEM_RETURN_IF_ERROR(Io(device_->Write(log::kOwnerRecordOffset[r.generation % 2], block.data(), log::kBlockBytes),
                          "write the cache record"));
  TMEM_RETURN_IF_ERROR(Io(device_->Sync(), "sync the cache record"));
  record_generation_ = r.generation;
  return absl::OkStatus();
}

nbd::BackendCaps BlockCache::caps() const {
  // Trim is not passed on: a trim of the backing store under dirty lines would be undone by
  // their migration. Zero goes through the cache as written zeros. A write lands in the open
  // segment's RAM buffer (it waits only when the cache is full).
  return {.flush = true,
          .fua = true,
          .trim = false,
          .zero = true,
          .multi_conn = true,
          .read_only = false,
          .buffered_writes = true};
}

std::string BlockCache::Describe() const {
  return absl::StrCat("cache ", device_->Describe(), " over ", backing_->Describe());
}

absl::Status BlockCache::FailedStatus() const {
  if (!failed_.load(std::memory_order_acquire)) return absl::OkStatus();
  MutexLock lock(&failure_mu_);
  return absl::InternalError(absl::StrCat("the cache device failed: ", failure_));
}

void BlockCache::Fail(const std::string& why) {
  {
    MutexLock lock(&failure_mu_);
    if (failed_.load()) return;
    failure_ = why;
  }
  failed_.store(true, std::memory_order_release);
  TMEM_LOG(Error) << Describe() << ": " << why << "; writes now fail with EIO, flushed data stays on the device";
}

std::optional<BlockCache::Entry> BlockCache::Lookup(uint64_t line) const {
  const Stripe& s = stripes_[StripeIndex(line)];
  MutexLock lock(&s.index_mu);
  auto it = s.lines.find(line);
  if (it == s.lines.end()) return std::nullopt;
  return it->second;
}

bool BlockCache::ReadRam(const Entry& entry, uint8_t* out, bool count_hit) {
  // Not once the cache failed: a line whose segment write failed must read as lost, not from RAM.
  if (!ram_.enabled() || failed_.load(std::memory_order_acquire)) return false;
  if (!ram_.Lookup(entry.seq, entry.offset, out)) return false;
  // The same check a device read gets; a mismatch would be a bug here: count it, read the log.
  if (crc32c::Value(out, kLineBytes) != entry.crc) {
    counters_.ram_mismatches.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (count_hit) counters_.read_hits.fetch_add(1, std::memory_order_relaxed);
  return true;
}

absl::Status BlockCache::PreadBuffered(void* buf, uint32_t len, uint64_t offset) {
  if (!ram_.enabled()) return absl::UnavailableError("no RAM tier");
  last_io_ns_.store(clock_->NowNanos(), std::memory_order_relaxed);
  auto* out = static_cast<uint8_t*>(buf);
  std::array<uint8_t, kLineBytes> tmp;
  const uint64_t end = offset + len;
  uint64_t lines = 0;
  for (uint64_t pos = offset; pos < end; ++lines) {
    const uint64_t line = pos / kLineBytes;
    const uint32_t in = static_cast<uint32_t>(pos % kLineBytes);
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kLineBytes - in, end - pos));
    std::optional<Entry> e = Lookup(line);
    // Hits are counted once the whole read is served here (a declined one is read again).
    uint8_t* dst = n == kLineBytes ? out + (pos - offset) : tmp.data();
    if (!e.has_value() || !ReadRam(*e, dst, /*count_hit=*/false)) return absl::UnavailableError("not in RAM");
    if (n != kLineBytes) std::memcpy(out + (pos - offset), tmp.data() + in, n);
    pos += n;
  }
  counters_.read_hits.fetch_add(lines, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status BlockCache::ReadLine(uint64_t line, std::optional<Entry> entry, uint8_t* out) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (entry.has_value() && ReadRam(*entry, out)) return absl::OkStatus();
    if (!entry.has_value() || entry->dirty == 0) {
      // Not cached, or clean: the backing store holds this line's newest data. (A clean entry's
      // segment may be reused at any time, so read the store rather than risk a second try.)
      if (entry.has_value()) {
        auto r = log_->Read({entry->seq, entry->offset}, kLineBytes, entry->crc, out);
        if (r.ok() && *r == log::SegmentLog::ReadOutcome::kOk) {
          counters_.read_hits.fetch_add(1, std::memory_order_relaxed);
          ram_.Insert(entry->seq, entry->offset, out);
          return absl::OkStatus();
        }
      }
      counters_.read_misses.fetch_add(1, std::memory_order_relaxed);
      return Io(backing_->Pread(out, kLineBytes, line * kLineBytes), "read " + backing_->Describe());
    }
    auto r = log_->Read({entry->seq, entry->offset}, kLineBytes, entry->crc, out);
    if (!r.ok()) return Io(r.status(), "read the cache device");
    if (*r == log::SegmentLog::ReadOutcome::kOk) {
      counters_.read_hits.fetch_add(1, std::memory_order_relaxed);
      ram_.Insert(entry->seq, entry->offset, out);
      return absl::OkStatus();
    }
    // Gone or corrupt: fine if a newer version or a migration replaced the entry meanwhile.
    std::optional<Entry> now = Lookup(line);
    if (now.has_value() && now->seq == entry->seq && now->offset == entry->offset && now->dirty != 0) {
      return absl::DataLossError(absl::StrCat("the newest data of block ", line * kLineBytes,
                                              " was lost by the cache device (",
                                              *r == log::SegmentLog::ReadOutcome::kGone ? "its segment write failed"
                                                                                         : "CRC mismatch",
                                              ")"));
    }
    entry = now;
  }
  return absl::UnavailableError(absl::StrCat("block ", line * kLineBytes, " kept changing under a read"));
}

absl::Status BlockCache::Pread(void* buf, uint32_t len, uint64_t offset) {
  // Reads are foreground load too: background migration waits for a pause in them.
  last_io_ns_.store(clock_->NowNanos(), std::memory_order_relaxed);
  auto* out = static_cast<uint8_t*>(buf);
  std::array<uint8_t, kLineBytes> tmp;
  uint64_t pos = offset;
  const uint64_t end = offset + len;
  // Whether lines this read fetches from the backing store are kept (read caching): decided
  // for the whole request, from where it starts and how long the sequential run is.
  const bool promote = options_.read_cache && len > 0 &&
                       ShouldPromote(offset / kLineBytes, (end - 1) / kLineBytes - offset / kLineBytes + 1);
  while (pos < end) {
    const uint64_t line = pos / kLineBytes;
    const uint32_t in = static_cast<uint32_t>(pos % kLineBytes);
    std::optional<Entry> e = Lookup(line);
    if (e.has_value()) {
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kLineBytes - in, end - pos));
      if (n == kLineBytes) {  // a whole line: straight into place
        TMEM_RETURN_IF_ERROR(ReadLine(line, e, out + (pos - offset)));
        pos += n;
        continue;
      }
      TMEM_RETURN_IF_ERROR(ReadLine(line, e, tmp.data()));
      std::memcpy(out + (pos - offset), tmp.data() + in, n);
      pos += n;
      continue;
    }
    // A run of lines the cache does not hold: one read of the backing store, whole lines.
    uint64_t last = line;
    while ((last + 1) * kLineBytes < end && (last + 2 - line) * kLineBytes <= kMaxBackingIo &&
           !Lookup(last + 1).has_value()) {
      ++last;
    }
    const uint64_t run_begin = line * kLineBytes, run_end = (last + 1) * kLineBytes;
    const uint64_t copy_end = std::min(end, run_end);
    if (in == 0 && copy_end == run_end) {
      TMEM_RETURN_IF_ERROR(Io(backing_->Pread(out + (pos - offset), static_cast<uint32_t>(run_end - run_begin), run_begin),
                              "read " + backing_->Describe()));
      if (promote) {
        for (uint64_t l = line; l <= last; ++l) Promote(l, out + (pos - offset) + (l - line) * kLineBytes);
      }
    } else {
      std::vector<uint8_t> run(run_end - run_begin);
      TMEM_RETURN_IF_ERROR(Io(backing_->Pread(run.data(), static_cast<uint32_t>(run.size()), run_begin),
                              "read " + backing_->Describe()));
      std::memcpy(out + (pos - offset), run.data() + in, copy_end - pos);
      if (promote) {
        for (uint64_t l = line; l <= last; ++l) Promote(l, run.data() + (l - line) * kLineBytes);
      }
    }
    counters_.read_misses.fetch_add(last - line + 1, std::memory_order_relaxed);
    pos = copy_end;
  }
  return absl::OkStatus();
}

bool BlockCache::ShouldPromote(uint64_t first, uint64_t count) {
  // A run continues when a read starts where the previous one ended (several streams at once
  // look random here, and get promoted: the threshold guards against one long scan).
  const uint64_t prev_end = read_run_end_.exchange(first + count, std::memory_order_relaxed);
  uint64_t run = count;
  if (prev_end == first) run += read_run_lines_.load(std::memory_order_relaxed);
  read_run_lines_.store(run, std::memory_order_relaxed);
  return run <= options_.read_cache_threshold_lines;
}

void BlockCache::Promote(uint64_t line, const uint8_t* data) {
  if (failed_.load(std::memory_order_acquire)) return;
  Stripe& s = StripeOf(line);
  // Never wait for room to cache a clean line: skip when a writer holds the stripe.
  if (!s.write_mu.TryLock()) return;
  if (Lookup(line).has_value()) {
    // Written (or promoted) since the backing store was read: that version wins.
    s.write_mu.Unlock();
    return;
  }
  const uint32_t crc = crc32c::Value(data, kLineBytes);
  uint8_t raw[log::kSlotKeyBytes];
  EncodeLineKey(line, 0, raw);
  // Never waits for room: a clean line is not worth stalling a read for.
  absl::StatusOr<log::Location> loc = log_->Append(raw, data, kLineBytes, crc, /*pin=*/true, /*may_wait=*/false);
  if (loc.ok()) {
    ram_.Insert(loc->seq, loc->offset, data);
    {
      MutexLock index_lock(&s.index_mu);
      auto [it, inserted] = s.lines.try_emplace(line, Entry{loc->seq, loc->offset, crc, 0});
      if (inserted) counters_.cached_lines.fetch_add(1, std::memory_order_relaxed);
    }
    log_->Unpin(loc->seq);
    counters_.read_promotions.fetch_add(1, std::memory_order_relaxed);
  }
  s.write_mu.Unlock();
}

absl::Status BlockCache::WriteLine(uint64_t line, const uint8_t* data, uint32_t begin, uint32_t end,
                                   bool may_wait) {
  Stripe& s = StripeOf(line);
  while (true) {
    uint64_t generation = 0;
    {
      MutexLock write_lock(&s.write_mu);
      std::array<uint8_t, kLineBytes> merged;
      const uint8_t* src = data;
      uint8_t mask = 0xFF;
      if (begin != 0 || end != kLineBytes) {
        std::optional<Entry> old = Lookup(line);
        TMEM_RETURN_IF_ERROR(ReadLine(line, old, merged.data()));
        std::memcpy(merged.data() + begin, data, end - begin);
        src = merged.data();
        mask = static_cast<uint8_t>((old.has_value() ? old->dirty : 0) | SectorsTouched(begin, end));
      }
      const uint32_t crc = crc32c::Value(src, kLineBytes);
      uint8_t raw[log::kSlotKeyBytes];
      EncodeLineKey(line, mask, raw);
      log::Location loc;
      absl::StatusOr<size_t> appended = log_->AppendBatch(&raw, src, kLineBytes, &crc, 1, &loc, /*pin=*/true,
                                                          /*may_wait=*/false, /*use_reserve=*/false, {}, &generation);
      if (appended.ok()) {
        Publish(s, line, 1, &loc, &crc, mask, src);
        return absl::OkStatus();
      }
      if (!absl::IsResourceExhausted(appended.status())) return appended.status();
    }
    if (!may_wait) return absl::UnavailableError("the cache log has no room now");
    // No room: wait with no lock held (relocation needs this stripe to make room), then merge
    // again from whatever the line holds by then.
    TMEM_RETURN_IF_ERROR(WaitForRoom(generation));
  }
}

void BlockCache::Publish(Stripe& s, uint64_t first, size_t n, const log::Location* locs, const uint32_t* crcs,
                         uint8_t mask, const uint8_t* data) {
  const uint64_t seq = locs[0].seq;
  for (size_t i = 0; i < n; ++i) ram_.Insert(seq, locs[i].offset, data + i * kLineBytes);
  {
    MutexLock index_lock(&s.index_mu);
    for (size_t i = 0; i < n; ++i) {
      auto [it, inserted] = s.lines.try_emplace(first + i);
      if (inserted) counters_.cached_lines.fetch_add(1, std::memory_order_relaxed);
      if (it->second.dirty == 0) counters_.dirty_lines.fetch_add(1, std::memory_order_relaxed);
      it->second = Entry{seq, locs[i].offset, crcs[i], mask};
    }
    // Noted before the unpin: the segment cannot be written, so not migrated, before that.
    MutexLock segs_lock(&segs_mu_);
    for (size_t i = 0; i < n; ++i) NoteSegmentLine(seq, first + i);
  }
  // Published: the segment may be written now, and migration will find these lines in it.
  log_->UnpinMany(seq, static_cast<uint32_t>(n));
  counters_.write_lines.fetch_add(n, std::memory_order_relaxed);
  last_io_ns_.store(clock_->NowNanos(), std::memory_order_relaxed);
}

absl::Status BlockCache::WaitForRoom(uint64_t generation) {
  if (log_->WaitForProgress(generation, std::chrono::steady_clock::now() + std::chrono::seconds(1))) {
    return absl::OkStatus();
  }
  // Still no room: keep waiting while migration works (a slow store), not while it keeps failing.
  const int64_t since = migration_failing_since_ns_.load(std::memory_order_relaxed);
  const int64_t failing_ms = since == 0 ? 0 : (clock_->NowNanos() - since) / 1'000'000;
  if (since != 0 && failing_ms >= options_.full_write_timeout_ms) {
    counters_.full_write_failures.fetch_add(1, std::memory_order_relaxed);
    const std::string why = absl::StrCat("the cache is full and writing back to ", backing_->Describe(),
                                         " has failed for ", failing_ms, " ms; nothing was written");
    TMEM_LOG_RATE_LIMITED(Error) << Describe() << ": a write failed: " << why;
    return absl::UnavailableError(why);
  }
  return absl::OkStatus();
}

absl::Status BlockCache::WriteWholeLines(uint64_t first, uint32_t count, const uint8_t* data, bool may_wait) {
  TMEM_DCHECK(count > 0 && first / kStripeLines == (first + count - 1) / kStripeLines);
  std::vector<uint32_t> crcs(count);
  std::unique_ptr<uint8_t[][log::kSlotKeyBytes]> keys(new uint8_t[count][log::kSlotKeyBytes]);
  for (uint32_t i = 0; i < count; ++i) {
    crcs[i] = crc32c::Value(data + size_t{i} * kLineBytes, kLineBytes);
    EncodeLineKey(first + i, 0xFF, keys[i]);
  }
  Stripe& st = StripeOf(first);
  std::vector<log::Location> locs(count);
  uint32_t done = 0;
  while (done < count) {
    uint64_t generation = 0;
    {
      MutexLock write_lock(&st.write_mu);
      // One segment's worth at a time, published and unpinned before the next append.
      absl::StatusOr<size_t> appended =
          log_->AppendBatch(&keys[done], data + size_t{done} * kLineBytes, kLineBytes, &crcs[done], count - done,
                            &locs[done], /*pin=*/true, /*may_wait=*/false, /*use_reserve=*/false, {}, &generation);
      if (appended.ok()) {
        Publish(st, first + done, *appended, &locs[done], &crcs[done], 0xFF, data + size_t{done} * kLineBytes);
        done += static_cast<uint32_t>(*appended);
        continue;
      }
      if (!absl::IsResourceExhausted(appended.status())) return appended.status();
    }
    if (!may_wait) return absl::UnavailableError("the cache log has no room now");
    TMEM_RETURN_IF_ERROR(WaitForRoom(generation));  // with no lock held, as in WriteLine
  }
  return absl::OkStatus();
}

absl::Status BlockCache::Pwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) {
  TMEM_RETURN_IF_ERROR(WriteRange(static_cast<const uint8_t*>(buf), len, offset, /*may_wait=*/true));
  if (fua) return Flush();
  return absl::OkStatus();
}

absl::Status BlockCache::PwriteBuffered(const void* buf, uint32_t len, uint64_t offset) {
  return WriteRange(static_cast<const uint8_t*>(buf), len, offset, /*may_wait=*/false);
}

absl::Status BlockCache::WriteRange(const uint8_t* in, uint32_t len, uint64_t offset, bool may_wait) {
  TMEM_RETURN_IF_ERROR(FailedStatus());
  if (log_->counters().write_errors.load(std::memory_order_relaxed) > 0) {
    Fail("a segment write to the cache device failed");
    return FailedStatus();
  }
  // A partial line is merged with its old contents, which may have to be read from a device.
  if (!may_wait && (offset % kLineBytes != 0 || len % kLineBytes != 0)) {
    return absl::UnavailableError("a partial line may need a read first");
  }
  uint64_t pos = offset;
  const uint64_t end = offset + len;
  while (pos < end) {
    const uint64_t line = pos / kLineBytes;
    const uint32_t b = static_cast<uint32_t>(pos % kLineBytes);
    // Whole lines up to the end of their stripe's run go in one batch.
    const uint64_t whole = b == 0 ? std::min((end - pos) / kLineBytes, kStripeLines - line % kStripeLines) : 0;
    if (whole >= 2) {
      const uint32_t count = static_cast<uint32_t>(whole);
      TMEM_RETURN_IF_ERROR(WriteWholeLines(line, count, in + (pos - offset), may_wait));
      pos += uint64_t{count} * kLineBytes;
      continue;
    }
    const uint32_t e = static_cast<uint32_t>(std::min<uint64_t>(kLineBytes, b + (end - pos)));
    TMEM_RETURN_IF_ERROR(WriteLine(line, in + (pos - offset), b, e, may_wait));
    pos += e - b;
  }
  return absl::OkStatus();
}

absl::Status BlockCache::Flush() {
  counters_.flushes.fetch_add(1, std::memory_order_relaxed);
  const int64_t t0 = clock_->NowNanos();
  absl::Status st = SyncAll();
  const int64_t ns = std::max<int64_t>(0, clock_->NowNanos() - t0);
  size_t b = 0;
  while (b < std::size(kFlushBuckets) && ns > kFlushBuckets[b] * 1e9) ++b;
  counters_.flush_buckets[b].fetch_add(1, std::memory_order_relaxed);
  counters_.flush_ns_sum.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
  return st;
}

absl::Status BlockCache::SyncAll() {
  TMEM_RETURN_IF_ERROR(FailedStatus());
  const uint64_t target = log_->head_seq();
  int64_t deadline_us;
  {
    MutexLock lock(&tunables_mu_);
    deadline_us = tunables_.barrier_deadline_us;
  }
  {
    MutexLock lock(&flush_mu_);
    while (true) {
      if (synced_seq_.load(std::memory_order_acquire) >= target) return FailedStatus();
      if (!flushing_) break;
      flush_cv_.Wait(&flush_mu_);
    }
    flushing_ = true;
  }
  // The leader: let flushes arriving within the barrier deadline share this sync.
  if (deadline_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(deadline_us));
  const uint64_t upto = log_->head_seq();
  absl::Status st = log_->FlushUpTo(upto);
  if (st.ok()) {
    st = device_->Sync();
    counters_.syncs.fetch_add(1, std::memory_order_relaxed);
  }
  if (!st.ok()) Fail(absl::StrCat("flushing the cache device failed: ", st.message()));
  MutexLock lock(&flush_mu_);
  flushing_ = false;
  if (st.ok()) {
    uint64_t cur = synced_seq_.load(std::memory_order_acquire);
    while (cur < upto && !synced_seq_.compare_exchange_weak(cur, upto)) {
    }
  }
  flush_cv_.SignalAll();
  if (!st.ok()) return FailedStatus();
  return absl::OkStatus();
}

absl::Status BlockCache::Trim(uint64_t, uint64_t, bool) {
  return absl::InvalidArgumentError("a cached export does not trim");
}

absl::Status BlockCache::Zero(uint64_t offset, uint64_t len, bool, bool fua) {
  return nbd::ZeroByWriting(*this, offset, len, fua);
}

bool BlockCache::Relocate(uint64_t line, const Entry& entry, const uint8_t* data) {
  Stripe& s = StripeOf(line);
  // Waiting for a writer is safe: none holds write_mu while it waits for room (it lets go
  // first), so whoever holds it finishes without migration. Not waiting would send the line
  // to the store instead, which is what copying forward avoids.
  s.write_mu.Lock();
  std::optional<Entry> now = Lookup(line);
  if (!now.has_value() || now->seq != entry.seq || now->offset != entry.offset) {
    s.write_mu.Unlock();
    return false;
  }
  uint8_t raw[log::kSlotKeyBytes];
  EncodeLineKey(line, now->dirty, raw);
  absl::StatusOr<log::Location> loc =
      log_->Append(raw, data, kLineBytes, now->crc, /*pin=*/true, /*may_wait=*/false, /*use_reserve=*/true);
  if (!loc.ok()) {
    s.write_mu.Unlock();
    return false;
  }
  ram_.Insert(loc->seq, loc->offset, data);
  {
    MutexLock index_lock(&s.index_mu);
    Entry& e = s.lines[line];
    e.seq = loc->seq;
    e.offset = loc->offset;
    MutexLock segs_lock(&segs_mu_);
    NoteSegmentLine(loc->seq, line);
  }
  log_->Unpin(loc->seq);
  s.write_mu.Unlock();
  counters_.relocated_lines.fetch_add(1, std::memory_order_relaxed);
  return true;
}

absl::Status BlockCache::MigrateBatch(uint32_t max_segments, bool relocate, bool* progress) {
  MutexLock migrate_lock(&migrate_mu_);
  *progress = false;
  const uint64_t from = migrated_seq_.load() + 1;
  uint64_t upto = log_->flushed_seq();
  if (upto < from) return absl::OkStatus();
  // Up to `max_segments` segments that hold lines to write back: the lines noted in a segment
  // whose newest version is there (or earlier). The sequence numbers in between hold none (clean
  // promotions, numbers skipped after a crash), and neither do segments whose lines all have
  // newer versions later (overwritten data): those go along free, up to a span of an eighth of
  // the log, so that a cache full of overwritten data frees its room with one record update per
  // span rather than per `max_segments` segments (each update costs two device syncs).
  const uint64_t max_span = std::max<uint64_t>(max_segments, geometry_.segment_count / 8);
  struct Item {
    uint64_t line;
    Entry entry;
  };
  std::vector<Item> items;
  std::vector<uint64_t> noted;
  uint32_t taken = 0;
  for (uint64_t next = from;;) {
    uint64_t seq;
    {
      MutexLock lock(&segs_mu_);
      auto it = seg_lines_.lower_bound(next);
      if (it == seg_lines_.end() || it->first > upto) break;  // all up to upto go along
      if (it->first >= from + max_span) {
        upto = from + max_span - 1;
        break;
      }
      seq = it->first;
      noted = it->second.lines;
    }
    next = seq + 1;
    const size_t before = items.size();
    for (uint64_t line : noted) {
      std::optional<Entry> e = Lookup(line);
      // Lines whose newest version is in a later segment wait for that segment's turn.
      if (e.has_value() && e->dirty != 0 && e->seq <= seq) items.push_back({line, *e});
    }
    if (items.size() > before && ++taken == max_segments) {
      upto = seq;
      break;
    }
  }
  // A line noted twice (in one segment, or in two at the same version) is written back once.
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.line < b.line; });
  items.erase(std::unique(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.line == b.line; }),
              items.end());
  // Every version written back must be durable in the cache first. Were the store to get a
  // version whose segment a power cut then took from the cache, recovery would bring back an
  // older version of the line, whose clean sectors claim to equal the store's: the lost newer
  // data would show through them once the line left the cache.
  if (!items.empty() && synced_seq_.load(std::memory_order_acquire) < upto) TMEM_RETURN_IF_ERROR(SyncAll());
  // Read them (in sorted order, in chunks) and write their dirty sectors back, coalescing
  // adjacent sectors of adjacent lines into one write.
  uint64_t bytes = 0;
  std::vector<uint8_t> data;
  std::vector<uint8_t> extent;
  uint64_t extent_offset = 0;
  auto put_extent = [&]() -> absl::Status {
    if (extent.empty()) return absl::OkStatus();
    absl::Status st = backing_->Pwrite(extent.data(), static_cast<uint32_t>(extent.size()), extent_offset, false);
    bytes += extent.size();
    extent.clear();
    return Io(st, "migrate to " + backing_->Describe());
  };
  constexpr size_t kChunk = 256;
  std::vector<bool> written_back(items.size(), false);
  for (size_t at = 0; at < items.size(); at += kChunk) {
    const size_t n = std::min(kChunk, items.size() - at);
    data.resize(n * kLineBytes);
    std::vector<log::SegmentLog::PageRead> reads(n);
    for (size_t i = 0; i < n; ++i) {
      const Entry& e = items[at + i].entry;
      reads[i].loc = {e.seq, e.offset};
      reads[i].len = kLineBytes;
      reads[i].expected_crc = e.crc;
      reads[i].out = data.data() + i * kLineBytes;
    }
    log_->ReadMany(reads);
    for (size_t i = 0; i < n; ++i) {
      const Item& item = items[at + i];
      if (!reads[i].outcome.ok()) return Io(reads[i].outcome.status(), "migrate: read the cache device");
      if (*reads[i].outcome != log::SegmentLog::ReadOutcome::kOk) {
        const std::string why = absl::StrCat("migration lost block ", item.line * kLineBytes,
                                             ": its segment on the cache device is unreadable");
        Fail(why);
        return absl::DataLossError(why);
      }
      const uint8_t* line_data = data.data() + i * kLineBytes;
      if (relocate && Relocate(item.line, item.entry, line_data)) continue;
      written_back[at + i] = true;
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
  if (bytes > 0) TMEM_RETURN_IF_ERROR(Io(backing_->Flush(), "migrate: flush " + backing_->Describe()));
  // Lines skipped above have their newest version in a later segment, and relocated lines have
  // their copy there: it must be on the device before the record says these segments need no
  // replay.
  TMEM_RETURN_IF_ERROR(SyncAll());
  uint64_t cleaned = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    if (!written_back[k]) continue;
    const Item& item = items[k];
    ++cleaned;
    Stripe& s = StripeOf(item.line);
    MutexLock lock(&s.index_mu);
    auto it = s.lines.find(item.line);
    if (it != s.lines.end() && it->second.seq == item.entry.seq && it->second.offset == item.entry.offset &&
        it->second.dirty != 0) {
      it->second.dirty = 0;
      counters_.dirty_lines.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  TMEM_RETURN_IF_ERROR(WriteRecord(upto));
  migrated_seq_.store(upto);
  log_->SetReclaimLimit(upto);
  {
    MutexLock lock(&segs_mu_);
    seg_lines_.erase(seg_lines_.begin(), seg_lines_.upper_bound(upto));
  }
  counters_.migrated_lines.fetch_add(cleaned, std::memory_order_relaxed);
  counters_.migrated_bytes.fetch_add(bytes, std::memory_order_relaxed);
  *progress = true;
  return absl::OkStatus();
}

void BlockCache::MigratorLoop() {
  const uint64_t count = geometry_.segment_count;
  const uint64_t capacity_lines = count * (geometry_.segment_bytes / kLineBytes - 1);
  while (true) {
    Tunables t = tunables();
    bool room_low = false, idle = false;
    const uint64_t low = t.migrate_free_segments_low > 0 ? t.migrate_free_segments_low : std::max<uint64_t>(2, count / 4);
    {
      MutexLock lock(&wake_mu_);
      if (stopping_) return;
      const bool pending = log_->flushed_seq() > migrated_seq_.load();
      const int64_t idle_ns = clock_->NowNanos() - last_io_ns_.load(std::memory_order_relaxed);
      room_low = log_->head_seq() - migrated_seq_.load() + low >= count;
      idle = idle_ns >= t.migrate_idle_ms * 1'000'000;
      // Dirty data may wait for a pause in the load, but not forever.
      const bool aged = pending && t.migrate_max_age_ms > 0 && OldestDirtyAgeNs() >= t.migrate_max_age_ms * 1'000'000;
      if (!kicked_ && !(pending && (room_low || idle || aged))) {
        // Polls: writers waiting for room cannot wake it (they hold no lock it could share).
        wake_cv_.WaitFor(&wake_mu_, std::chrono::milliseconds(pending ? std::clamp<int64_t>(t.migrate_idle_ms / 2, 1, 10) : 10));
        continue;
      }
      kicked_ = false;
    }
    bool progress = false;
    // Busy and short of room with a dirty set that fits: keep it in the cache (copy forward).
    const bool relocate = options_.copy_forward && room_low && !idle &&
                          counters_.dirty_lines.load(std::memory_order_relaxed) * 2 < capacity_lines;
    absl::Status st = MigrateBatch(t.migrate_batch_segments, relocate, &progress);
    if (st.ok()) {
      migration_failing_since_ns_.store(0, std::memory_order_relaxed);
    } else {
      int64_t expected = 0;
      migration_failing_since_ns_.compare_exchange_strong(expected, clock_->NowNanos(), std::memory_order_relaxed);
      counters_.migration_errors.fetch_add(1, std::memory_order_relaxed);
      TMEM_LOG_RATE_LIMITED(Error) << Describe() << ": migration failed, will retry: " << st;
      MutexLock lock(&wake_mu_);
      if (!stopping_) wake_cv_.WaitFor(&wake_mu_, std::chrono::milliseconds(options_.migrate_retry_ms));
    }
  }
}

void BlockCache::NoteSegmentLine(uint64_t seq, uint64_t line) {
  SegLines& sl = seg_lines_[seq];
  if (sl.lines.empty()) sl.first_ns = clock_->NowNanos();
  sl.lines.push_back(line);
}

int64_t BlockCache::OldestDirtyAgeNs() const {
  MutexLock lock(&segs_mu_);
  if (seg_lines_.empty()) return 0;
  return std::max<int64_t>(0, clock_->NowNanos() - seg_lines_.begin()->second.first_ns);
}

absl::Status BlockCache::MigrateNow() {
  TMEM_RETURN_IF_ERROR(SyncAll());
  const uint64_t target = log_->flushed_seq();
  while (migrated_seq_.load() < target) {
    bool progress = false;
    TMEM_RETURN_IF_ERROR(MigrateBatch(tunables().migrate_batch_segments, /*relocate=*/false, &progress));
    if (!progress) break;
  }
  return absl::OkStatus();
}

absl::Status BlockCache::Drain() {
  // Each pass migrates what was written before it; a quiet export needs one or two.
  for (int pass = 0; pass < 1000; ++pass) {
    TMEM_RETURN_IF_ERROR(MigrateNow());
    if (counters_.dirty_lines.load() == 0) return absl::OkStatus();
  }
  return absl::UnavailableError("writes kept the cache dirty; drain again once they stop");
}

BlockCache::Tunables BlockCache::tunables() const {
  MutexLock lock(&tunables_mu_);
  return tunables_;
}

absl::Status BlockCache::SetTunables(const Tunables& t) {
  if (t.migrate_batch_segments == 0 || t.barrier_deadline_us < 0 || t.migrate_idle_ms < 0 || t.migrate_max_age_ms < 0) {
    return absl::InvalidArgumentError("migration batch must be positive and times >= 0");
  }
  {
    MutexLock lock(&tunables_mu_);
    tunables_ = t;
  }
  MutexLock lock(&wake_mu_);
  kicked_ = true;
  wake_cv_.SignalAll();
  return absl::OkStatus();
}

BlockCacheStatus BlockCache::status() const {
  BlockCacheStatus s;
  s.dirty_lines = counters_.dirty_lines.load();
  s.cached_lines = counters_.cached_lines.load();
  s.head_seq = log_->head_seq();
  s.synced_seq = synced_seq_.load();
  s.migrated_seq = migrated_seq_.load();
  s.free_segments = log_->free_segments();
  s.segment_count = geometry_.segment_count;
  s.read_hits = counters_.read_hits.load();
  s.read_misses = counters_.read_misses.load();
  s.read_promotions = counters_.read_promotions.load();
  s.ram_hits = ram_.hits();
  s.ram_bytes = ram_.used_bytes();
  s.ram_capacity_bytes = ram_.capacity_bytes();
  s.ram_mismatches = counters_.ram_mismatches.load();
  s.ram_evictions = ram_.evictions();
  s.full_write_failures = counters_.full_write_failures.load();
  s.oldest_dirty_age_ns = OldestDirtyAgeNs();
  s.write_lines = counters_.write_lines.load();
  s.flushes = counters_.flushes.load();
  s.syncs = counters_.syncs.load();
  s.migrated_lines = counters_.migrated_lines.load();
  s.relocated_lines = counters_.relocated_lines.load();
  s.migrated_bytes = counters_.migrated_bytes.load();
  s.migration_errors = counters_.migration_errors.load();
  s.recovered_segments = counters_.recovered_segments.load();
  s.recovered_lines = counters_.recovered_lines.load();
  s.recovery_torn_pages = counters_.recovery_torn_pages.load();
  s.failed = failed_.load();
  if (s.failed) {
    MutexLock lock(&failure_mu_);
    s.failure = failure_;
  }
  return s;
}

void BlockCache::VisitStats(StatsVisitor& v, const StatLabels& labels) const {
  const BlockCacheStatus s = status();
  // The cache device's own log: its I/O errors, CRC failures and free segments, labelled with
  // the export (the page store's log has no export label).
  log_->VisitStats(v, labels);
  v.Gauge("blockcache_dirty_bytes", "Bytes of cache lines not yet written back to the backing store.",
          static_cast<double>(s.dirty_lines * kLineBytes), labels);
  v.Gauge("blockcache_cached_bytes", "Bytes of cache lines the index holds.",
          static_cast<double>(s.cached_lines * kLineBytes), labels);
  v.Gauge("blockcache_unmigrated_segments", "Segments written since the last migrated one.",
          static_cast<double>(s.head_seq - s.migrated_seq), labels);
  v.Gauge("blockcache_oldest_dirty_age_seconds",
          "How long the oldest segment not yet written back has held dirty lines (0: none).",
          static_cast<double>(s.oldest_dirty_age_ns) / 1e9, labels);
  v.Counter("blockcache_read_lines_hit", "Cache lines read from the cache device or RAM.", s.read_hits, labels);
  v.Counter("blockcache_read_lines_missed", "Cache lines read from the backing store.", s.read_misses, labels);
  v.Counter("blockcache_ram_lines_hit", "Cache lines read from the RAM tier (counted as hits too).", s.ram_hits,
            labels);
  v.Gauge("blockcache_ram_bytes", "Bytes of cache lines held in the RAM tier.", static_cast<double>(s.ram_bytes),
          labels);
  v.Counter("blockcache_written_lines", "Cache lines written.", s.write_lines, labels);
  v.Counter("blockcache_read_lines_promoted", "Cache lines read from the backing store and kept (read caching).",
            s.read_promotions, labels);
  v.Counter("blockcache_flushes", "Flushes (and FUA writes).", s.flushes, labels);
  v.Counter("blockcache_device_syncs", "Cache device syncs the flushes caused.", s.syncs, labels);
  v.Counter("blockcache_migrated_bytes", "Bytes written back to the backing store.", s.migrated_bytes, labels);
  v.Counter("blockcache_relocated_lines", "Dirty lines copied forward within the cache to make room.",
            s.relocated_lines, labels);
  v.Counter("blockcache_migration_errors", "Migration batches that failed and will be retried.",
            s.migration_errors, labels);
  v.Gauge("blockcache_failed", "1 when the cache device failed and writes answer EIO.", s.failed ? 1 : 0, labels);
  v.Counter("blockcache_full_write_failures",
            "Writes that failed because the cache was full while writing back kept failing.", s.full_write_failures,
            labels);
  std::vector<double> bounds(std::begin(kFlushBuckets), std::end(kFlushBuckets));
  std::vector<uint64_t> cumulative;
  uint64_t total = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    total += counters_.flush_buckets[i].load(std::memory_order_relaxed);
    cumulative.push_back(total);
  }
  total += counters_.flush_buckets[bounds.size()].load(std::memory_order_relaxed);
  v.Histogram("blockcache_flush_duration_seconds", "Time a FLUSH (or FUA write's flush) took.", bounds, cumulative,
              total, counters_.flush_ns_sum.load(std::memory_order_relaxed) / 1e9, labels);
}

}  // namespace tmem::blockcache
