#include "server/blockcache/read_path.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/status_macros.h"
#include "server/blockcache/line_key.h"

namespace tmem::blockcache {

bool ReadPath::ReadRam(const LineEntry& entry, uint8_t* out, bool count_hit) {
  // Not once the cache failed: a line whose segment write failed must read as lost, not from RAM.
  if (!c_.ram.enabled() || c_.failure.failed()) return false;
  if (!c_.ram.Lookup(entry.seq, entry.offset, out)) return false;
  // The same check a device read gets; a mismatch would be a bug here: count it, read the log.
  if (crc32c::Value(out, kLineBytes) != entry.crc) {
    c_.counters.ram_mismatches.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (count_hit) c_.counters.read_hits.fetch_add(1, std::memory_order_relaxed);
  return true;
}

absl::StatusOr<backend::BufferedOutcome> ReadPath::PreadBuffered(void* buf, uint32_t len, uint64_t offset) {
  if (!c_.ram.enabled()) return backend::BufferedOutcome::kWouldWait;
  c_.NoteForegroundIo();
  auto* out = static_cast<uint8_t*>(buf);
  std::array<uint8_t, kLineBytes> tmp;
  const uint64_t end = offset + len;
  uint64_t lines = 0;
  for (uint64_t pos = offset; pos < end; ++lines) {
    const uint64_t line = pos / kLineBytes;
    const uint32_t in = static_cast<uint32_t>(pos % kLineBytes);
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kLineBytes - in, end - pos));
    std::optional<LineEntry> e = c_.index.Lookup(line);
    // Hits are counted once the whole read is served here (a declined one is read again).
    uint8_t* dst = n == kLineBytes ? out + (pos - offset) : tmp.data();
    if (!e.has_value() || !ReadRam(*e, dst, /*count_hit=*/false)) return backend::BufferedOutcome::kWouldWait;
    if (n != kLineBytes) std::memcpy(out + (pos - offset), tmp.data() + in, n);
    pos += n;
  }
  c_.counters.read_hits.fetch_add(lines, std::memory_order_relaxed);
  return backend::BufferedOutcome::kDone;
}

absl::Status ReadPath::ReadLine(uint64_t line, std::optional<LineEntry> entry, uint8_t* out) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (entry.has_value() && ReadRam(*entry, out)) return absl::OkStatus();
    if (!entry.has_value() || entry->dirty == 0) {
      // Not cached, or clean: the backing store holds this line's newest data. (A clean entry's
      // segment may be reused at any time, so read the store rather than risk a second try.)
      if (entry.has_value()) {
        auto r = c_.log->Read({entry->seq, entry->offset}, kLineBytes, entry->crc, out);
        if (r.ok() && *r == log::SegmentLog::ReadOutcome::kOk) {
          c_.counters.read_hits.fetch_add(1, std::memory_order_relaxed);
          c_.ram.Insert(entry->seq, entry->offset, out);
          return absl::OkStatus();
        }
      }
      c_.counters.read_misses.fetch_add(1, std::memory_order_relaxed);
      return Io(c_.backing->Pread(out, kLineBytes, line * kLineBytes), "read " + c_.backing->Describe());
    }
    auto r = c_.log->Read({entry->seq, entry->offset}, kLineBytes, entry->crc, out);
    if (!r.ok()) return Io(r.status(), "read the cache device");
    if (*r == log::SegmentLog::ReadOutcome::kOk) {
      c_.counters.read_hits.fetch_add(1, std::memory_order_relaxed);
      c_.ram.Insert(entry->seq, entry->offset, out);
      return absl::OkStatus();
    }
    // Gone or corrupt: fine if a newer version or a migration replaced the entry meanwhile.
    std::optional<LineEntry> now = c_.index.Lookup(line);
    if (now.has_value() && now->SameVersion(*entry) && now->dirty != 0) {
      return absl::DataLossError(
          absl::StrCat("the newest data of block ", line * kLineBytes, " was lost by the cache device (",
                       *r == log::SegmentLog::ReadOutcome::kGone ? "its segment write failed" : "CRC mismatch", ")"));
    }
    entry = now;
  }
  // A line rewritten four times during one read: the caller may retry.
  return absl::UnavailableError(absl::StrCat("block ", line * kLineBytes, " kept changing under a read"));
}

