// The page index on a full filesystem (a 4 MiB tmpfs in the test's own mount namespace): RocksDB's
// background flush fails with ENOSPC, the page service turns not serving and puts are dropped and
// counted; once space is freed, DB::Resume() (retried with backoff) brings it back.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "server/grpc/health_monitor.h"
#include "server/pool/pool_test_util.h"

namespace tmem::grpc_service {
namespace {

using pool::testing::EngineHarness;
using pool::testing::MakePage;

// Fills the filesystem of `path` until ENOSPC; returns the bytes written.
uint64_t Fill(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return 0;
  std::vector<char> chunk(4096, 'x');
  uint64_t written = 0;
  while (true) {
    const ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n <= 0) break;
    written += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return written;
}

TEST(IndexFullDiskTest, ABackgroundErrorStopsThePageServiceUntilSpaceIsFreedAndRocksDbResumes) {
  // Before any RocksDB thread exists, so that all of them see the mount.
  if (::unshare(CLONE_NEWNS) != 0) GTEST_SKIP() << "no mount namespace here: " << std::strerror(errno);
  ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << std::strerror(errno);
  const std::string mnt = pool::testing::FreshDir("fulldisk");
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=4m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs: " << std::strerror(errno);
  }
  {
    EngineHarness h;
    h.set_customize([&](pool::EngineOptions& o) {
      o.metadata_dir = mnt + "/index";
      o.index_write_buffer_bytes = 64 << 10;
      o.index_cache_entries = 0;
      o.index_resume_backoff_min_ms = 20;
      o.index_resume_backoff_max_ms = 200;
    });
    pool::PoolEngine& e = h.Open();
    const pool::PoolId p = *e.CreatePool(4096);
    io::MonitoredDevice watched(&h.device());
    HealthService health;
    const HealthLimits limits{.interval_ms = 10};
    HealthMonitor monitor(&health, limits);
    monitor.AddService("tmem.v1.PagePool", PagePoolProbes(&e, &watched, limits));
    const auto page_status = [&] {
      monitor.CheckNow();
      for (const auto& s : health.Snapshot()) {
        if (s.service == "tmem.v1.PagePool") return s.serving ? std::string("SERVING") : s.reason;
      }
      return std::string("absent");
    };
    EXPECT_EQ(page_status(), "SERVING");

    ASSERT_GT(Fill(mnt + "/filler"), 0u);
    // Puts until a memtable flush meets the full filesystem.
    uint64_t i = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (e.page_index_error().ok() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      ASSERT_TRUE(e.Put(p, "obj", i % 50000, MakePage(4096, p, "obj", i % 50000, i)).ok());
      ++i;
    }
    ASSERT_FALSE(e.page_index_error().ok()) << "no background error after " << i << " puts";
    const std::string reason = page_status();
    EXPECT_NE(reason.find("page index (RocksDB) background error"), std::string::npos) << reason;
    EXPECT_NE(reason.find("No space"), std::string::npos) << reason;
    // Meanwhile puts are dropped, counted, and stored nowhere; and gets miss, because a dropped
    // put could not remove its handle's older version: "obj" 0's last stored put is older than
    // the put just dropped, and must not be returned now or after the resume (put-put-get).
    const uint64_t dropped = e.counters().puts_dropped_index_error.load();
    ASSERT_TRUE(e.Put(p, "late", 0, MakePage(4096, p, "late", 0, 1)).ok());
    EXPECT_EQ(e.counters().puts_dropped_index_error.load(), dropped + 1);
    std::vector<uint8_t> out(4096);
    auto g = e.Get(p, "late", 0, out);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(*g, pool::GetOutcome::kMiss);
    ASSERT_TRUE(e.Put(p, "obj", 0, MakePage(4096, p, "obj", 0, 999999)).ok());  // dropped
    g = e.Get(p, "obj", 0, out);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(*g, pool::GetOutcome::kMiss) << "a get returned a version older than a dropped put";

    // Space comes back: the resumer's next try succeeds, and so do puts.
    std::filesystem::remove(mnt + "/filler");
    const auto t1 = std::chrono::steady_clock::now();
    while (!e.page_index_error().ok() && std::chrono::steady_clock::now() - t1 < std::chrono::seconds(30)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(e.page_index_error().ok()) << e.page_index_error();
    EXPECT_GE(e.page_index().resumes(), 1u);
    EXPECT_EQ(page_status(), "SERVING");
    g = e.Get(p, "obj", 0, out);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(*g, pool::GetOutcome::kMiss) << "after the resume, the handle of the dropped put still misses";
    ASSERT_TRUE(e.Put(p, "late", 0, MakePage(4096, p, "late", 0, 2)).ok());
    g = e.Get(p, "late", 0, out);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(*g, pool::GetOutcome::kHit);
    EXPECT_EQ(pool::testing::VersionOf(out, p, "late", 0), 2);
  }
  ::umount2(mnt.c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace tmem::grpc_service
