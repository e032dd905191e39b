#include "server/blockcache/block_cache.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/blockcache/cache_record.h"
#include "server/blockcache/cache_settings.h"
#include "server/blockcache/cache_shared.h"
#include "server/blockcache/group_commit.h"
#include "server/blockcache/line_key.h"
#include "server/blockcache/migrator.h"
#include "server/blockcache/read_path.h"
#include "server/blockcache/write_path.h"
#include "server/log/log_format.h"
#include "server/log/segment_scan.h"

namespace tmem::blockcache {

BlockCache::BlockCache(const BlockCacheOptions& options)
    : shared_(
          std::make_unique<CacheShared>(options, options.log.clock != nullptr ? options.log.clock : Clock::Real())) {}

absl::StatusOr<std::unique_ptr<BlockCache>> BlockCache::Open(const BlockCacheOptions& o) {
  if (o.cache_device == nullptr || o.backing == nullptr) {
    return absl::InvalidArgumentError("a cached export needs a cache device and a backing store");
  }
  const uint64_t backing_bytes = o.backing->size();
  if (backing_bytes == 0 || backing_bytes % kLineBytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the backing store ", o.backing->Describe(), " has ", backing_bytes,
                                                   " bytes; a cached export needs a positive multiple of ",
                                                   kLineBytes));
  }
  TMEM_RETURN_IF_ERROR(ValidateCacheOptions(o));
  // Write-back records lines as migrated only after the store confirmed them durable (a FLUSH):
  // a store that cannot FLUSH could lose lines the cache has already let go. Refused before the
  // cache device is looked at, so nothing on it changes.
  const backend::BackendCaps backing_caps = o.backing->caps();
  if (!backing_caps.flush) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the backing store ", o.backing->Describe(),
        " cannot FLUSH, so write-back could not know when a migrated line is durable there; a cached export "
        "needs a store that offers FLUSH (serve it without a cache, or enable flush on the remote server)"));
  }
  io::BlockDevice* dev = o.cache_device;
  const std::string what = dev->Describe();

  // Decide whether the device is this export's cache, fresh, or something else.
  TMEM_ASSIGN_OR_RETURN(CacheDeviceState state,
                        InspectCacheDevice(dev, backing_bytes, o.backing->Describe(), o.format));
  if (state.fresh) {
    TMEM_RETURN_IF_ERROR(log::FormatLog(dev, {.segment_bytes = o.segment_bytes, .force = true}));
  }
  std::unique_ptr<BlockCache> cache(new BlockCache(o));
  CacheShared& c = *cache->shared_;
  c.size = backing_bytes;
  TMEM_ASSIGN_OR_RETURN(const log::LogGeometry geometry, log::ReadLogGeometry(dev));
  // Size the index for as many lines as the cache can hold (or the export has).
  const uint64_t capacity_lines = geometry.segment_count * (geometry.segment_bytes / kLineBytes);
  c.index.Reserve(std::min(capacity_lines, backing_bytes / kLineBytes));
  cache->record_ =
      std::make_unique<CacheRecordWriter>(dev, geometry, backing_bytes, state.fresh ? 0 : state.record->generation);
  uint64_t migrated = 0;
  if (state.fresh) {
    TMEM_RETURN_IF_ERROR(cache->record_->Write(0));
  } else {
    migrated = state.record->migrated_seq;
    TMEM_RETURN_IF_ERROR(cache->Recover(migrated));
  }
  log::LogOptions lo = o.log;
  // Segments only copy-forward may open: it makes room for every other append.
  if (lo.retention.reserved_segments == 0) {
    lo.retention.reserved_segments = static_cast<uint32_t>(std::clamp<uint64_t>(geometry.segment_count / 16, 2, 64));
  }
  // After a crash the log starts right after the newest segment that reached the device (its
  // headers are read once more, as Recover just did), so a crash skips no room. The lease then
  // only sets how often a renewal (a checkpoint and a device sync, which stalls the segment
  // writes in flight on some devices) is due: every half lease, half the ring here.
  lo.retention.resume_after_newest_segment = true;
  lo.seq_lease_segments = std::min<uint64_t>(lo.seq_lease_segments, std::max<uint64_t>(geometry.segment_count, 16));
  // The segments after the record hold the recovered lines: readable, and not reused until
  // migration has written them back (the reclaim limit never passed the record).
  lo.retention.keep_segments_after = migrated;
  lo.retention.reclaim_limit = migrated;
  TMEM_ASSIGN_OR_RETURN(c.log, log::SegmentLog::Open(dev, lo));
  // What recovery found is what the device holds now: make it durable before anything is
  // acknowledged on top of it (a killed process may have left it in the device's cache).
  TMEM_RETURN_IF_ERROR(Io(dev->Sync(), "sync the cache device"));
  c.migrated_seq.store(migrated);
  c.synced_seq.store(c.log->head_seq());
  c.NoteForegroundIo();
  TMEM_LOG(Info) << "block cache on " << what << " for " << o.backing->Describe() << ": " << geometry.segment_count
                 << " segments of " << geometry.segment_bytes << " bytes, "
                 << (state.fresh ? "formatted"
                                 : absl::StrCat("recovered ", c.counters.recovered_segments.load(), " segments (",
                                                c.counters.recovered_lines.load(), " lines, ",
                                                c.counters.recovery_torn_pages.load(), " torn pages skipped)"));
  cache->commit_ = std::make_unique<GroupCommit>(c);
  cache->reader_ = std::make_unique<ReadPath>(c);
  cache->writer_ = std::make_unique<WritePath>(c, *cache->reader_);
  cache->migrator_ = std::make_unique<Migrator>(c, *cache->commit_, *cache->record_);
  cache->migrator_->Start();
  return cache;
}

