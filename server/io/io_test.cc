#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "server/io/block_device.h"
#include "server/io/fault_injection_device.h"
#include "server/io/file_device.h"
#include "server/io/memory_device.h"

namespace tmem::io {
namespace {

std::string TestPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/var/tmp") + "/" + name;
}

void Fill(AlignedBuffer& b, uint8_t v) { std::memset(b.data(), v, b.size()); }

class FileDeviceTest : public ::testing::TestWithParam<IoEngine> {};

TEST_P(FileDeviceTest, WriteThenReadReturnsSameBytesAndSurvivesReopen) {
  std::string path = TestPath(std::string("dev_rw_") + IoEngineName(GetParam()));
  ::unlink(path.c_str());
  {
    auto dev = FileDevice::Open({.path = path, .create_size_bytes = 1 << 20, .engine = GetParam()});
    ASSERT_TRUE(dev.ok()) << dev.status();
    EXPECT_EQ((*dev)->size_bytes(), 1u << 20);
    AlignedBuffer w(8192), r(8192);
    for (size_t i = 0; i < w.size(); ++i) w.data()[i] = static_cast<uint8_t>(i * 7 + 1);
    ASSERT_TRUE((*dev)->Write(4096, w.data(), w.size()).ok());
    ASSERT_TRUE((*dev)->Sync().ok());
    ASSERT_TRUE((*dev)->Read(4096, r.data(), r.size()).ok());
    EXPECT_EQ(std::memcmp(w.data(), r.data(), w.size()), 0);
  }
  auto dev = FileDevice::Open({.path = path, .engine = GetParam()});
  ASSERT_TRUE(dev.ok()) << dev.status();
  AlignedBuffer r(4096);
  ASSERT_TRUE((*dev)->Read(8192, r.data(), r.size()).ok());
  EXPECT_EQ(r.data()[5], static_cast<uint8_t>((4096 + 5) * 7 + 1));
}

TEST_P(FileDeviceTest, RefusesUnalignedAndOutOfRangeIo) {
  std::string path = TestPath(std::string("dev_bad_") + IoEngineName(GetParam()));
  ::unlink(path.c_str());
  auto dev = FileDevice::Open({.path = path, .create_size_bytes = 64 << 10, .engine = GetParam()});
  ASSERT_TRUE(dev.ok()) << dev.status();
  AlignedBuffer b(8192);
  EXPECT_EQ((*dev)->Read(100, b.data(), 4096).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*dev)->Write(0, b.data(), 100).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*dev)->Write(0, b.data() + 1, 4096).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*dev)->Read(64 << 10, b.data(), 4096).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*dev)->Write(60 << 10, b.data(), 8192).code(), absl::StatusCode::kOutOfRange);
}

TEST_P(FileDeviceTest, ReadManyReturnsEveryBlockAndReportsBadOpsSeparately) {
  std::string path = TestPath(std::string("dev_many_") + IoEngineName(GetParam()));
  ::unlink(path.c_str());
  constexpr size_t kBlocks = 200;  // more than one ring's depth
  auto dev = FileDevice::Open({.path = path, .create_size_bytes = kBlocks * 4096, .engine = GetParam()});
  ASSERT_TRUE(dev.ok()) << dev.status();
  AlignedBuffer w(kBlocks * 4096);
  for (size_t b = 0; b < kBlocks; ++b) std::memset(w.data() + b * 4096, static_cast<int>(b % 251) + 1, 4096);
  ASSERT_TRUE((*dev)->Write(0, w.data(), w.size()).ok());
  // Every block in reverse order, then one unaligned op and one past the end.
  AlignedBuffer r(kBlocks * 4096 + 4096);
  std::vector<BlockDevice::ReadOp> ops;
  for (size_t b = 0; b < kBlocks; ++b) {
    ops.push_back({.offset = (kBlocks - 1 - b) * 4096, .buf = r.data() + b * 4096, .len = 4096});
  }
  ops.push_back({.offset = 100, .buf = r.data() + kBlocks * 4096, .len = 4096});
  ops.push_back({.offset = kBlocks * 4096, .buf = r.data() + kBlocks * 4096, .len = 4096});
  (*dev)->ReadMany(ops);
  for (size_t b = 0; b < kBlocks; ++b) {
    ASSERT_TRUE(ops[b].status.ok()) << b << ": " << ops[b].status;
    const uint8_t want = static_cast<uint8_t>((kBlocks - 1 - b) % 251 + 1);
    EXPECT_EQ(r.data()[b * 4096], want) << b;
    EXPECT_EQ(r.data()[b * 4096 + 4095], want) << b;
  }
  EXPECT_EQ(ops[kBlocks].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ops[kBlocks + 1].status.code(), absl::StatusCode::kOutOfRange);
}

