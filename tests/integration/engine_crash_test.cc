// A real process runs the engine on a real O_DIRECT file and is killed with SIGKILL at a random
// moment; the next open must report an unclean stop and return no page at all. A clean stop in
// between keeps exactly the newest version of every handle that was not flushed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "server/io/file_device.h"
#include "server/log/segment_log.h"
#include "server/pool/pool_engine.h"

namespace tmem {
namespace {

std::string Helper() {
  const char* src = std::getenv("TEST_SRCDIR");
  return std::string(src ? src : ".") + "/tmem/tests/integration/crash_helper";
}

struct Paths {
  std::string device, meta;
};

Paths Fresh(const std::string& name) {
  std::string base = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  Paths p{base + "/cache.img", base + "/meta"};
  auto dev = io::FileDevice::Open({.path = p.device, .create_size_bytes = 96 << 20});
  EXPECT_TRUE(dev.ok()) << dev.status();
  EXPECT_TRUE(log::FormatLog(dev->get(), {}).ok());
  return p;
}

// Runs the helper; in "run" mode kills it with SIGKILL `delay_ms` after it printed "ready".
int RunHelper(const Paths& p, const char* mode, int delay_ms) {
  int out[2];
  if (pipe(out) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    execl(Helper().c_str(), "crash_helper", p.device.c_str(), p.meta.c_str(), mode, nullptr);
    _exit(127);
  }
  close(out[1]);
  if (std::string(mode) == "run") {
    char buf[16] = {};
    ssize_t n = read(out[0], buf, sizeof(buf) - 1);
    EXPECT_GT(n, 0) << "helper never became ready";
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(pid, SIGKILL);
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

struct Scan {
  int hits = 0, wrong = 0;
};

Scan ScanAll(pool::PoolEngine& e, pool::PoolId pool, uint64_t last_clean_i) {
  Scan s;
  std::vector<uint8_t> out(4096);
  for (uint64_t h = 0; h < 1000; ++h) {
    auto r = e.Get(pool, "file", h, out);
    EXPECT_TRUE(r.ok());
    if (!r.ok() || *r != pool::GetOutcome::kHit) continue;
    ++s.hits;
    uint64_t version, handle;
    std::memcpy(&version, out.data(), 8);
    std::memcpy(&handle, out.data() + 8, 8);
    // After the clean run, handle h holds version 2000 + h (its last put), unless flushed.
    if (handle != h || version != last_clean_i - 1000 + h || h < 100) ++s.wrong;
  }
  return s;
}

// Opens the engine on the files the helper used and scans every handle.
Scan Reopen(const Paths& p, bool* kept_pages) {
  auto dev = io::FileDevice::Open({.path = p.device});
  EXPECT_TRUE(dev.ok()) << dev.status();
  if (!dev.ok()) return {};
  auto e = pool::PoolEngine::Open({.device = dev->get(), .metadata_dir = p.meta});
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return {};
  *kept_pages = (*e)->kept_pages_from_previous_run();
  pool::Uuid u{};
  u[0] = 42;
  auto pool = (*e)->CreateSharedPool(u, 4096);
  EXPECT_TRUE(pool.ok());
  Scan s = pool.ok() ? ScanAll(**e, *pool, 3000) : Scan{};
  EXPECT_TRUE((*e)->Close().ok());
  return s;
}

TEST(EngineCrashTest, KillDuringPutsDropsEveryPageAndCleanStopKeepsNewestVersions) {
  Paths p = Fresh("crash");
  std::mt19937 rng(7);
  for (int round = 0; round < 4; ++round) {
    // A clean run: 3000 puts over 1000 handles, handles 0..99 flushed, clean close.
    int status = RunHelper(p, "clean", 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "clean helper status " << status;
    bool kept = false;
    Scan s = Reopen(p, &kept);
    EXPECT_TRUE(kept);
    EXPECT_EQ(s.wrong, 0) << "round " << round;
    EXPECT_EQ(s.hits, 900) << "every unflushed handle survives a clean stop";

    // A run killed with SIGKILL at a random moment.
    status = RunHelper(p, "run", static_cast<int>(rng() % 300));
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    s = Reopen(p, &kept);
    EXPECT_FALSE(kept);
    EXPECT_EQ(s.hits, 0) << "round " << round << ": a page survived an unclean stop";
  }
}

}  // namespace
}  // namespace tmem