absl::StatusOr<std::unique_ptr<BlockCache>> BlockCache::OpenOwning(std::unique_ptr<io::BlockDevice> device,
                                                                   std::unique_ptr<backend::BlockBackend> backing,
                                                                   BlockCacheOptions options) {
  options.cache_device = device.get();
  options.backing = backing.get();
  TMEM_ASSIGN_OR_RETURN(std::unique_ptr<BlockCache> cache, Open(options));
  cache->owned_device_ = std::move(device);
  cache->owned_backing_ = std::move(backing);
  return cache;
}

BlockCache::~BlockCache() {
  CacheShared& c = *shared_;
  if (c.log != nullptr && commit_ != nullptr && !c.failure.failed()) {
    absl::Status st = commit_->SyncAll();
    if (!st.ok()) {
      TMEM_LOG(Warning) << Describe() << ": final sync failed: " << st;
    }
  }
  if (migrator_ != nullptr) migrator_->Stop();
  // A clean close records the log's head, so that the next start continues right after it;
  // after a failure the log's destructor just stops (unsynced buffers are lost like in a
  // crash, and nothing acknowledged by a flush is among them).
  if (c.log != nullptr && !c.failure.failed()) {
    absl::Status st = c.log->CloseClean();
    if (!st.ok()) {
      TMEM_LOG(Warning) << Describe() << ": closing the log cleanly failed: " << st;
    }
  }
  migrator_.reset();
  writer_.reset();
  reader_.reset();
  commit_.reset();
  c.log.reset();
}

absl::Status BlockCache::Recover(uint64_t migrated_seq) {
  // Rebuilds the index from every valid segment after the record, oldest first, so that each
  // line ends up at its newest whole version; migration writes the dirty ones back later.
  CacheShared& c = *shared_;
  uint64_t skipped = 0;
  TMEM_RETURN_IF_ERROR(log::ScanSegments(
      c.device, migrated_seq,
      [&](const log::ScannedSegment& seg) -> absl::Status {
        c.counters.recovered_segments.fetch_add(1);
        for (const log::SlotEntryDisk& e : seg.entries) {
          std::optional<LineKeyDisk> key = DecodeLineKey(e.key);
          if (!key.has_value() || e.length != kLineBytes || key->line >= c.size / kLineBytes) {
            c.counters.recovery_torn_pages.fetch_add(1);
            continue;
          }
          if (crc32c::Value(seg.data + e.offset, kLineBytes) != e.crc) {
            // Torn: this version never reached the device whole, and no flush acknowledged it;
            // the line keeps its previous version (an older segment's, or the backing store's).
            c.counters.recovery_torn_pages.fetch_add(1);
            continue;
          }
          c.index.Recover(key->line, LineEntry{seg.seq, e.offset, e.crc, key->dirty});
          c.counters.recovered_lines.fetch_add(1);
        }
        return absl::OkStatus();
      },
      &skipped));
  c.index.Recount();
  return absl::OkStatus();
}

uint64_t BlockCache::size() const { return shared_->size; }

backend::BackendCaps BlockCache::caps() const {
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

std::string BlockCache::Describe() const { return shared_->Describe(); }

absl::Status BlockCache::Pread(void* buf, uint32_t len, uint64_t offset) { return reader_->Pread(buf, len, offset); }

absl::StatusOr<backend::BufferedOutcome> BlockCache::PreadBuffered(void* buf, uint32_t len, uint64_t offset) {
  return reader_->PreadBuffered(buf, len, offset);
}

absl::Status BlockCache::Pwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) {
  TMEM_RETURN_IF_ERROR(writer_->WriteRange(static_cast<const uint8_t*>(buf), len, offset, /*may_wait=*/true).status());
  if (fua) return Flush();
  return absl::OkStatus();
}