// Batches submitted to a read queue come back by tag once every read of theirs is done, with
// the bytes ReadMany gives, also past the queue's depth (reads wait their turn) and with bad ops.
void ExpectQueueReadsEveryBatch(BlockDevice& dev, size_t blocks) {
  std::unique_ptr<ReadQueue> q = dev.NewReadQueue();
  ASSERT_NE(q, nullptr);
  constexpr size_t kBatches = 12, kPerBatch = 40;  // 480 reads: past kQueueDepth
  AlignedBuffer r(kBatches * kPerBatch * 4096);
  std::vector<std::vector<BlockDevice::ReadOp>> batches(kBatches);
  for (size_t b = 0; b < kBatches; ++b) {
    for (size_t i = 0; i < kPerBatch; ++i) {
      const size_t block = (b * 7 + i * 13) % blocks;
      batches[b].push_back({.offset = block * 4096, .buf = r.data() + (b * kPerBatch + i) * 4096, .len = 4096});
    }
    if (b == 3) batches[b][5].offset = 100;  // unaligned: refused, the rest of the batch is read
    q->Submit(batches[b], 1000 + b);
  }
  EXPECT_EQ(q->in_flight(), kBatches);
  std::vector<uint64_t> done;
  for (int spins = 0; done.size() < kBatches && spins < 2000; ++spins) {
    pollfd p{q->event_fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    q->Reap(&done);
  }
  ASSERT_EQ(done.size(), kBatches);
  std::sort(done.begin(), done.end());
  for (size_t b = 0; b < kBatches; ++b) {
    EXPECT_EQ(done[b], 1000 + b);
    for (size_t i = 0; i < kPerBatch; ++i) {
      const BlockDevice::ReadOp& op = batches[b][i];
      if (b == 3 && i == 5) {
        EXPECT_EQ(op.status.code(), absl::StatusCode::kInvalidArgument);
        continue;
      }
      ASSERT_TRUE(op.status.ok()) << b << "/" << i << ": " << op.status;
      const uint8_t want = static_cast<uint8_t>((op.offset / 4096) % 251 + 1);
      EXPECT_EQ(static_cast<uint8_t*>(op.buf)[0], want) << b << "/" << i;
      EXPECT_EQ(static_cast<uint8_t*>(op.buf)[4095], want) << b << "/" << i;
    }
  }
  EXPECT_EQ(q->in_flight(), 0u);
}

void FillBlocks(BlockDevice& dev, size_t blocks) {
  AlignedBuffer w(blocks * 4096);
  for (size_t b = 0; b < blocks; ++b) std::memset(w.data() + b * 4096, static_cast<int>(b % 251) + 1, 4096);
  ASSERT_TRUE(dev.Write(0, w.data(), w.size()).ok());
}

TEST_P(FileDeviceTest, ReadQueueGivesEveryBatchBackByTag) {
  std::string path = TestPath(std::string("dev_queue_") + IoEngineName(GetParam()));
  ::unlink(path.c_str());
  auto dev = FileDevice::Open({.path = path, .create_size_bytes = 64 * 4096, .engine = GetParam()});
  ASSERT_TRUE(dev.ok()) << dev.status();
  ASSERT_NO_FATAL_FAILURE(FillBlocks(**dev, 64));
  ExpectQueueReadsEveryBatch(**dev, 64);
}

// A queue destroyed with reads submitted and not reaped — more than the ring takes at once —
// finishes every one of them first: the callers settle those batches next.
TEST_P(FileDeviceTest, ADestroyedReadQueueFinishesEveryReadFirst) {
  std::string path = TestPath(std::string("dev_queue_end_") + IoEngineName(GetParam()));
  ::unlink(path.c_str());
  constexpr size_t kBlocks = 64, kReads = FileDevice::kQueueDepth * 2 + 10;
  auto dev = FileDevice::Open({.path = path, .create_size_bytes = kBlocks * 4096, .engine = GetParam()});
  ASSERT_TRUE(dev.ok()) << dev.status();
  ASSERT_NO_FATAL_FAILURE(FillBlocks(**dev, kBlocks));
  AlignedBuffer r(kReads * 4096);
  std::vector<BlockDevice::ReadOp> ops;
  for (size_t i = 0; i < kReads; ++i) {
    ops.push_back({.offset = (i % kBlocks) * 4096, .buf = r.data() + i * 4096, .len = 4096});
  }
  {
    std::unique_ptr<ReadQueue> q = (*dev)->NewReadQueue();
    ASSERT_NE(q, nullptr);
    q->Submit(ops, 1);
  }
  for (size_t i = 0; i < kReads; ++i) {
    ASSERT_TRUE(ops[i].status.ok()) << i << ": " << ops[i].status;
    ASSERT_EQ(r.data()[i * 4096 + 4095], static_cast<uint8_t>((i % kBlocks) % 251 + 1)) << i;
  }
}

// A plugged queue starts nothing: reads submitted meanwhile all start at Unplug, in one go.
TEST(FileDeviceReadQueueTest, APluggedReadQueueStartsItsReadsAtUnplug) {
  std::string path = TestPath("dev_queue_plug");
  ::unlink(path.c_str());
  auto dev = FileDevice::Open({.path = path, .create_size_bytes = 16 * 4096, .engine = IoEngine::kUring});
  ASSERT_TRUE(dev.ok()) << dev.status();
  ASSERT_NO_FATAL_FAILURE(FillBlocks(**dev, 16));
  std::unique_ptr<ReadQueue> q = (*dev)->NewReadQueue();
  ASSERT_NE(q, nullptr);
  if (!q->plugs()) GTEST_SKIP() << "io_uring refused here: the thread queue starts reads one by one";
  AlignedBuffer r(3 * 4096);
  std::vector<BlockDevice::ReadOp> a = {{.offset = 0, .buf = r.data(), .len = 4096}};
  std::vector<BlockDevice::ReadOp> b = {{.offset = 4096 * 5, .buf = r.data() + 4096, .len = 4096},
                                        {.offset = 4096 * 9, .buf = r.data() + 8192, .len = 4096}};
  q->Plug();
  q->Submit(a, 1);
  q->Submit(b, 2);
  pollfd p{q->event_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 200), 0) << "a plugged queue's reads finished";
  std::vector<uint64_t> done;
  q->Reap(&done);
  EXPECT_TRUE(done.empty());
  q->Unplug();
  for (int i = 0; i < 500 && done.size() < 2; ++i) {
    ::poll(&p, 1, 10);
    q->Reap(&done);
  }
  std::sort(done.begin(), done.end());
  EXPECT_EQ(done, (std::vector<uint64_t>{1, 2}));
  for (const auto* ops : {&a, &b}) {
    for (const auto& op : *ops) EXPECT_TRUE(op.status.ok()) << op.status;
  }
  EXPECT_EQ(r.data()[4096 * 2 + 4095], static_cast<uint8_t>(9 % 251 + 1));
}

