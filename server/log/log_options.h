// The segment log's options and the small types of its API: how the log is run (LogOptions),
// how an append may wait (AppendOptions) and where a page lives (Location).
#ifndef TMEM_SERVER_LOG_LOG_OPTIONS_H_
#define TMEM_SERVER_LOG_LOG_OPTIONS_H_

#include <chrono>
#include <cstdint>
#include <optional>

#include "common/clock.h"

namespace tmem::log {

struct LogOptions {
  // RAM write buffers of one segment each: one open for appends, the rest in flight.
  uint32_t write_buffer_count = 4;
  // Threads writing sealed buffers; each keeps one segment write in flight.
  uint32_t flusher_threads = 2;
  // A partly filled buffer is written once its first page is this old.
  int64_t flush_deadline_ns = 5'000'000;
  // Segments kept reclaimed beyond the open one, so that opening a buffer never waits.
  uint32_t free_segments_ahead = 2;
  // Sequence numbers persisted ahead in the checkpoint, so that a run after a crash starts
  // above every number the crashed run used. A renewal (a checkpoint and a device sync) is due
  // every half lease; a crash skips at most a lease of numbers, which costs nothing unless the
  // owner keeps segments across a crash (see resume_after_newest_segment).
  uint64_t seq_lease_segments = 65536;
  // What an owner that indexes the log itself and keeps its segments (the block cache) asks of
  // the log; page pools leave it as it is.
  struct Retention {
    // Segments with a sequence number above this are never reclaimed (SetReclaimLimit moves it).
    uint64_t reclaim_limit = UINT64_MAX;
    // Under the reclaim limit, this many segments below it are kept for appends that ask for the
    // reserve (the block cache's copy-forward, which makes room for the others).
    uint32_t reserved_segments = 0;
    // Segments above this stay readable although the previous run stopped uncleanly, which
    // otherwise makes every older segment gone. The owner vouches that no position holding one
    // was reused (it kept them from reuse with its reclaim limit).
    std::optional<uint64_t> keep_segments_after;
    // After an unclean stop, read the headers of the segments the crashed run's lease covers (one
    // block per position, at most one per position of the device) and start right after the
    // newest valid one, instead of above the whole lease. A number whose segment left no valid
    // header is handed out again, at the same position, so the new segment replaces whatever part
    // of the lost one reached the device. Numbers skipped would otherwise hold room until
    // migration passed them.
    bool resume_after_newest_segment = false;
  } retention;
  Clock* clock = Clock::Real();
};

// How an append may wait, and what it holds afterwards.
struct AppendOptions {
  // The page's segment is not written to the device until Unpin(location.seq) (one pin per
  // page): the caller publishes the location in its index first, so that whoever sees the
  // segment written also sees every location in it.
  bool pin = false;
  // Without it, an append that would wait for a buffer or for room fails at once with
  // ResourceExhausted instead, and sets *progress_generation (when given) for
  // WaitForProgress: a caller can then wait for room without holding its own locks.
  bool may_wait = true;
  // The append may open a segment among the reserved ones (LogOptions::reserved_segments).
  bool use_reserve = false;
  // A waiting append gives up then with DeadlineExceeded (steady clock; the default: never).
  std::chrono::steady_clock::time_point wait_until = {};
  uint64_t* progress_generation = nullptr;
};

// Where an appended page lives: its segment's sequence number and its byte offset in it.
struct Location {
  uint64_t seq = 0;
  uint32_t offset = 0;
};

}  // namespace tmem::log

#endif  // TMEM_SERVER_LOG_LOG_OPTIONS_H_
