#include "server/blockcache/line_index.h"

#include <algorithm>

namespace tmem::blockcache {

LineIndex::LineIndex(Clock* clock) : clock_(clock), stripes_(std::make_unique<Stripe[]>(kStripes)) {}

void LineIndex::Reserve(uint64_t lines) {
  for (size_t i = 0; i < kStripes; ++i) {
    MutexLock lock(&stripes_[i].index_mu);
    stripes_[i].lines.reserve(lines / kStripes + 1);
  }
}

std::optional<LineEntry> LineIndex::Lookup(uint64_t line) const {
  const Stripe& s = stripes_[StripeIndex(line)];
  MutexLock lock(&s.index_mu);
  auto it = s.lines.find(line);
  if (it == s.lines.end()) return std::nullopt;
  return it->second;
}

void LineIndex::Recover(uint64_t line, const LineEntry& entry) {
  Stripe& s = StripeOf(line);
  MutexLock index_lock(&s.index_mu);
  s.lines[line] = entry;
  if (entry.dirty != 0) {
    MutexLock segs_lock(&segs_mu_);
    NoteLocked(entry.seq, line);
  }
}

void LineIndex::Recount() {
  uint64_t cached = 0, dirty = 0;
  for (size_t i = 0; i < kStripes; ++i) {
    MutexLock lock(&stripes_[i].index_mu);
    cached += stripes_[i].lines.size();
    for (const auto& [line, e] : stripes_[i].lines) dirty += e.dirty != 0 ? 1 : 0;
  }
  cached_lines_.store(cached);
  dirty_lines_.store(dirty);
}

void LineIndex::Publish(Stripe& s, uint64_t first, size_t n, const log::Location* locs, const uint32_t* crcs,
                        uint8_t mask) {
  const uint64_t seq = locs[0].seq;
  MutexLock index_lock(&s.index_mu);
  for (size_t i = 0; i < n; ++i) {
    auto [it, inserted] = s.lines.try_emplace(first + i);
    if (inserted) cached_lines_.fetch_add(1, std::memory_order_relaxed);
    if (it->second.dirty == 0) dirty_lines_.fetch_add(1, std::memory_order_relaxed);
    it->second = LineEntry{seq, locs[i].offset, crcs[i], mask};
  }
  MutexLock segs_lock(&segs_mu_);
  for (size_t i = 0; i < n; ++i) NoteLocked(seq, first + i);
}

bool LineIndex::AddClean(Stripe& s, uint64_t line, const LineEntry& entry) {
  MutexLock index_lock(&s.index_mu);
  auto [it, inserted] = s.lines.try_emplace(line, entry);
  if (inserted) cached_lines_.fetch_add(1, std::memory_order_relaxed);
  return inserted;
}

void LineIndex::Moved(Stripe& s, uint64_t line, log::Location loc) {
  MutexLock index_lock(&s.index_mu);
  LineEntry& e = s.lines[line];
  e.seq = loc.seq;
  e.offset = loc.offset;
  MutexLock segs_lock(&segs_mu_);
  NoteLocked(loc.seq, line);
}

bool LineIndex::MarkClean(uint64_t line, const LineEntry& version) {
  Stripe& s = StripeOf(line);
  MutexLock lock(&s.index_mu);
  auto it = s.lines.find(line);
  if (it == s.lines.end() || !it->second.SameVersion(version) || it->second.dirty == 0) return false;
  it->second.dirty = 0;
  dirty_lines_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

std::optional<LineIndex::NotedSegment> LineIndex::NextNoted(uint64_t from) const {
  MutexLock lock(&segs_mu_);
  auto it = segments_.lower_bound(from);
  if (it == segments_.end()) return std::nullopt;
  return NotedSegment{it->first, it->second.lines};
}

void LineIndex::ForgetUpTo(uint64_t seq) {
  MutexLock lock(&segs_mu_);
  segments_.erase(segments_.begin(), segments_.upper_bound(seq));
}

int64_t LineIndex::OldestDirtyAgeNs() const {
  MutexLock lock(&segs_mu_);
  if (segments_.empty()) return 0;
  return std::max<int64_t>(0, clock_->NowNanos() - segments_.begin()->second.first_ns);
}

void LineIndex::NoteLocked(uint64_t seq, uint64_t line) {
  SegmentLines& sl = segments_[seq];
  if (sl.lines.empty()) sl.first_ns = clock_->NowNanos();
  sl.lines.push_back(line);
}

}  // namespace tmem::blockcache
