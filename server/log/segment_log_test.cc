#include "server/log/segment_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "common/crc32c.h"
#include "server/io/fault_injection_device.h"
#include "server/io/memory_device.h"
#include "server/log/segment_scan.h"

namespace tmem::log {
namespace {

constexpr uint32_t kSeg = 128 << 10;
constexpr uint32_t kPage = 4096;

uint8_t kKey[kSlotKeyBytes] = {1, 2, 3};

std::string Page(uint64_t tag, uint32_t len = kPage) {
  std::string p(len, '\0');
  for (uint32_t i = 0; i < len; i += 8) std::memcpy(&p[i], &tag, 8), tag = tag * 6364136223846793005ull + 1;
  return p;
}

struct Appended {
  Location loc;
  uint32_t crc;
  std::string data;
};

Appended Append(SegmentLog& log, uint64_t tag, uint32_t len = kPage) {
  Appended a;
  a.data = Page(tag, len);
  a.crc = crc32c::Value(a.data.data(), len);
  auto loc = log.Append(kKey, a.data.data(), len, a.crc);
  EXPECT_TRUE(loc.ok()) << loc.status();
  a.loc = *loc;
  return a;
}

SegmentLog::ReadOutcome ReadBack(SegmentLog& log, const Appended& a) {
  std::string out(a.data.size(), '\0');
  auto r = log.Read(a.loc, a.data.size(), a.crc, out.data());
  EXPECT_TRUE(r.ok()) << r.status();
  if (*r == SegmentLog::ReadOutcome::kOk) EXPECT_EQ(out, a.data);
  return *r;
}

class SegmentLogTest : public ::testing::Test {
 protected:
  SegmentLogTest() : mem_(kDataOffset + 16 * kSeg, 512), dev_(&mem_) {
    EXPECT_TRUE(FormatLog(&dev_, {.segment_bytes = kSeg}).ok());
  }
  // Tests run on a manual clock unless they choose otherwise, so that no deadline flush seals a
  // buffer at a moment that depends on machine load.
  std::unique_ptr<SegmentLog> Open(LogOptions o = {.clock = nullptr}) {
    if (o.clock == nullptr || o.clock == Clock::Real()) o.clock = &clock_;
    auto log = SegmentLog::Open(&dev_, o);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? std::move(*log) : nullptr;
  }
  ManualClock clock_;
  io::MemoryDevice mem_;
  io::FaultInjectionDevice dev_;
};

TEST_F(SegmentLogTest, FormatWritesGeometryThatOpenReadsBack) {
  auto g = ReadLogGeometry(&dev_);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->segment_bytes, kSeg);
  EXPECT_EQ(g->segment_count, 16u);
  EXPECT_EQ(g->format_version, kFormatVersion);
  auto log = Open();
  EXPECT_EQ(log->instance(), 1u);
  EXPECT_EQ(log->free_segments(), 16u);
}

TEST_F(SegmentLogTest, OpenRefusesUnformattedDeviceWithoutWriting) {
  io::MemoryDevice blank(kDataOffset + 16 * kSeg, 512);
  io::FaultInjectionDevice dev(&blank);
  auto log = SegmentLog::Open(&dev, {});
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(log.status().message().find("not formatted"), std::string::npos) << log.status();
  EXPECT_EQ(dev.write_count(), 0u);
}

TEST_F(SegmentLogTest, OpenRefusesForeignDataWithoutWriting) {
  io::MemoryDevice foreign(kDataOffset + 16 * kSeg, 512);
  io::AlignedBuffer b(4096, 512);
  std::memcpy(b.data(),
              "\x7f"
              "ELF-not-a-log",
              14);
  ASSERT_TRUE(foreign.Write(0, b.data(), 4096).ok());
  io::FaultInjectionDevice dev(&foreign);
  auto log = SegmentLog::Open(&dev, {});
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(log.status().message().find("foreign"), std::string::npos) << log.status();
  EXPECT_EQ(dev.write_count(), 0u);
  // Format refuses it too unless forced.
  EXPECT_EQ(FormatLog(&dev, {.segment_bytes = kSeg}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(dev.write_count(), 0u);
  EXPECT_TRUE(FormatLog(&dev, {.segment_bytes = kSeg, .force = true}).ok());
  EXPECT_TRUE(SegmentLog::Open(&dev, {}).ok());
}

TEST_F(SegmentLogTest, OpenRefusesCorruptSuperblock) {
  io::AlignedBuffer b(4096, 512);
  ASSERT_TRUE(mem_.Read(0, b.data(), 4096).ok());
  b.data()[40] ^= 0x01;  // segment_count
  ASSERT_TRUE(mem_.Write(0, b.data(), 4096).ok());
  uint64_t writes = dev_.write_count();
  auto log = SegmentLog::Open(&dev_, {});
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(log.status().message().find("corrupt"), std::string::npos) << log.status();
  EXPECT_EQ(dev_.write_count(), writes);
}

// A checkpoint with a valid CRC but impossible sequence numbers (a lease near 2^64, where this
// run's numbers would wrap) is refused without a write, not run on.
TEST_F(SegmentLogTest, OpenRefusesACheckpointWhoseSequenceNumbersWouldWrap) {
  auto geometry = ReadLogGeometry(&dev_);
  ASSERT_TRUE(geometry.ok()) << geometry.status();
  auto cp = ReadBestCheckpoint(&dev_, *geometry);
  ASSERT_TRUE(cp.ok()) << cp.status();
  CheckpointDisk bad = *cp;
  bad.generation += 1;
  bad.clean = 0;
  bad.head_seq = UINT64_MAX - 10;
  bad.seq_lease = UINT64_MAX - 1;
  ASSERT_TRUE(WriteCheckpointBlock(&dev_, bad).ok());
  const uint64_t writes = dev_.write_count();
  auto log = SegmentLog::Open(&dev_, {});
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(log.status().message().find("sequence numbers are impossible"), std::string::npos) << log.status();
  EXPECT_EQ(dev_.write_count(), writes);
}

TEST_F(SegmentLogTest, OpenRefusesOtherFormatVersion) {
  io::AlignedBuffer b(4096, 512);
  ASSERT_TRUE(mem_.Read(0, b.data(), 4096).ok());
  SuperblockDisk sb;
  std::memcpy(&sb, b.data(), sizeof(sb));
  sb.format_version = kFormatVersion + 1;
  sb.crc = crc32c::Value(&sb, offsetof(SuperblockDisk, crc));
  std::memcpy(b.data(), &sb, sizeof(sb));
  ASSERT_TRUE(mem_.Write(0, b.data(), 4096).ok());
  auto log = SegmentLog::Open(&dev_, {});
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(log.status().message().find("version 2"), std::string::npos) << log.status();
}

TEST_F(SegmentLogTest, FormatRefusesExistingLogUnlessForced) {
  absl::Status s = FormatLog(&dev_, {.segment_bytes = kSeg});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  auto before = ReadLogGeometry(&dev_);
  ASSERT_TRUE(FormatLog(&dev_, {.segment_bytes = kSeg, .force = true}).ok());
  auto after = ReadLogGeometry(&dev_);
  EXPECT_NE(std::memcmp(before->device_uuid, after->device_uuid, 16), 0) << "a new format gets a new uuid";
}

TEST_F(SegmentLogTest, FormatRefusesTooSmallDeviceAndBadSegmentSize) {
  io::MemoryDevice small(kDataOffset + 4 * kSeg, 512);
  absl::Status s = FormatLog(&small, {.segment_bytes = kSeg});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("needs at least"), std::string::npos) << s;
  io::MemoryDevice dev(64 << 20, 512);
  EXPECT_EQ(FormatLog(&dev, {.segment_bytes = 100000}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FormatLog(&dev, {.segment_bytes = 64 << 10}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SegmentLogTest, AppendRejectsBadLengths) {
  auto log = Open();
  std::string big(log->max_page_bytes() + 512, 'x');
  EXPECT_EQ(log->Append(kKey, big.data(), big.size(), 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Append(kKey, big.data(), 1000, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Append(kKey, big.data(), 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_GE(log->max_page_bytes(), 64u << 10) << "every pool page size fits in the smallest segment";
}

TEST_F(SegmentLogTest, PagesReadFromRamBufferBeforeFlushAndFromDeviceAfter) {
  auto log = Open();
  Appended a = Append(*log, 1);
  Appended small = Append(*log, 2, 512);
  Appended big = Append(*log, 3, 65536);
  EXPECT_GT(a.loc.seq, log->flushed_seq());
  EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kOk);
  EXPECT_EQ(ReadBack(*log, small), SegmentLog::ReadOutcome::kOk);
  EXPECT_EQ(log->counters().buffer_reads.load(), 2u);
  ASSERT_TRUE(log->FlushAll().ok());
  EXPECT_EQ(log->flushed_seq(), a.loc.seq);
  EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kOk);
  EXPECT_EQ(ReadBack(*log, small), SegmentLog::ReadOutcome::kOk);
  EXPECT_EQ(ReadBack(*log, big), SegmentLog::ReadOutcome::kOk);
  EXPECT_EQ(log->counters().device_reads.load(), 3u);
}

TEST_F(SegmentLogTest, FullSegmentIsWrittenInOneIo) {
  auto log = Open();
  ASSERT_TRUE(log->FlushAll().ok());
  const uint64_t writes_before = dev_.write_count();
  // Fill segment 1 and spill one page into segment 2, which seals segment 1.
  Appended first = Append(*log, 0);
  Appended last;
  uint64_t tag = 1;
  do {
    last = Append(*log, tag++);
  } while (last.loc.seq == first.loc.seq);
  ASSERT_TRUE(log->FlushUpTo(first.loc.seq).ok());
  EXPECT_EQ(dev_.write_count(), writes_before + 1);
  EXPECT_EQ(log->counters().segments_written.load(), 1u);
  // 1 header block + 30 pages + the slot table fill the 128 KiB segment.
  EXPECT_EQ(tag - 1, 30u);
  EXPECT_EQ(log->counters().bytes_written.load(), kSeg);
}

// A batch append fills the open buffer and stops there (the rest goes to the next call, in the
// next segment); each page holds a pin, and a sealed segment is written only when all are gone.
TEST_F(SegmentLogTest, BatchAppendsFillOneSegmentPerCallAndPinEachPage) {
  auto log = Open();
  ASSERT_TRUE(log->FlushAll().ok());
  constexpr size_t kN = 70;
  std::string data;
  std::vector<uint32_t> crcs(kN);
  std::vector<std::array<uint8_t, kSlotKeyBytes>> keys(kN);
  for (size_t i = 0; i < kN; ++i) {
    const std::string p = Page(1000 + i);
    crcs[i] = crc32c::Value(p.data(), p.size());
    keys[i].fill(static_cast<uint8_t>(i));
    data += p;
  }
  const auto* k = reinterpret_cast<const uint8_t(*)[kSlotKeyBytes]>(keys[0].data());
  const auto* d = reinterpret_cast<const uint8_t*>(data.data());
  Location unused;
  EXPECT_EQ(log->AppendBatch(k, d, kPage, crcs.data(), 0, &unused).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<Location> locs(kN);
  std::vector<size_t> counts;
  for (size_t done = 0; done < kN;) {
    auto n = log->AppendBatch(k + done, d + done * kPage, kPage, &crcs[done], kN - done, &locs[done], {.pin = true});
    ASSERT_TRUE(n.ok()) << n.status();
    for (size_t i = done; i < done + *n; ++i) EXPECT_EQ(locs[i].seq, locs[done].seq);
    counts.push_back(*n);
    done += *n;
  }
  // 30 pages fill a 128 KiB segment.
  EXPECT_EQ(counts, (std::vector<size_t>{30, 30, 10}));
  const uint64_t s1 = locs[0].seq;
  EXPECT_EQ(locs[30].seq, s1 + 1);
  EXPECT_EQ(locs[60].seq, s1 + 2);
  // Sealed but pinned: not written.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LT(log->flushed_seq(), s1) << "a segment was written while pages in it were pinned";
  log->UnpinMany(s1, 29);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LT(log->flushed_seq(), s1) << "a segment was written with one pin left";
  log->UnpinMany(s1, 1);
  ASSERT_TRUE(log->FlushUpTo(s1).ok());
  log->UnpinMany(s1 + 1, 30);
  log->UnpinMany(s1 + 2, 10);
  ASSERT_TRUE(log->FlushAll().ok());
  for (size_t i = 0; i < kN; ++i) {
    Appended a{locs[i], crcs[i], data.substr(i * kPage, kPage)};
    EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kOk) << "page " << i;
  }
}

// A lease renewal that keeps failing (its checkpoint write gets EIO) must not keep the only
// flusher from writing sealed buffers: a flush waiting for them gets its answer.
TEST_F(SegmentLogTest, AFailingLeaseRenewalDoesNotStarveSegmentWrites) {
  auto log = Open({.write_buffer_count = 3, .flusher_threads = 1, .seq_lease_segments = 4, .clock = nullptr});
  ASSERT_NE(log, nullptr);
  dev_.SetFailurePredicate([](io::FaultInjectionDevice::Op op, uint64_t offset, size_t) {
    return op == io::FaultInjectionDevice::Op::kWrite && offset < kDataOffset;  // checkpoints only
  });
  // Fill two segments: the renewal is due (half the lease used) and fails from then on.
  uint64_t tag = 0;
  Appended a = Append(*log, tag++);
  while (Append(*log, tag++).loc.seq < a.loc.seq + 2) {
  }
  std::atomic<bool> done{false};
  absl::Status st;
  std::thread flush([&] {
    st = log->FlushUpTo(a.loc.seq + 1);
    done = true;
  });
  for (int i = 0; i < 500 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(done) << "the flush never returned: sealed buffers were not written";
  dev_.SetFailurePredicate(nullptr);  // let a stuck flusher finish so that the thread can join
  flush.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kOk);
}

TEST_F(SegmentLogTest, PartlyFilledBufferIsWrittenAfterItsDeadline) {
  ManualClock clock;
  auto log = Open({.flush_deadline_ns = 10'000'000, .clock = &clock});
  Appended a = Append(*log, 7);
  log->Kick();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_LT(log->flushed_seq(), a.loc.seq) << "written before its deadline";
  clock.AdvanceMillis(11);
  log->Kick();
  for (int i = 0; i < 5000 && log->flushed_seq() < a.loc.seq; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(log->flushed_seq(), a.loc.seq);
  EXPECT_EQ(log->counters().deadline_flushes.load(), 1u);
  EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kOk);
}

TEST_F(SegmentLogTest, FifoReclaimKeepsFreeSegmentsAheadAndOldPagesGoAway) {
  auto log = Open({.free_segments_ahead = 2});
  std::vector<Appended> all;
  for (uint64_t i = 0; i < 30 * 16 * 3; ++i) {
    all.push_back(Append(*log, i));
    ASSERT_GE(log->free_segments(), 2u);
  }
  ASSERT_TRUE(log->FlushAll().ok());
  const uint64_t reclaimed = log->reclaimed_seq();
  EXPECT_GT(reclaimed, 0u);
  EXPECT_EQ(log->counters().segments_reclaimed.load(), reclaimed);
  size_t gone = 0, ok = 0;
  for (const Appended& a : all) {
    auto outcome = ReadBack(*log, a);
    if (a.loc.seq <= reclaimed) {
      EXPECT_EQ(outcome, SegmentLog::ReadOutcome::kGone) << a.loc.seq;
      ++gone;
    } else {
      if (outcome != SegmentLog::ReadOutcome::kOk) {
        // Say what the device holds at that position instead.
        io::AlignedBuffer h(4096, 512);
        ASSERT_TRUE(mem_.Read(kDataOffset + (a.loc.seq - 1) % 16 * kSeg, h.data(), 4096).ok());
        SegmentHeaderDisk disk;
        std::memcpy(&disk, h.data(), sizeof(disk));
        ADD_FAILURE() << "seq " << a.loc.seq << " offset " << a.loc.offset << " head " << log->head_seq()
                      << " reclaimed " << reclaimed << "; the device holds seq " << disk.seq << " with "
                      << disk.entry_count << " entries there; segments written "
                      << log->counters().segments_written.load();
        break;
      }
      ++ok;
    }
  }
  EXPECT_GT(gone, all.size() / 2);
  EXPECT_GT(ok, 30u * 10);
}

// One flusher's write stalls while the other flusher and the appenders go on: the head must not
// lap the stalled segment, or its late write would land on the newer segment at that position.
TEST_F(SegmentLogTest, AStalledSegmentWriteIsNeverOverwrittenByTheNextLap) {
  auto log = Open({.write_buffer_count = 4, .flusher_threads = 2});
  const uint64_t stalled_seq = 2;
  const uint64_t stalled_at = kDataOffset + (stalled_seq - 1) * kSeg;
  int matched = 0;  // only the first write there stalls (the predicate runs under the device's lock)
  dev_.StallWrites([&](uint64_t offset, size_t len) { return offset == stalled_at && len > 4096 && matched++ == 0; });
  std::vector<Appended> pages;
  std::thread appender([&] {
    for (int i = 0; i < 30 * 16 * 2; ++i) pages.push_back(Append(*log, 5000 + i));
  });
  // Wait until seq 2's write is stuck and the head has gone as far as it may: one lap.
  for (int i = 0; i < 10000 && (dev_.stalled_write_count() == 0 || log->head_seq() < stalled_seq + 15); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(dev_.stalled_write_count(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LT(log->head_seq(), stalled_seq + 16) << "the head lapped a segment whose write had not completed";
  EXPECT_GT(log->counters().append_waits.load(), 0u);
  dev_.ReleaseStalledWrites();
  appender.join();
  ASSERT_TRUE(log->FlushAll().ok());
  int ok = 0;
  for (const Appended& a : pages) {
    if (!log->IsLive(a.loc.seq)) continue;
    ASSERT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kOk) << "seq " << a.loc.seq;
    ++ok;
  }
  EXPECT_GT(ok, 30 * 10);
}

TEST_F(SegmentLogTest, CorruptByteOnDeviceIsReportedNotReturned) {
  auto log = Open();
  Appended a = Append(*log, 9);
  ASSERT_TRUE(log->FlushAll().ok());
  io::AlignedBuffer b(512, 512);
  const uint64_t at = kDataOffset + (a.loc.seq - 1) * kSeg + a.loc.offset + 1024;
  ASSERT_TRUE(mem_.Read(at, b.data(), 512).ok());
  b.data()[17] ^= 0x40;
  ASSERT_TRUE(mem_.Write(at, b.data(), 512).ok());
  std::string out(kPage, '\0');
  auto r = log->Read(a.loc, kPage, a.crc, out.data());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, SegmentLog::ReadOutcome::kCorrupt);
  EXPECT_EQ(log->counters().crc_failures.load(), 1u);
}

TEST_F(SegmentLogTest, CleanCloseKeepsPagesAndUncleanStopDropsThem) {
  Appended a;
  uint64_t head;
  {
    auto log = Open();
    a = Append(*log, 11);
    ASSERT_TRUE(log->CloseClean().ok());
    head = log->head_seq();
    EXPECT_EQ(log->Append(kKey, a.data.data(), kPage, a.crc).status().code(), absl::StatusCode::kFailedPrecondition);
  }
  {
    auto log = Open();
    EXPECT_TRUE(log->previous_stop_clean());
    EXPECT_EQ(log->instance(), 2u);
    EXPECT_EQ(log->head_seq(), head);
    EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kOk);
    Appended b = Append(*log, 12);
    EXPECT_GT(b.loc.seq, a.loc.seq);
    ASSERT_TRUE(log->FlushAll().ok());
    // Destroyed without CloseClean: an unclean stop.
  }
  auto log = Open();
  EXPECT_FALSE(log->previous_stop_clean());
  EXPECT_EQ(log->instance(), 3u);
  EXPECT_FALSE(log->IsLive(a.loc.seq));
  EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kGone);
  Appended c = Append(*log, 13);
  EXPECT_GT(c.loc.seq, a.loc.seq + 1) << "after a crash new sequence numbers start above the lease";
}

TEST_F(SegmentLogTest, PowerCutLosesUnsyncedWritesAndNextOpenIsUnclean) {
  std::vector<Appended> pages;
  uint64_t max_seq = 0;
  {
    auto log = Open({.seq_lease_segments = 4});
    for (int i = 0; i < 200; ++i) pages.push_back(Append(*log, 100 + i));
    ASSERT_TRUE(log->FlushUpTo(pages[100].loc.seq).ok());
    max_seq = log->head_seq();
    ASSERT_TRUE(dev_.SimulatePowerCut(io::FaultInjectionDevice::PowerCutMode::kTearUnsynced, 5).ok());
  }
  dev_.Restart();
  auto log = Open();
  EXPECT_FALSE(log->previous_stop_clean());
  for (const Appended& a : pages) EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kGone);
  Appended fresh = Append(*log, 999);
  EXPECT_GT(fresh.loc.seq, max_seq) << "a sequence number used before the cut is never reused";
}

// With resume_after_newest_segment (the block cache), a run after a crash starts right after the
// newest segment on the device rather than above the whole lease: a number is handed out again
// only when no valid header of it reached the device, and then at the same position.
TEST_F(SegmentLogTest, AnUncleanStopResumesAfterTheNewestSegmentThatReachedTheDevice) {
  LogOptions resume{.seq_lease_segments = 8, .clock = nullptr};
  resume.retention.resume_after_newest_segment = true;
  // Writes `n` segments, flushes and stops uncleanly; returns the first run's starting head.
  auto write_segments = [&](int n) {
    auto log = Open(resume);
    const uint64_t start = log->head_seq();
    for (uint64_t tag = 0; log->head_seq() < start + n; ++tag) Append(*log, tag);
    EXPECT_TRUE(log->FlushAll().ok());
    EXPECT_EQ(log->flushed_seq(), start + n);
    return start;
  };
  auto header_seq_at = [&](uint64_t seq) {
    io::AlignedBuffer b(512, 512);
    EXPECT_TRUE(mem_.Read(kDataOffset + (seq - 1) % 16 * kSeg, b.data(), 512).ok());
    SegmentHeaderDisk h;
    std::memcpy(&h, b.data(), sizeof(h));
    return h.seq;
  };
  auto tear_header_of = [&](uint64_t seq) {
    io::AlignedBuffer b(512, 512);
    std::memset(b.data(), 0x5A, 512);
    ASSERT_TRUE(mem_.Write(kDataOffset + (seq - 1) % 16 * kSeg, b.data(), 512).ok());
  };

  uint64_t start = write_segments(3);
  {
    auto log = Open(resume);
    EXPECT_FALSE(log->previous_stop_clean());
    EXPECT_EQ(log->head_seq(), start + 3) << "the crash skipped numbers no segment holds";
    EXPECT_EQ(log->reclaimed_seq(), start + 3);
  }
  // Without the option the next run starts above the lease (8 numbers after the last checkpoint).
  {
    auto log = Open({.seq_lease_segments = 8, .clock = nullptr});
    EXPECT_GE(log->head_seq(), start + 3 + 8);
  }

  // The newest segment's header torn: its number is handed out again, at its position.
  start = write_segments(3);
  const uint64_t torn = start + 3;
  tear_header_of(torn);
  {
    auto log = Open(resume);
    EXPECT_EQ(log->head_seq(), torn - 1);
    Appended again = Append(*log, 4242);
    EXPECT_EQ(again.loc.seq, torn);
    ASSERT_TRUE(log->FlushAll().ok());
    EXPECT_EQ(header_seq_at(torn), torn);
    EXPECT_EQ(ReadBack(*log, again), SegmentLog::ReadOutcome::kOk);
  }
  // An older segment torn but a newer one whole: nothing at or below the newer one is reused.
  start = write_segments(3);
  tear_header_of(start + 1);
  {
    auto log = Open(resume);
    EXPECT_EQ(log->head_seq(), start + 3);
    EXPECT_EQ(Append(*log, 7).loc.seq, start + 4);
  }
}

TEST_F(SegmentLogTest, TornCheckpointFallsBackToThePreviousOne) {
  {
    auto log = Open();
    Append(*log, 1);
    ASSERT_TRUE(log->CloseClean().ok());  // generation 3 (format 1, open 2, close 3) in slot 1
  }
  // Tear the newest checkpoint (slot 1): the older slot (an unclean "live" mark) wins.
  io::AlignedBuffer b(512, 512);
  ASSERT_TRUE(mem_.Read(kCheckpointOffset[1], b.data(), 512).ok());
  b.data()[50] ^= 0xFF;
  ASSERT_TRUE(mem_.Write(kCheckpointOffset[1], b.data(), 512).ok());
  auto log = Open();
  EXPECT_FALSE(log->previous_stop_clean()) << "a torn clean mark must not be trusted";
  EXPECT_EQ(log->instance(), 2u);
}

TEST_F(SegmentLogTest, FailedSegmentWriteTurnsItsPagesIntoMisses) {
  auto log = Open();
  dev_.FailNext(io::FaultInjectionDevice::Op::kWrite, 1);
  Appended a = Append(*log, 21);
  absl::Status s = log->FlushAll();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_EQ(log->counters().write_errors.load(), 1u);
  EXPECT_EQ(ReadBack(*log, a), SegmentLog::ReadOutcome::kGone);
  Appended b = Append(*log, 22);
  EXPECT_TRUE(log->FlushAll().ok());
  EXPECT_EQ(ReadBack(*log, b), SegmentLog::ReadOutcome::kOk);
}

TEST_F(SegmentLogTest, DeviceReadErrorIsReturned) {
  auto log = Open();
  Appended a = Append(*log, 31);
  ASSERT_TRUE(log->FlushAll().ok());
  dev_.FailNext(io::FaultInjectionDevice::Op::kRead, 1);
  std::string out(kPage, '\0');
  auto r = log->Read(a.loc, kPage, a.crc, out.data());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(log->counters().read_errors.load(), 1u);
}

// One batch mixing reclaimed pages, pages on the device, pages still in RAM, a corrupt page, a
// bad location and a device error: each entry gets exactly what a single Read gives.
TEST_F(SegmentLogTest, ReadManyGivesEachPageWhatReadGives) {
  auto log = Open({.free_segments_ahead = 2});
  std::vector<Appended> pages;
  for (uint64_t i = 0; i < 30 * 16 * 2; ++i) pages.push_back(Append(*log, 700 + i));
  ASSERT_TRUE(log->FlushAll().ok());
  for (uint64_t i = 0; i < 5; ++i) pages.push_back(Append(*log, 90000 + i));  // stay in RAM
  Appended bad_crc = pages[pages.size() - 40];
  bad_crc.crc ^= 1;
  pages.push_back(bad_crc);
  std::vector<SegmentLog::ReadOutcome> want;
  for (const Appended& a : pages) {
    std::string out(a.data.size(), '\0');
    auto r = log->Read(a.loc, a.data.size(), a.crc, out.data());
    ASSERT_TRUE(r.ok()) << r.status();
    want.push_back(*r);
  }
  ASSERT_GT(std::count(want.begin(), want.end(), SegmentLog::ReadOutcome::kGone), 100);
  ASSERT_GT(std::count(want.begin(), want.end(), SegmentLog::ReadOutcome::kOk), 100);
  ASSERT_EQ(want.back(), SegmentLog::ReadOutcome::kCorrupt);

  std::vector<std::string> outs(pages.size() + 1);
  std::vector<SegmentLog::PageRead> reads;
  for (size_t i = 0; i < pages.size(); ++i) {
    outs[i].assign(pages[i].data.size(), '\0');
    reads.push_back({.loc = pages[i].loc,
                     .len = static_cast<uint32_t>(pages[i].data.size()),
                     .expected_crc = pages[i].crc,
                     .out = outs[i].data()});
  }
  outs.back().assign(kPage, '\0');
  reads.push_back({.loc = {.seq = log->head_seq(), .offset = 1}, .len = kPage, .out = outs.back().data()});
  const uint64_t crc_failures = log->counters().crc_failures.load();
  dev_.FailNext(io::FaultInjectionDevice::Op::kRead, 1);
  log->ReadMany(reads);
  int errors = 0;
  for (size_t i = 0; i < pages.size(); ++i) {
    if (!reads[i].outcome.ok()) {
      EXPECT_EQ(reads[i].outcome.status().code(), absl::StatusCode::kInternal);
      EXPECT_EQ(want[i], SegmentLog::ReadOutcome::kOk) << "only a device read can fail";
      ++errors;
      continue;
    }
    ASSERT_EQ(*reads[i].outcome, want[i]) << i;
    if (want[i] == SegmentLog::ReadOutcome::kOk) ASSERT_EQ(outs[i], pages[i].data) << i;
  }
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(reads.back().outcome.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->counters().crc_failures.load(), crc_failures + 1);
}

TEST_F(SegmentLogTest, ConcurrentAppendersAndReadersSeeTheirOwnPages) {
  auto log = Open({.write_buffer_count = 3, .flusher_threads = 2});
  constexpr int kThreads = 4, kPerThread = 800;
  std::atomic<int> bad{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Appended> mine;
      for (int i = 0; i < kPerThread; ++i) {
        mine.push_back(Append(*log, t * 100000 + i));
        const Appended& probe = mine[i / 2];
        std::string out(kPage, '\0');
        auto r = log->Read(probe.loc, kPage, probe.crc, out.data());
        if (!r.ok() || *r == SegmentLog::ReadOutcome::kCorrupt) {
          ++bad;
        } else if (*r == SegmentLog::ReadOutcome::kOk) {
          if (out != probe.data) ++bad;
          ++ok;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(log->counters().crc_failures.load(), 0u);
}

// Deadline flushes every few microseconds seal partly filled buffers all the time, while
// writers append and readers read back pages of every age. Without injected corruption a read
// is either the exact page or kGone, never kCorrupt.
TEST_F(SegmentLogTest, ConstantDeadlineFlushesNeverCorruptLivePages) {
  auto log = SegmentLog::Open(&dev_, {.write_buffer_count = 4, .flusher_threads = 2, .flush_deadline_ns = 20'000});
  ASSERT_TRUE(log.ok());
  constexpr int kWriters = 2, kPerWriter = 3000;
  std::atomic<int> corrupt{0}, mismatched{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Appended> mine;
      std::mt19937_64 rng(t);
      for (int i = 0; i < kPerWriter; ++i) {
        mine.push_back(Append(**log, (uint64_t{1} << 40) * t + i, (1 + rng() % 8) * 512));
        for (int k = 0; k < 2; ++k) {
          const Appended& probe = mine[rng() % mine.size()];
          std::string out(probe.data.size(), '\0');
          auto r = (*log)->Read(probe.loc, probe.data.size(), probe.crc, out.data());
          if (!r.ok()) continue;
          if (*r == SegmentLog::ReadOutcome::kCorrupt) ++corrupt;
          if (*r == SegmentLog::ReadOutcome::kOk) {
            ++ok;
            if (out != probe.data) ++mismatched;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_EQ(mismatched.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT((*log)->counters().deadline_flushes.load(), 0u);
}

TEST_F(SegmentLogTest, ScanFindsEveryWrittenSegmentInOrderWithItsPages) {
  std::map<uint64_t, std::vector<Appended>> by_seq;
  {
    auto log = Open();
    for (uint64_t i = 0; i < 100; ++i) {
      Appended a = Append(*log, i);
      by_seq[a.loc.seq].push_back(a);
    }
    ASSERT_TRUE(log->FlushAll().ok());
  }                                                // an unclean stop: the scan does not care
  const uint64_t min_seq = by_seq.begin()->first;  // the first segment is left out
  std::vector<uint64_t> seen;
  uint64_t skipped = 99;
  ASSERT_TRUE(ScanSegments(
                  &dev_, min_seq,
                  [&](const ScannedSegment& s) {
                    seen.push_back(s.seq);
                    const auto& want = by_seq.at(s.seq);
                    EXPECT_EQ(s.entries.size(), want.size());
                    for (size_t i = 0; i < std::min(s.entries.size(), want.size()); ++i) {
                      EXPECT_EQ(s.entries[i].offset, want[i].loc.offset);
                      EXPECT_EQ(s.entries[i].crc, want[i].crc);
                      EXPECT_EQ(std::string(reinterpret_cast<const char*>(s.data) + s.entries[i].offset, kPage),
                                want[i].data);
                    }
                    return absl::OkStatus();
                  },
                  &skipped)
                  .ok());
  std::vector<uint64_t> want;
  for (const auto& [seq, pages] : by_seq) {
    if (seq > min_seq) want.push_back(seq);
  }
  EXPECT_EQ(seen, want);
  EXPECT_EQ(skipped, 0u);
}

TEST_F(SegmentLogTest, ScanSkipsSegmentsWithABadHeaderOrTable) {
  std::vector<uint64_t> seqs;
  {
    auto log = Open();
    for (uint64_t i = 0; i < 100; ++i) {
      Appended a = Append(*log, i);
      if (seqs.empty() || seqs.back() != a.loc.seq) seqs.push_back(a.loc.seq);
    }
    ASSERT_TRUE(log->FlushAll().ok());
  }
  ASSERT_GE(seqs.size(), 3u);
  // Corrupt one byte of the first segment's header and one byte of the second one's table.
  auto pos = [&](uint64_t seq) { return kDataOffset + (seq - 1) % 16 * kSeg; };
  io::AlignedBuffer b(kSeg, 512);
  ASSERT_TRUE(mem_.Read(pos(seqs[0]), b.data(), 4096).ok());
  b.data()[30] ^= 1;
  ASSERT_TRUE(mem_.Write(pos(seqs[0]), b.data(), 4096).ok());
  ASSERT_TRUE(mem_.Read(pos(seqs[1]), b.data(), kSeg).ok());
  SegmentHeaderDisk h;
  std::memcpy(&h, b.data(), sizeof(h));
  b.data()[h.table_offset + 3] ^= 1;
  ASSERT_TRUE(mem_.Write(pos(seqs[1]), b.data(), kSeg).ok());
  std::vector<uint64_t> seen;
  uint64_t skipped = 0;
  ASSERT_TRUE(ScanSegments(
                  &dev_, 0,
                  [&](const ScannedSegment& s) {
                    seen.push_back(s.seq);
                    return absl::OkStatus();
                  },
                  &skipped)
                  .ok());
  EXPECT_EQ(skipped, 2u);
  EXPECT_EQ(seen, std::vector<uint64_t>(seqs.begin() + 2, seqs.end()));
}

TEST_F(SegmentLogTest, ReclaimLimitHoldsAppendsUntilItMoves) {
  auto log = Open({.free_segments_ahead = 2});
  log->SetReclaimLimit(0);
  // 16 segments, 2 kept free ahead: 14 can be filled without reclaiming any.
  const uint64_t pages_per_segment = (kSeg - 4096 - 56) / (kPage + 56);
  std::atomic<uint64_t> appended{0};
  std::thread writer([&] {
    for (uint64_t i = 0; i < 20 * pages_per_segment; ++i) {
      Append(*log, i);
      appended.fetch_add(1);
    }
  });
  // The writer stops once it needs a segment the limit keeps.
  uint64_t last = 0;
  for (int stable = 0; stable < 20;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const uint64_t now = appended.load();
    stable = now == last ? stable + 1 : 0;
    last = now;
  }
  EXPECT_LT(last, 20 * pages_per_segment);
  EXPECT_EQ(log->reclaimed_seq(), 0u);
  EXPECT_GT(log->counters().append_waits.load(), 0u);
  log->SetReclaimLimit(UINT64_MAX);
  writer.join();
  EXPECT_EQ(appended.load(), 20 * pages_per_segment);
  EXPECT_GT(log->reclaimed_seq(), 0u);
}

}  // namespace
}  // namespace tmem::log