absl::Status ReadPath::Pread(void* buf, uint32_t len, uint64_t offset) {
  c_.NoteForegroundIo();
  auto* out = static_cast<uint8_t*>(buf);
  std::array<uint8_t, kLineBytes> tmp;
  uint64_t pos = offset;
  const uint64_t end = offset + len;
  // Whether lines this read fetches from the backing store are kept (read caching): decided
  // for the whole request, from where it starts and how long the sequential run is.
  const bool promote = c_.options.read_cache && len > 0 &&
                       ShouldPromote(offset / kLineBytes, (end - 1) / kLineBytes - offset / kLineBytes + 1);
  while (pos < end) {
    const uint64_t line = pos / kLineBytes;
    const uint32_t in = static_cast<uint32_t>(pos % kLineBytes);
    std::optional<LineEntry> e = c_.index.Lookup(line);
    if (e.has_value()) {
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kLineBytes - in, end - pos));
      if (n == kLineBytes) {  // a whole line: straight into place
        TMEM_RETURN_IF_ERROR(ReadLine(line, e, out + (pos - offset)));
      } else {
        TMEM_RETURN_IF_ERROR(ReadLine(line, e, tmp.data()));
        std::memcpy(out + (pos - offset), tmp.data() + in, n);
      }
      pos += n;
      continue;
    }
    // A run of lines the cache does not hold: one read of the backing store, whole lines.
    uint64_t last = line;
    while ((last + 1) * kLineBytes < end && (last + 2 - line) * kLineBytes <= kMaxBackingIo &&
           !c_.index.Lookup(last + 1).has_value()) {
      ++last;
    }
    const uint64_t run_begin = line * kLineBytes, run_end = (last + 1) * kLineBytes;
    const uint64_t copy_end = std::min(end, run_end);
    const std::string what = "read " + c_.backing->Describe();
    if (in == 0 && copy_end == run_end) {
      uint8_t* dst = out + (pos - offset);
      TMEM_RETURN_IF_ERROR(Io(c_.backing->Pread(dst, static_cast<uint32_t>(run_end - run_begin), run_begin), what));
      if (promote) {
        for (uint64_t l = line; l <= last; ++l) Promote(l, dst + (l - line) * kLineBytes);
      }
    } else {
      std::vector<uint8_t> run(run_end - run_begin);
      TMEM_RETURN_IF_ERROR(Io(c_.backing->Pread(run.data(), static_cast<uint32_t>(run.size()), run_begin), what));
      std::memcpy(out + (pos - offset), run.data() + in, copy_end - pos);
      if (promote) {
        for (uint64_t l = line; l <= last; ++l) Promote(l, run.data() + (l - line) * kLineBytes);
      }
    }
    c_.counters.read_misses.fetch_add(last - line + 1, std::memory_order_relaxed);
    pos = copy_end;
  }
  return absl::OkStatus();
}

bool ReadPath::ShouldPromote(uint64_t first, uint64_t count) {
  // A run continues when a read starts where the previous one ended (several streams at once
  // look random here, and get promoted: the threshold guards against one long scan).
  const uint64_t prev_end = read_run_end_.exchange(first + count, std::memory_order_relaxed);
  uint64_t run = count;
  if (prev_end == first) run += read_run_lines_.load(std::memory_order_relaxed);
  read_run_lines_.store(run, std::memory_order_relaxed);
  return run <= c_.options.read_cache_threshold_lines;
}

void ReadPath::Promote(uint64_t line, const uint8_t* data) {
  if (c_.failure.failed()) return;
  LineIndex::Stripe& s = c_.index.StripeOf(line);
  // Never wait for a writer to cache a clean line: skip when one holds the stripe.
  if (!s.write_mu.TryLock()) return;
  PromoteLocked(s, line, data);
  s.write_mu.Unlock();
}

void ReadPath::PromoteLocked(LineIndex::Stripe& s, uint64_t line, const uint8_t* data) {
  // Written (or promoted) since the backing store was read: that version wins.
  if (c_.index.Lookup(line).has_value()) return;
  const uint32_t crc = crc32c::Value(data, kLineBytes);
  uint8_t raw[log::kSlotKeyBytes];
  EncodeLineKey(line, 0, raw);
  // Never waits for room: a clean line is not worth stalling a read for.
  absl::StatusOr<log::Location> loc = c_.log->Append(raw, data, kLineBytes, crc, {.pin = true, .may_wait = false});
  if (!loc.ok()) return;
  c_.ram.Insert(loc->seq, loc->offset, data);
  c_.index.AddClean(s, line, LineEntry{loc->seq, loc->offset, crc, 0});
  c_.log->Unpin(loc->seq);
  c_.counters.read_promotions.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace tmem::blockcache