TEST(MemoryDeviceTest, ReadQueueGivesEveryBatchBackByTag) {
  MemoryDevice dev(64 * 4096);
  ASSERT_NO_FATAL_FAILURE(FillBlocks(dev, 64));
  ExpectQueueReadsEveryBatch(dev, 64);
}

// A queue's reads that the device holds up do not hold up the thread that submitted them.
TEST(FaultInjectionDeviceTest, StalledReadsDoNotBlockTheSubmitter) {
  MemoryDevice base(16 * 4096);
  FaultInjectionDevice dev(&base);
  ASSERT_NO_FATAL_FAILURE(FillBlocks(dev, 16));
  std::unique_ptr<ReadQueue> q = dev.NewReadQueue();
  AlignedBuffer r(4096);
  std::vector<BlockDevice::ReadOp> ops = {{.offset = 4096 * 3, .buf = r.data(), .len = 4096}};
  dev.StallReads();
  q->Submit(ops, 7);
  for (int i = 0; i < 500 && dev.stalled_read_count() == 0; ++i) ::usleep(2000);
  EXPECT_EQ(dev.stalled_read_count(), 1);
  std::vector<uint64_t> done;
  q->Reap(&done);
  EXPECT_TRUE(done.empty());
  dev.ReleaseStalledReads();
  for (int i = 0; i < 500 && done.empty(); ++i) {
    pollfd p{q->event_fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    q->Reap(&done);
  }
  ASSERT_EQ(done, std::vector<uint64_t>{7});
  ASSERT_TRUE(ops[0].status.ok()) << ops[0].status;
  EXPECT_EQ(r.data()[0], 4);
}

INSTANTIATE_TEST_SUITE_P(Engines, FileDeviceTest, ::testing::Values(IoEngine::kPread, IoEngine::kUring),
                         [](const auto& info) { return std::string(IoEngineName(info.param)); });

TEST(FileDeviceOpenTest, MissingFileWithoutSizeIsNotFound) {
  auto dev = FileDevice::Open({.path = TestPath("no_such_device")});
  EXPECT_EQ(dev.status().code(), absl::StatusCode::kNotFound);
}

TEST(FileDeviceOpenTest, DirectoryIsRefusedWithReason) {
  const char* dir = std::getenv("TEST_TMPDIR");
  auto dev = FileDevice::Open({.path = dir ? dir : "/var/tmp"});
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.status().message().find(dir ? dir : "/var/tmp"), std::string::npos) << dev.status();
}

TEST(FileDeviceOpenTest, EmptyFileWithoutSizeIsRefused) {
  std::string path = TestPath("empty_device");
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  auto dev = FileDevice::Open({.path = path});
  EXPECT_EQ(dev.status().code(), absl::StatusCode::kInvalidArgument) << dev.status();
}

