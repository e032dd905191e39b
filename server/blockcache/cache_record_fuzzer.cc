// libFuzzer target over the block cache's owner record (format.h: CacheRecordDisk, two slots):
// InspectCacheDevice on a formatted log whose two owner record slots hold the input. The input:
//   [0]        flags: bit 0 recomputes slot 0's CRC, bit 1 slot 1's (so that mutated fields
//              get past the CRC to the checks behind it), bit 2 passes `format`
//   [1, 65)    slot 0's 64 bytes, [65, 129) slot 1's (the rest of each 4 KiB block is zero)
// Invariants: the decision is exactly the one format.h and cache_record.h describe (a record is
// valid when magic, version, line size, the log's UUID and CRC match; the valid one with the
// higher generation wins; a cache of another store size is refused even with `format`; no
// record is "fresh" only with `format`); the record returned is one slot's bytes; and
// CacheRecordWriter encodes it again to the same bytes (its reserved field zero).
//   scripts/fuzz_formats.sh [RUNS]                (libFuzzer)
//   //server/blockcache:cache_record_fuzz_test    (the default suite: the seeds and a few thousand mutations)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/crc32c.h"
#include "common/fuzz_support.h"
#include "common/logging.h"
#include "server/blockcache/cache_record.h"
#include "server/blockcache/format.h"
#include "server/io/block_device.h"
#include "server/io/memory_device.h"
#include "server/log/log_format.h"
#include "server/log/log_fuzz_util.h"
#include "server/log/log_metadata.h"

