// A cache line version's slot key in the segment log (format.h: LineKeyDisk).
#ifndef TMEM_SERVER_BLOCKCACHE_LINE_KEY_H_
#define TMEM_SERVER_BLOCKCACHE_LINE_KEY_H_

#include <cstdint>
#include <cstring>
#include <optional>

#include "server/blockcache/format.h"
#include "server/log/log_format.h"

namespace tmem::blockcache {

inline void EncodeLineKey(uint64_t line, uint8_t dirty, uint8_t (&raw)[log::kSlotKeyBytes]) {
  static_assert(sizeof(LineKeyDisk) == log::kSlotKeyBytes);
  LineKeyDisk key{};
  key.magic = kLineKeyMagic;
  key.line = line;
  key.dirty = dirty;
  std::memcpy(raw, &key, sizeof(raw));
}

// The key, or nullopt when the slot does not hold a cache line.
inline std::optional<LineKeyDisk> DecodeLineKey(const uint8_t (&raw)[log::kSlotKeyBytes]) {
  LineKeyDisk key;
  std::memcpy(&key, raw, sizeof(key));
  if (key.magic != kLineKeyMagic) return std::nullopt;
  return key;
}

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_LINE_KEY_H_
