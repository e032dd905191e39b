#include "server/blockcache/write_path.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/blockcache/line_key.h"

namespace tmem::blockcache {
namespace {

uint8_t SectorsTouched(uint32_t begin, uint32_t end) {
  uint8_t m = 0;
  for (uint32_t s = begin / kSectorBytes; s * kSectorBytes < end; ++s) m |= static_cast<uint8_t>(1u << s);
  return m;
}

}  // namespace

template <typename TryFn>
absl::StatusOr<backend::BufferedOutcome> WritePath::AppendOrWait(bool may_wait, TryFn attempt) {
  RoomWait wait;
  while (true) {
    TMEM_ASSIGN_OR_RETURN(Attempt a, attempt());
    if (a.finished) return backend::BufferedOutcome::kDone;
    if (!a.no_room) continue;  // progress: the next segment's share
    if (!may_wait) return backend::BufferedOutcome::kWouldWait;
    TMEM_RETURN_IF_ERROR(WaitForRoom(a.generation, &wait));
  }
}

absl::StatusOr<WritePath::Attempt> WritePath::TryWriteLine(uint64_t line, const uint8_t* data, uint32_t begin,
                                                           uint32_t end) {
  LineIndex::Stripe& s = c_.index.StripeOf(line);
  MutexLock write_lock(&s.write_mu);
  std::array<uint8_t, kLineBytes> merged;
  const uint8_t* src = data;
  uint8_t mask = 0xFF;
  if (begin != 0 || end != kLineBytes) {
    std::optional<LineEntry> old = c_.index.Lookup(line);
    TMEM_RETURN_IF_ERROR(reader_.ReadLine(line, old, merged.data()));
    std::memcpy(merged.data() + begin, data, end - begin);
    src = merged.data();
    mask = static_cast<uint8_t>((old.has_value() ? old->dirty : 0) | SectorsTouched(begin, end));
  }
  const uint32_t crc = crc32c::Value(src, kLineBytes);
  uint8_t raw[log::kSlotKeyBytes];
  EncodeLineKey(line, mask, raw);
  log::Location loc;
  Attempt a;
  absl::StatusOr<size_t> appended = c_.log->AppendBatch(
      &raw, src, kLineBytes, &crc, 1, &loc, {.pin = true, .may_wait = false, .progress_generation = &a.generation});
  if (appended.ok()) {
    Publish(s, line, 1, &loc, &crc, mask, src);
    a.finished = true;
    return a;
  }
  if (!absl::IsResourceExhausted(appended.status())) return appended.status();
  a.no_room = true;
  return a;
}

absl::StatusOr<WritePath::Attempt> WritePath::TryWriteWholeLines(uint64_t first, uint32_t count, const uint8_t* data,
                                                                 const uint32_t* crcs,
                                                                 const uint8_t (*keys)[log::kSlotKeyBytes],
                                                                 log::Location* locs, uint32_t* done) {
  LineIndex::Stripe& s = c_.index.StripeOf(first);
  MutexLock write_lock(&s.write_mu);
  Attempt a;
  // One segment's worth at a time, published and unpinned before the next append.
  const uint32_t at = *done;
  absl::StatusOr<size_t> appended =
      c_.log->AppendBatch(&keys[at], data + size_t{at} * kLineBytes, kLineBytes, &crcs[at], count - at, &locs[at],
                          {.pin = true, .may_wait = false, .progress_generation = &a.generation});
  if (appended.ok()) {
    Publish(s, first + at, *appended, &locs[at], &crcs[at], 0xFF, data + size_t{at} * kLineBytes);
    *done += static_cast<uint32_t>(*appended);
    a.finished = *done == count;
    return a;
  }
  if (!absl::IsResourceExhausted(appended.status())) return appended.status();
  a.no_room = true;
  return a;
}

void WritePath::Publish(LineIndex::Stripe& s, uint64_t first, size_t n, const log::Location* locs, const uint32_t* crcs,
                        uint8_t mask, const uint8_t* data) {
  const uint64_t seq = locs[0].seq;
  for (size_t i = 0; i < n; ++i) c_.ram.Insert(seq, locs[i].offset, data + i * kLineBytes);
  // Noted before the unpin: the segment cannot be written, so not migrated, before that.
  c_.index.Publish(s, first, n, locs, crcs, mask);
  // Published: the segment may be written now, and migration will find these lines in it.
  c_.log->UnpinMany(seq, static_cast<uint32_t>(n));
  c_.counters.write_lines.fetch_add(n, std::memory_order_relaxed);
  c_.NoteForegroundIo();
}

uint64_t WritePath::MigrationProgress() const {
  return c_.migrated_seq.load(std::memory_order_acquire) +
         c_.counters.written_back_bytes.load(std::memory_order_relaxed) +
         c_.counters.copied_forward_lines.load(std::memory_order_relaxed);
}

absl::Status WritePath::WaitForRoom(uint64_t generation, RoomWait* wait) {
  if (c_.cancel_waits.load(std::memory_order_acquire)) {
    return absl::UnavailableError("the cache is full and the server is stopping; nothing was written");
  }
  const int64_t now = c_.clock->NowNanos();
  const uint64_t progress = MigrationProgress();
  if (wait->since_ns == 0 || progress != wait->progress) {
    *wait = RoomWait{now, progress};  // first wait, or write-back moved: the store works
  }
  if (c_.log->WaitForProgress(generation, std::chrono::steady_clock::now() + std::chrono::seconds(1))) {
    return absl::OkStatus();
  }
  // Still no room: keep waiting while migration works (a slow store), not while it keeps failing
  // or makes no progress at all (a hung store).
  const int64_t since = c_.migration_failing_since_ns.load(std::memory_order_relaxed);
  const int64_t failing_ms = since == 0 ? 0 : (c_.clock->NowNanos() - since) / 1'000'000;
  const int64_t stuck_ms = (c_.clock->NowNanos() - wait->since_ns) / 1'000'000;
  std::string why;
  if (since != 0 && failing_ms >= c_.options.full_write_timeout_ms) {
    why = absl::StrCat("the cache is full and writing back to ", c_.backing->Describe(), " has failed for ", failing_ms,
                       " ms; nothing was written");
  } else if (stuck_ms >= c_.options.full_write_timeout_ms && MigrationProgress() == wait->progress) {
    why = absl::StrCat("the cache is full and writing back to ", c_.backing->Describe(), " made no progress for ",
                       stuck_ms, " ms; nothing was written");
  } else {
    return absl::OkStatus();
  }
  c_.counters.full_write_failures.fetch_add(1, std::memory_order_relaxed);
  TMEM_LOG_RATE_LIMITED(Error) << c_.Describe() << ": a write failed: " << why;
  return absl::UnavailableError(why);
}

absl::StatusOr<backend::BufferedOutcome> WritePath::WriteRange(const uint8_t* in, uint32_t len, uint64_t offset,
                                                               bool may_wait) {
  TMEM_RETURN_IF_ERROR(c_.failure.status());
  if (c_.log->counters().write_errors.load(std::memory_order_relaxed) > 0) {
    c_.Fail("a segment write to the cache device failed");
    return c_.failure.status();
  }
  // A partial line is merged with its old contents, which may have to be read from a device.
  if (!may_wait && (offset % kLineBytes != 0 || len % kLineBytes != 0)) return backend::BufferedOutcome::kWouldWait;
  uint64_t pos = offset;
  const uint64_t end = offset + len;
  while (pos < end) {
    const uint64_t line = pos / kLineBytes;
    const uint32_t b = static_cast<uint32_t>(pos % kLineBytes);
    // Whole lines up to the end of their stripe's run go in one batch.
    const uint64_t whole =
        b == 0 ? std::min((end - pos) / kLineBytes, LineIndex::kStripeLines - line % LineIndex::kStripeLines) : 0;
    absl::StatusOr<backend::BufferedOutcome> r;
    if (whole >= 2) {
      const uint32_t count = static_cast<uint32_t>(whole);
      const uint8_t* data = in + (pos - offset);
      std::vector<uint32_t> crcs(count);
      std::unique_ptr<uint8_t[][log::kSlotKeyBytes]> keys(new uint8_t[count][log::kSlotKeyBytes]);
      for (uint32_t i = 0; i < count; ++i) {
        crcs[i] = crc32c::Value(data + size_t{i} * kLineBytes, kLineBytes);
        EncodeLineKey(line + i, 0xFF, keys[i]);
      }
      std::vector<log::Location> locs(count);
      uint32_t done = 0;
      r = AppendOrWait(
          may_wait, [&] { return TryWriteWholeLines(line, count, data, crcs.data(), keys.get(), locs.data(), &done); });
      pos += uint64_t{count} * kLineBytes;
    } else {
      const uint32_t e = static_cast<uint32_t>(std::min<uint64_t>(kLineBytes, b + (end - pos)));
      r = AppendOrWait(may_wait, [&] { return TryWriteLine(line, in + (pos - offset), b, e); });
      pos += e - b;
    }
    if (!r.ok() || *r != backend::BufferedOutcome::kDone) return r;
  }
  return backend::BufferedOutcome::kDone;
}

}  // namespace tmem::blockcache