absl::StatusOr<backend::BufferedOutcome> BlockCache::PwriteBuffered(const void* buf, uint32_t len, uint64_t offset) {
  return writer_->WriteRange(static_cast<const uint8_t*>(buf), len, offset, /*may_wait=*/false);
}

absl::Status BlockCache::Flush() { return commit_->Flush(); }

absl::Status BlockCache::Trim(uint64_t, uint64_t, bool) {
  return absl::InvalidArgumentError("a cached export does not trim");
}

absl::Status BlockCache::Zero(uint64_t offset, uint64_t len, bool, bool fua) {
  return backend::ZeroByWriting(*this, offset, len, fua);
}

absl::Status BlockCache::MigrateNow() { return migrator_->MigrateNow(); }

absl::Status BlockCache::Drain(std::optional<std::chrono::steady_clock::time_point> deadline) {
  return migrator_->Drain(deadline);
}

BlockCache::Tunables BlockCache::tunables() const { return shared_->tunables.get(); }

absl::Status BlockCache::SetTunables(const Tunables& t) {
  TMEM_RETURN_IF_ERROR(ValidateTunables(t));
  shared_->tunables.set(t);
  migrator_->Kick();
  return absl::OkStatus();
}

BlockCacheStatus BlockCache::status() const {
  const CacheShared& c = *shared_;
  BlockCacheStatus s;
  s.dirty_lines = c.index.dirty_lines();
  s.cached_lines = c.index.cached_lines();
  s.head_seq = c.log->head_seq();
  s.synced_seq = c.synced_seq.load();
  s.migrated_seq = c.migrated_seq.load();
  s.free_segments = c.log->free_segments();
  s.segment_count = c.log->geometry().segment_count;
  s.read_hits = c.counters.read_hits.load();
  s.read_misses = c.counters.read_misses.load();
  s.read_promotions = c.counters.read_promotions.load();
  s.ram_hits = c.ram.hits();
  s.ram_bytes = c.ram.used_bytes();
  s.ram_capacity_bytes = c.ram.capacity_bytes();
  s.ram_mismatches = c.counters.ram_mismatches.load();
  s.ram_evictions = c.ram.evictions();
  s.full_write_failures = c.counters.full_write_failures.load();
  s.oldest_dirty_age_ns = c.index.OldestDirtyAgeNs();
  s.write_lines = c.counters.write_lines.load();
  s.flushes = c.counters.flushes.load();
  s.syncs = c.counters.syncs.load();
  s.migrated_lines = c.counters.migrated_lines.load();
  s.copied_forward_lines = c.counters.copied_forward_lines.load();
  s.migrated_bytes = c.counters.migrated_bytes.load();
  s.migration_errors = c.counters.migration_errors.load();
  s.recovered_segments = c.counters.recovered_segments.load();
  s.recovered_lines = c.counters.recovered_lines.load();
  s.recovery_torn_pages = c.counters.recovery_torn_pages.load();
  s.failed = c.failure.failed();
  if (s.failed) s.failure = c.failure.reason();
  return s;
}

void BlockCache::CancelWaits() { shared_->cancel_waits.store(true, std::memory_order_release); }

void BlockCache::VisitStats(StatsVisitor& v, const StatLabels& labels) const {
  const BlockCacheStatus s = status();
  // The cache device's own log: its I/O errors, CRC failures and free segments, labelled with
  // the export (the page store's log has no export label).
  shared_->log->VisitStats(v, labels);
  shared_->backing->VisitStats(v, labels);
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
  v.Counter("blockcache_copied_forward_lines", "Dirty lines copied forward within the cache to make room.",
            s.copied_forward_lines, labels);
  v.Counter("blockcache_migration_errors", "Migration batches that failed and will be retried.", s.migration_errors,
            labels);
  v.Gauge("blockcache_failed", "1 when the cache device failed and writes answer EIO.", s.failed ? 1 : 0, labels);
  v.Counter("blockcache_full_write_failures",
            "Writes that failed because the cache was full while writing back kept failing.", s.full_write_failures,
            labels);
  shared_->counters.flush_latency.Visit(v, "blockcache_flush_duration_seconds",
                                        "Time a FLUSH (or FUA write's flush) took.", labels);
}

}  // namespace tmem::blockcache
