#include "server/blockcache/cache_record.h"

#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/status_macros.h"
#include "server/log/log_format.h"
#include "server/log/log_metadata.h"

namespace tmem::blockcache {
namespace {

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

}  // namespace

absl::StatusOr<CacheDeviceState> InspectCacheDevice(io::BlockDevice* device, uint64_t backing_bytes,
                                                    const std::string& backing_name, bool format) {
  const std::string what = device->Describe();
  io::AlignedBuffer first(log::kBlockBytes, log::kBlockBytes);
  if (absl::Status st = device->Read(0, first.data(), log::kBlockBytes); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("read ", what, ": ", std::string(st.message())));
  }
  CacheDeviceState state;
  if (log::AllZero(first.data(), log::kBlockBytes)) {
    state.fresh = true;
    return state;
  }
  absl::StatusOr<log::LogGeometry> g = log::ReadLogGeometry(device);
  if (!g.ok()) {
    if (!format) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cache device: ", g.status().message(), " (format it as a cache with tmemd --format-export-cache=EXPORT)"));
    }
    state.fresh = true;
    return state;
  }
  TMEM_ASSIGN_OR_RETURN(state.record, ReadRecord(device, *g));
  if (!state.record.has_value()) {
    if (!format) {
      return absl::FailedPreconditionError(
          absl::StrCat(what,
                       " holds a tmem log but no block cache record (a page pool device?); refusing to use it as a "
                       "cache without --format-export-cache=EXPORT"));
    }
    state.fresh = true;
    return state;
  }
  if (state.record->backing_bytes != backing_bytes) {
    // Never formatted over, even with --format: it may hold dirty data of that store.
    return absl::FailedPreconditionError(absl::StrCat(
        what, " is the cache of a backing store of ", state.record->backing_bytes, " bytes; ", backing_name, " has ",
        backing_bytes, ". Drain it with its own backing store, or zero it to discard it"));
  }
  return state;
}

CacheRecordWriter::CacheRecordWriter(io::BlockDevice* device, const log::LogGeometry& geometry, uint64_t backing_bytes,
                                     uint64_t generation)
    : device_(device), backing_bytes_(backing_bytes), generation_(generation) {
  std::memcpy(device_uuid_, geometry.device_uuid, 16);
}

absl::Status CacheRecordWriter::Write(uint64_t migrated_seq) {
  CacheRecordDisk r{};
  r.magic = kCacheRecordMagic;
  r.version = kCacheRecordVersion;
  r.line_bytes = kLineBytes;
  std::memcpy(r.device_uuid, device_uuid_, 16);
  r.generation = generation_ + 1;
  r.migrated_seq = migrated_seq;
  r.backing_bytes = backing_bytes_;
  r.crc = crc32c::Value(&r, offsetof(CacheRecordDisk, crc));
  io::AlignedBuffer block(log::kBlockBytes, log::kBlockBytes);
  std::memset(block.data(), 0, log::kBlockBytes);
  std::memcpy(block.data(), &r, sizeof(r));
  absl::Status st = device_->Write(log::kOwnerRecordOffset[r.generation % 2], block.data(), log::kBlockBytes);
  if (st.ok()) st = device_->Sync();
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat("write the cache record: ", std::string(st.message())));
  generation_ = r.generation;
  return absl::OkStatus();
}

}  // namespace tmem::blockcache
