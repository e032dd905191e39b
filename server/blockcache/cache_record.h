// The block cache's owner record on its cache device: deciding whether a device is this
// export's cache, a fresh one, or something else; and writing the record that says how far
// migration has got (format.h: CacheRecordDisk, two slots written alternately).
//
// Thread-safety: InspectCacheDevice is a function of the device alone. A CacheRecordWriter is
// used by one thread at a time (the block cache calls it under its migration lock).
#ifndef TMEM_SERVER_BLOCKCACHE_CACHE_RECORD_H_
#define TMEM_SERVER_BLOCKCACHE_CACHE_RECORD_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/blockcache/format.h"
#include "server/io/block_device.h"
#include "server/log/segment_log.h"

namespace tmem::blockcache {

// What a cache device holds.
struct CacheDeviceState {
  // Nothing of ours: all zeros, or (with `format`) anything we may overwrite. The device must
  // be formatted as a log before use.
  bool fresh = false;
  // The newest valid record when the device is this store's cache.
  std::optional<CacheRecordDisk> record;
};

// Reads what `device` holds and decides. Refuses (FailedPrecondition, saying what to do):
// without `format`, a device that is not a tmem log, or a log with no cache record (a page pool
// device); even with `format`, the cache of a backing store of another size than
// `backing_bytes` (it may hold that store's dirty data). Device read errors are returned.
absl::StatusOr<CacheDeviceState> InspectCacheDevice(io::BlockDevice* device, uint64_t backing_bytes,
                                                    const std::string& backing_name, bool format);

// Writes records of one cache: each Write bumps the generation and goes to the other slot, then
// syncs the device, so a torn write never loses the previous record.
class CacheRecordWriter {
 public:
  // `generation`: the newest record's (0 for a fresh device).
  CacheRecordWriter(io::BlockDevice* device, const log::LogGeometry& geometry, uint64_t backing_bytes,
                    uint64_t generation);
  // Every segment with seq <= `migrated_seq` is in the backing store.
  absl::Status Write(uint64_t migrated_seq);
  uint64_t generation() const { return generation_; }

 private:
  io::BlockDevice* const device_;
  uint8_t device_uuid_[16];
  const uint64_t backing_bytes_;
  uint64_t generation_;
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_CACHE_RECORD_H_