namespace tmem::blockcache {
namespace {

constexpr uint64_t kStoreBytes = 1 << 20;  // the backing store the fuzzed cache belongs to
constexpr size_t kSlotAt[2] = {1, 65}, kInputBytes = 129;

struct Rig {
  io::MemoryDevice device{log::kDataOffset + log::kMinSegmentCount * log::kMinSegmentBytes};
  log::LogGeometry geometry;
  Rig() {
    if (!log::fuzzing::FormatFixedLog(&device, log::kMinSegmentBytes).ok()) abort();
    absl::StatusOr<log::LogGeometry> g = log::ReadLogGeometry(&device);
    if (!g.ok()) abort();
    geometry = *g;
  }
};

Rig& R() {
  static Rig* rig = new Rig();
  return *rig;
}

// format.h's rule for a whole record of this log, checked independently of ParseRecord.
bool RecordValid(const CacheRecordDisk& r, const uint8_t (&uuid)[16]) {
  return r.magic == kCacheRecordMagic && r.version == kCacheRecordVersion && r.line_bytes == kLineBytes &&
         std::memcmp(r.device_uuid, uuid, 16) == 0 && r.crc == crc32c::Value(&r, offsetof(CacheRecordDisk, crc));
}

void Run(const uint8_t* data, size_t size) {
  Rig& rig = R();
  uint8_t in[kInputBytes] = {};
  std::memcpy(in, data, std::min(size, kInputBytes));
  const uint8_t flags = in[0];
  const bool format = flags & 4;
  CacheRecordDisk slot[2];
  io::AlignedBuffer block(log::kBlockBytes, log::kBlockBytes);
  for (int s = 0; s < 2; ++s) {
    std::memcpy(&slot[s], in + kSlotAt[s], sizeof(CacheRecordDisk));
    if (flags & (1 << s)) slot[s].crc = crc32c::Value(&slot[s], offsetof(CacheRecordDisk, crc));
    std::memset(block.data(), 0, log::kBlockBytes);
    std::memcpy(block.data(), &slot[s], sizeof(CacheRecordDisk));
    TMEM_FUZZ_CHECK(rig.device.Write(log::kOwnerRecordOffset[s], block.data(), log::kBlockBytes).ok());
  }
  const bool valid[2] = {RecordValid(slot[0], rig.geometry.device_uuid),
                         RecordValid(slot[1], rig.geometry.device_uuid)};

  absl::StatusOr<CacheDeviceState> state = InspectCacheDevice(&rig.device, kStoreBytes, "fuzz store", format);
  if (!valid[0] && !valid[1]) {
    // A tmem log without a record: a page pool device, refused unless formatting.
    if (format) {
      TMEM_FUZZ_CHECK(state.ok() && state->fresh && !state->record.has_value());
    } else {
      TMEM_FUZZ_CHECK(state.status().code() == absl::StatusCode::kFailedPrecondition);
    }
    return;
  }
  // The valid slot with the higher generation wins (slot 0 on a tie: it is read first).
  const int winner = !valid[0] ? 1 : !valid[1] ? 0 : (slot[1].generation > slot[0].generation ? 1 : 0);
  const CacheRecordDisk& best = slot[winner];
  if (best.backing_bytes != kStoreBytes) {
    // Another store's cache may hold its dirty data: refused even with `format`.
    TMEM_FUZZ_CHECK(state.status().code() == absl::StatusCode::kFailedPrecondition);
    return;
  }
  TMEM_FUZZ_CHECK(state.ok() && !state->fresh && state->record.has_value());
  const CacheRecordDisk& r = *state->record;
  TMEM_FUZZ_CHECK(std::memcmp(&r, &best, sizeof(r)) == 0);

  // The writer encodes the record the reader took to the same bytes (its reserved field, which
  // the reader ignores, zero), in the slot of its generation.
  io::MemoryDevice scratch(32 << 10);
  CacheRecordWriter writer(&scratch, rig.geometry, r.backing_bytes, r.generation - 1);
  TMEM_FUZZ_CHECK(writer.Write(r.migrated_seq).ok());
  TMEM_FUZZ_CHECK(writer.generation() == r.generation);
  TMEM_FUZZ_CHECK(scratch.Read(log::kOwnerRecordOffset[r.generation % 2], block.data(), log::kBlockBytes).ok());
  CacheRecordDisk canonical = r;
  canonical.reserved = 0;
  canonical.crc = crc32c::Value(&canonical, offsetof(CacheRecordDisk, crc));
  TMEM_FUZZ_CHECK(std::memcmp(block.data(), &canonical, sizeof(canonical)) == 0);
  TMEM_FUZZ_CHECK(log::AllZero(block.data() + sizeof(canonical), log::kBlockBytes - sizeof(canonical)));
}

// The input of the owner record slots that CacheRecordWriter wrote on `device`.
std::string InputOf(uint8_t flags, io::BlockDevice& device) {
  std::string in(1, static_cast<char>(flags));
  io::AlignedBuffer block(log::kBlockBytes, log::kBlockBytes);
  for (uint64_t offset : log::kOwnerRecordOffset) {
    if (!device.Read(offset, block.data(), log::kBlockBytes).ok()) abort();
    in.append(reinterpret_cast<const char*>(block.data()), sizeof(CacheRecordDisk));
  }
  return in;
}

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  io::MemoryDevice dev(log::kDataOffset + log::kMinSegmentCount * log::kMinSegmentBytes);
  if (!log::fuzzing::FormatFixedLog(&dev, log::kMinSegmentBytes).ok()) abort();
  absl::StatusOr<log::LogGeometry> g = log::ReadLogGeometry(&dev);
  if (!g.ok()) abort();
  // A log without a record (a page pool device), with and without `format`.
  seeds.push_back(InputOf(0, dev));
  seeds.push_back(InputOf(4, dev));
  // A fresh cache's first record (generation 1 in slot 1), then two migrations later.
  CacheRecordWriter w(&dev, *g, kStoreBytes, 0);
  if (!w.Write(0).ok()) abort();
  seeds.push_back(InputOf(0, dev));
  if (!w.Write(7).ok() || !w.Write(9).ok()) abort();
  seeds.push_back(InputOf(3, dev));
  seeds.push_back(InputOf(4, dev));
  // The cache of a bigger store.
  CacheRecordWriter other(&dev, *g, 2 * kStoreBytes, w.generation());
  if (!other.Write(12).ok()) abort();
  seeds.push_back(InputOf(7, dev));
  return seeds;
}

}  // namespace
}  // namespace tmem::blockcache

std::vector<std::string> TmemFuzzSeeds() { return tmem::blockcache::Seeds(); }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tmem::SetMinLogLevel(tmem::LogLevel::kError);  // FormatLog's line
  tmem::blockcache::R();
  tmem::fuzz::WriteSeedsIfAsked(TmemFuzzSeeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tmem::blockcache::Run(data, size);
  return 0;
}