TEST(FileDeviceOpenTest, ParseIoEngineRejectsUnknownNames) {
  EXPECT_EQ(*ParseIoEngine("uring"), IoEngine::kUring);
  EXPECT_EQ(*ParseIoEngine("pread"), IoEngine::kPread);
  EXPECT_EQ(ParseIoEngine("aio").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MemoryDeviceTest, EnforcesAlignmentLikeDirectIo) {
  MemoryDevice dev(1 << 20, 4096);
  AlignedBuffer b(4096);
  Fill(b, 0xAB);
  ASSERT_TRUE(dev.Write(4096, b.data(), 4096).ok());
  AlignedBuffer r(4096);
  ASSERT_TRUE(dev.Read(4096, r.data(), 4096).ok());
  EXPECT_EQ(r.data()[100], 0xAB);
  EXPECT_EQ(dev.Write(512, b.data(), 4096).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FaultInjectionDeviceTest, PowerCutDropsEveryUnsyncedWriteAndKeepsSyncedOnes) {
  MemoryDevice base(1 << 20, 512);
  FaultInjectionDevice dev(&base);
  AlignedBuffer a(4096, 512), b(4096, 512), r(4096, 512);
  Fill(a, 0xAA);
  Fill(b, 0xBB);
  ASSERT_TRUE(dev.Write(0, a.data(), 4096).ok());
  ASSERT_TRUE(dev.Sync().ok());
  ASSERT_TRUE(dev.Write(0, b.data(), 4096).ok());
  ASSERT_TRUE(dev.Write(8192, b.data(), 4096).ok());
  EXPECT_EQ(dev.unsynced_write_count(), 2u);
  ASSERT_TRUE(dev.SimulatePowerCut(FaultInjectionDevice::PowerCutMode::kDropUnsynced, 1).ok());
  // Powered off: everything fails until restart.
  EXPECT_FALSE(dev.Read(0, r.data(), 4096).ok());
  dev.Restart();
  ASSERT_TRUE(dev.Read(0, r.data(), 4096).ok());
  EXPECT_EQ(r.data()[0], 0xAA);
  EXPECT_EQ(r.data()[4095], 0xAA);
  ASSERT_TRUE(dev.Read(8192, r.data(), 4096).ok());
  EXPECT_EQ(r.data()[0], 0x00);
}

TEST(FaultInjectionDeviceTest, PowerCutTearsUnsyncedWritesAtSectorGranularity) {
  MemoryDevice base(1 << 20, 512);
  FaultInjectionDevice dev(&base);
  AlignedBuffer a(65536, 512), r(65536, 512);
  Fill(a, 0xCC);
  ASSERT_TRUE(dev.Write(0, a.data(), a.size()).ok());
  ASSERT_TRUE(dev.SimulatePowerCut(FaultInjectionDevice::PowerCutMode::kTearUnsynced, 42).ok());
  dev.Restart();
  ASSERT_TRUE(dev.Read(0, r.data(), r.size()).ok());
  int new_sectors = 0, old_sectors = 0;
  for (size_t s = 0; s < r.size(); s += 512) {
    bool all_new = true, all_old = true;
    for (size_t i = 0; i < 512; ++i) {
      all_new &= r.data()[s + i] == 0xCC;
      all_old &= r.data()[s + i] == 0x00;
    }
    ASSERT_TRUE(all_new || all_old) << "a sector is itself torn at " << s;
    new_sectors += all_new;
    old_sectors += all_old;
  }
  // 128 sectors, each kept with probability 1/2: both kinds appear.
  EXPECT_GT(new_sectors, 0);
  EXPECT_GT(old_sectors, 0);
}

TEST(FaultInjectionDeviceTest, FailNextAndPredicateReturnEio) {
  MemoryDevice base(1 << 20, 512);
  FaultInjectionDevice dev(&base);
  AlignedBuffer a(4096, 512);
  dev.FailNext(FaultInjectionDevice::Op::kWrite, 1);
  absl::Status s = dev.Write(0, a.data(), 4096);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("Input/output error"), std::string::npos) << s;
  EXPECT_TRUE(dev.Write(0, a.data(), 4096).ok());
  dev.SetFailurePredicate([](FaultInjectionDevice::Op op, uint64_t off, size_t) {
    return op == FaultInjectionDevice::Op::kRead && off >= 8192;
  });
  EXPECT_TRUE(dev.Read(0, a.data(), 4096).ok());
  EXPECT_FALSE(dev.Read(8192, a.data(), 4096).ok());
  dev.FailNext(FaultInjectionDevice::Op::kSync, 1);
  EXPECT_FALSE(dev.Sync().ok());
  EXPECT_EQ(dev.unsynced_write_count(), 1u) << "a failed sync must not forget unsynced writes";
}

}  // namespace
}  // namespace tmem::io
