// The block cache's owner record on its cache device (log_format.h: kOwnerRecordOffset). Two
// slots written alternately, each a 4 KiB block holding CacheRecordDisk then zeros; the valid
// slot with the higher generation wins, so a torn record write never loses the previous one.
// Integers little-endian, written as-is. Prose: docs/format.md.
#ifndef TMEM_SERVER_BLOCKCACHE_FORMAT_H_
#define TMEM_SERVER_BLOCKCACHE_FORMAT_H_

#include <cstdint>

namespace tmem::blockcache {

// Cache lines: the unit of the index and of every log append; one dirty bit per sector.
inline constexpr uint32_t kLineBytes = 4096;
inline constexpr uint32_t kSectorBytes = 512;
inline constexpr uint32_t kSectorsPerLine = kLineBytes / kSectorBytes;
// The largest backing store I/O the cache makes: adjacent read misses and write-back extents
// coalesce up to this.
inline constexpr uint32_t kMaxBackingIo = 1 << 20;

inline constexpr uint64_t kCacheRecordMagic = 0x313043424D454D54ull;  // "TMEMBC01"
inline constexpr uint32_t kCacheRecordVersion = 1;
inline constexpr uint64_t kLineKeyMagic = 0x454E494C4D454D54ull;  // "TMEMLINE": a slot key

struct CacheRecordDisk {    // 64 bytes at each owner record slot
  uint64_t magic;           //   0 kCacheRecordMagic
  uint32_t version;         //   8 kCacheRecordVersion
  uint32_t line_bytes;      //  12 4096
  uint8_t device_uuid[16];  //  16 the log's (superblock) UUID: binds the record to the log
  uint64_t generation;      //  32 +1 per record write
  uint64_t migrated_seq;    //  40 every segment with seq <= this is in the backing store
  uint64_t backing_bytes;   //  48 size of the backing store the cache belongs to
  uint32_t reserved;        //  56 zero
  uint32_t crc;             //  60 CRC32C of bytes [0, 60)
};
static_assert(sizeof(CacheRecordDisk) == 64);

// A cache line's slot key in the segment log (40 bytes): kLineKeyMagic, the line number, the
// dirty-sector mask of that version of the line, zeros.
struct LineKeyDisk {
  uint64_t magic;        //   0 kLineKeyMagic
  uint64_t line;         //   8 byte offset / 4096
  uint8_t dirty;         //  16 bit i: sector i differs from the backing store
  uint8_t reserved[23];  //  17 zero
};
static_assert(sizeof(LineKeyDisk) == 40);

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_FORMAT_H_
