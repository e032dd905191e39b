// tmem-shimd's relay between the shim (in-process, the module's own core logic) and a real tmemd
// process: evicted pages come back, invalidations are never lost — also across a relay restart
// and a tmemd restart — and nothing stale is ever read.
#include "kshim/relay/relay.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "client/tmem_client.h"
#include "kshim/relay/fake_shim.h"
#include "tests/testing/process_util.h"

namespace tmem::kshim {
namespace {

using namespace std::chrono_literals;
using tmem::testing::Process;

FileKey Inode(uint64_t ino) {
  FileKey k{};
  std::memcpy(k.data(), &ino, sizeof(ino));
  return k;
}

std::vector<uint8_t> PageOf(uint64_t ino, uint64_t index, int version) {
  std::vector<uint8_t> p(4096);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(ino * 13 + index * 7 + version * 101 + i);
  return p;
}

// 1 on a hit with the expected page, 0 on a miss; a hit with other bytes fails the test.
int HitOn(FakeShim& shim, int pool, uint64_t ino, uint64_t index, int version) {
  std::vector<uint8_t> out(4096);
  if (!shim.Get(pool, Inode(ino), index, out)) return 0;
  EXPECT_EQ(out, PageOf(ino, index, version))
      << "inode " << ino << " page " << index << " is not version " << version << ": a stale or foreign page";
  return 1;
}

// Puts until a get of (ino, 0) hits: the relay and tmemd are both answering.
bool ReadyOn(FakeShim& shim, int pool, uint64_t ino) {
  for (int i = 0; i < 100; ++i) {
    shim.Put(pool, Inode(ino), 0, PageOf(ino, 0, 1));
    if (HitOn(shim, pool, ino, 0, 1)) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// One relay process's worth: a client and a Relay serving the shim on a thread.
class RunningRelay {
 public:
  // Plaintext as tenant "node-1", or with `tls` as the tenant its certificate names (`tenant`
  // empty) or naming `tenant`.
  RunningRelay(FakeShim& shim, int port, const client::TlsClientOptions& tls = {}, std::string tenant = "node-1") {
    client::ClientOptions o;
    o.servers = {"127.0.0.1:" + std::to_string(port)};
    o.call_timeout_ms = 300;
    o.reconnect_max_ms = 200;
    o.tls = tls;
    o.transport = "wire";  // tmem-shimd's pages travel on the page wire protocol
    auto c = client::TmemClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
    RelayOptions ro;
    ro.tenant = std::move(tenant);
    ro.wait_ms = 20;
    relay_ = std::make_unique<Relay>(client_.get(), ro);
    auto dev = shim.Open();
    EXPECT_TRUE(dev.ok()) << dev.status();
    device_ = std::move(*dev);
    thread_ = std::thread([this] { status_ = relay_->Serve(*device_, stop_); });
  }
  // Stops serving and detaches, as a killed relay's closed device does.
  ~RunningRelay() {
    stop_ = true;
    thread_.join();
    EXPECT_EQ(relay_->counters().attached.load(), 0u) << "a relay that stopped serving reports itself detached";
    device_.reset();
    EXPECT_TRUE(status_.ok()) << status_;
  }
  const RelayCounters& counters() const { return relay_->counters(); }
  const client::TmemClient& client() const { return *client_; }

 private:
  std::unique_ptr<client::TmemClient> client_;
  std::unique_ptr<Relay> relay_;
  std::unique_ptr<ShimDevice> device_;
  std::atomic<bool> stop_{false};
  absl::Status status_;
  std::thread thread_;
};

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = tmem::testing::FreePort();
    dir_ = tmem::testing::TmpPath("relay");
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Start();
  }
  void TearDown() override {
    if (tmemd_.pid > 0) {
      kill(tmemd_.pid, SIGKILL);
      tmem::testing::WaitExit(tmemd_);
    }
  }
  void Start() {
    tmemd_ = tmem::testing::Spawn(tmem::testing::Runfile("server/main/tmemd"),
                                  {"--device=" + dir_ + "/c.img", "--device-size=64M", "--metrics-listen=",
                                   "--listen=127.0.0.1:" + std::to_string(port_), "--shutdown-timeout-ms=2000"},
                                  "tmemd_" + std::to_string(++starts_) + ".log");
    for (int i = 0; i < 200 && !tmem::testing::PortOpen(port_); ++i) std::this_thread::sleep_for(25ms);
    ASSERT_TRUE(tmem::testing::PortOpen(port_)) << tmem::testing::ReadLog(tmemd_);
  }
  void StopCleanly() {
    kill(tmemd_.pid, SIGTERM);
    ASSERT_EQ(tmem::testing::WaitExit(tmemd_), 0) << tmem::testing::ReadLog(tmemd_);
    tmemd_.pid = -1;
  }
  int Hit(int pool, uint64_t ino, uint64_t index, int version) { return HitOn(shim_, pool, ino, index, version); }
  bool Ready(int pool, uint64_t ino) { return ReadyOn(shim_, pool, ino); }

  FakeShim shim_{64, 16};
  int port_ = 0;
  std::string dir_;
  Process tmemd_;
  int starts_ = 0;
};

TEST_F(RelayTest, EvictedPagesComeBackAndInvalidatedOnesNever) {
  int pool = shim_.InitFs(PoolUuid{1, 2, 3});
  ASSERT_GE(pool, 0);
  RunningRelay relay(shim_, port_);
  ASSERT_TRUE(Ready(pool, 999));
  for (uint64_t ino = 1; ino <= 4; ++ino) {
    for (uint64_t i = 0; i < 50; ++i) shim_.Put(pool, Inode(ino), i, PageOf(ino, i, 1));
    ASSERT_TRUE(shim_.WaitIdle());  // 50 puts fit the ring's 64 slots
  }
  EXPECT_EQ(shim_.Counters().puts_dropped_full, 0u);
  int hits = 0;
  for (uint64_t ino = 1; ino <= 4; ++ino) {
    for (uint64_t i = 0; i < 50; ++i) hits += Hit(pool, ino, i, 1);
  }
  EXPECT_EQ(hits, 200) << "every page put comes back";
  EXPECT_GT(relay.counters().batches.load(), 0u);
  EXPECT_GT(relay.client().counters().wire_streams_opened.load(), 0u) << "pages travel on the page wire protocol";
  EXPECT_EQ(relay.client().counters().wire_streams_opened.load(), relay.client().counters().streams_opened.load());
  EXPECT_LT(relay.counters().batches.load(), relay.counters().puts.load() + relay.counters().gets.load())
      << "runs of puts and gets travel as batches";

  shim_.InvalidatePage(pool, Inode(1), 7);
  EXPECT_EQ(Hit(pool, 1, 7, 1), 0);
  EXPECT_EQ(Hit(pool, 1, 8, 1), 1);
  shim_.InvalidateInode(pool, Inode(2));
  for (uint64_t i = 0; i < 50; ++i) EXPECT_EQ(Hit(pool, 2, i, 1), 0) << i;
  // Overwritten data: the newer page wins.
  shim_.Put(pool, Inode(3), 5, PageOf(3, 5, 2));
  EXPECT_EQ(Hit(pool, 3, 5, 2), 1);
  // Unmount: the private pool is destroyed in tmemd; a new filesystem starts empty.
  shim_.InvalidateFs(pool);
  for (int i = 0; i < 100 && relay.counters().pools_released.load() == 0; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(relay.counters().pools_released.load(), 1u);
  int again = shim_.InitFs(PoolUuid{9});
  EXPECT_EQ(Hit(again, 3, 5, 2), 0);
  EXPECT_EQ(shim_.Counters().bad_responses, 0u);
  EXPECT_EQ(relay.counters().bad_requests.load(), 0u);
}

TEST_F(RelayTest, SequentialGetsAreFetchedAheadAndAPrefetchedPageNeverOutlivesAnUpdate) {
  int pool = shim_.InitFs(PoolUuid{4});
  RunningRelay relay(shim_, port_);
  ASSERT_TRUE(Ready(pool, 999));
  for (uint64_t i = 0; i < 100; ++i) {
    shim_.Put(pool, Inode(11), i, PageOf(11, i, 1));
    if (i % 50 == 49) ASSERT_TRUE(shim_.WaitIdle());
  }
  int hits = 0;
  for (uint64_t i = 0; i < 100; ++i) hits += Hit(pool, 11, i, 1);
  EXPECT_EQ(hits, 100);
  EXPECT_GE(relay.counters().prefetch_hits.load(), 90u) << "a sequential read is fetched ahead";

  // Fetched ahead, then changed: the relay's copies must not be served.
  ASSERT_EQ(Hit(pool, 11, 0, 1), 1);
  ASSERT_EQ(Hit(pool, 11, 1, 1), 1);  // sequential: pages 2.. are fetched ahead now
  const uint64_t prefetched = relay.counters().prefetched.load();
  EXPECT_GT(prefetched, 0u);
  shim_.InvalidatePage(pool, Inode(11), 3);
  shim_.Put(pool, Inode(11), 4, PageOf(11, 4, 2));
  EXPECT_EQ(Hit(pool, 11, 2, 1), 1);
  EXPECT_EQ(Hit(pool, 11, 3, 1), 0) << "a prefetched copy outlived its invalidation";
  EXPECT_EQ(Hit(pool, 11, 4, 2), 1) << "a prefetched copy outlived a newer put";
  shim_.InvalidateInode(pool, Inode(11));
  for (uint64_t i = 5; i < 20; ++i)
    EXPECT_EQ(Hit(pool, 11, i, 1), 0) << "prefetched copy of page " << i << " outlived the inode's invalidation";

  // A shared pool (a cluster filesystem) is invalidated by other clients too: nothing is kept.
  int shared = shim_.InitFs(PoolUuid{6}, /*shared=*/true);
  for (uint64_t i = 0; i < 40; ++i) shim_.Put(shared, Inode(12), i, PageOf(12, i, 1));
  ASSERT_TRUE(shim_.WaitIdle());
  const uint64_t before = relay.counters().prefetched.load();
  for (uint64_t i = 0; i < 40; ++i) EXPECT_EQ(Hit(shared, 12, i, 1), 1);
  EXPECT_EQ(relay.counters().prefetched.load(), before);
}

// Several "CPUs" use the shim at once (each its own files): puts, gets and invalidations
// interleave in the ring, slots run out and are waited for; a get returns the last version put
// or misses, never an older or another file's page.
TEST_F(RelayTest, ConcurrentCallersNeverSeeAStalePage) {
  int pool = shim_.InitFs(PoolUuid{5});
  RunningRelay relay(shim_, port_);
  ASSERT_TRUE(Ready(pool, 999));
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0}, hits{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> out(4096);
      for (int round = 1; round <= 60; ++round) {
        const uint64_t ino = 100 + t;
        for (uint64_t i = 0; i < 8; ++i) shim_.Put(pool, Inode(ino), i, PageOf(ino, i, round));
        for (uint64_t i = 0; i < 8; ++i) {
          if (!shim_.Get(pool, Inode(ino), i, out)) continue;
          ++hits;
          if (out != PageOf(ino, i, round)) ++wrong;
        }
        if (round % 3 == 0) {
          shim_.InvalidateInode(pool, Inode(ino));
        } else {
          shim_.InvalidatePage(pool, Inode(ino), round % 8);
        }
        if (shim_.Get(pool, Inode(ino), round % 8, out)) ++wrong;  // just invalidated
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hits.load(), 0);
  EXPECT_EQ(shim_.Counters().bad_responses, 0u);
}

TEST_F(RelayTest, ARestartedRelayFindsThePagesAndReplaysWhatWasInvalidatedMeanwhile) {
  int pool = shim_.InitFs(PoolUuid{7, 7});
  {
    RunningRelay relay(shim_, port_);
    ASSERT_TRUE(Ready(pool, 999));
    for (uint64_t i = 0; i < 20; ++i) shim_.Put(pool, Inode(5), i, PageOf(5, i, 1));
    EXPECT_EQ(Hit(pool, 5, 19, 1), 1);
  }  // the relay goes away
  EXPECT_EQ(Hit(pool, 5, 1, 1), 0) << "no relay: a get misses at once";
  shim_.InvalidatePage(pool, Inode(5), 3);
  shim_.InvalidateInode(pool, Inode(6));
  shim_.Put(pool, Inode(5), 4, PageOf(5, 4, 2));  // dropped: the old version 1 stays in tmemd ...
  shim_.InvalidatePage(pool, Inode(5), 4);        // ... and this makes sure it is never read
  EXPECT_EQ(shim_.Recorded(), 3u);
  // A filesystem mounted while no relay runs gets its pool when one attaches.
  int late = shim_.InitFs(PoolUuid{8});
  ASSERT_GE(late, 0);

  RunningRelay relay(shim_, port_);  // a new process: a new client, the same pools by UUID
  ASSERT_TRUE(Ready(late, 1));
  EXPECT_EQ(Hit(pool, 5, 3, 1), 0) << "an invalidation made while detached was lost";
  EXPECT_EQ(Hit(pool, 5, 4, 1), 0);
  EXPECT_EQ(Hit(pool, 5, 2, 1), 1) << "the restarted relay finds the pool's pages";
  EXPECT_EQ(shim_.Recorded(), 0u);
  EXPECT_EQ(relay.counters().pools_announced.load(), 2u);
  EXPECT_EQ(relay.counters().attached.load(), 1u);
}

TEST_F(RelayTest, ATmemdRestartCostsMissesNeverStalePagesEvenIfTheRelayGoesToo) {
  int pool = shim_.InitFs(PoolUuid{3});
  auto relay = std::make_unique<RunningRelay>(shim_, port_);
  ASSERT_TRUE(Ready(pool, 999));
  for (uint64_t i = 0; i < 10; ++i) shim_.Put(pool, Inode(1), i, PageOf(1, i, 1));
  for (uint64_t i = 0; i < 10; ++i) shim_.Put(pool, Inode(2), i, PageOf(2, i, 1));
  ASSERT_EQ(Hit(pool, 1, 9, 1), 1);

  // tmemd stops cleanly (it keeps its pages); gets miss within the timeouts, puts are dropped.
  StopCleanly();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Hit(pool, 1, 1, 1), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << "a get must not hang on a dead tmemd";
  // An invalidation that cannot reach it is deferred by the relay's client ...
  shim_.InvalidatePage(pool, Inode(1), 2);
  for (int i = 0; i < 100 && shim_.Counters().invalidations_deferred == 0; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(shim_.Counters().invalidations_deferred, 1u);
  // ... and while tmemd is back, the same relay replays it before anything else.
  Start();
  ASSERT_TRUE(Ready(pool, 998));
  EXPECT_EQ(Hit(pool, 1, 2, 1), 0) << "stale page after a deferred invalidation";
  EXPECT_EQ(Hit(pool, 1, 3, 1), 1) << "the clean restart kept the other pages";

  // Again, but this time the relay goes away before tmemd is back: the module flushes the pool
  // whole when the next relay attaches, since the deferred invalidation died with the relay.
  StopCleanly();
  shim_.InvalidatePage(pool, Inode(2), 4);
  for (int i = 0; i < 100 && shim_.Counters().invalidations_deferred < 2; ++i) std::this_thread::sleep_for(20ms);
  ASSERT_EQ(shim_.Counters().invalidations_deferred, 2u);
  relay.reset();
  EXPECT_EQ(shim_.PoolState(pool).flush, TSF_FLUSH_NEEDED);
  Start();
  relay = std::make_unique<RunningRelay>(shim_, port_);
  ASSERT_TRUE(Ready(pool, 997));
  EXPECT_EQ(Hit(pool, 2, 4, 1), 0) << "stale page after a deferred invalidation and a relay restart";
  EXPECT_EQ(Hit(pool, 2, 5, 1), 0) << "the whole pool was flushed";
  EXPECT_EQ(shim_.Counters().pool_flushes_done, 1u);
}

}  // namespace
}  // namespace tmem::kshim

namespace tmem::kshim {
namespace {

// Two nodes' relays over mutual TLS, each proving its node's tenant with its certificate: each
// node's pages come back to it, and neither can read or plant the other's, even with the same
// pool UUIDs (shared pools are keyed by (tenant, UUID)).
class RelayTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = tmem::testing::FreePort();
    dir_ = tmem::testing::TmpPath("relay_tls");
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    const std::string certs = dir_ + "/certs";
    const std::string make =
        tmem::testing::Runfile("scripts/make-certs.sh") + " " + certs + " node-1 node-2 2>/dev/null";
    ASSERT_EQ(std::system(make.c_str()), 0) << make;
    std::ofstream(dir_ + "/tmemd.yaml") << "device: {path: " << dir_ << "/c.img, size: 64M}\n"
                                        << "listen: [\"127.0.0.1:" << port_ << "\"]\n"
                                        << "metrics_listen: \"\"\n"
                                        << "tls: {cert: " << certs << "/server.crt, key: " << certs
                                        << "/server.key, ca: " << certs << "/ca.crt}\n"
                                        << "tenants: [{name: node-1}, {name: node-2}]\n";
    tmemd_ = tmem::testing::Spawn(tmem::testing::Runfile("server/main/tmemd"), {"--config=" + dir_ + "/tmemd.yaml"},
                                  "tmemd_tls.log");
    for (int i = 0; i < 200 && !tmem::testing::PortOpen(port_); ++i) std::this_thread::sleep_for(25ms);
    ASSERT_TRUE(tmem::testing::PortOpen(port_)) << tmem::testing::ReadLog(tmemd_);
    for (const char* n : {"node-1", "node-2"}) {
      client::TlsClientOptions t;
      t.ca = certs + "/ca.crt";
      t.cert = certs + "/" + n + ".crt";
      t.key = certs + "/" + n + ".key";
      tls_[n] = t;
    }
  }
  void TearDown() override {
    if (tmemd_.pid > 0) {
      kill(tmemd_.pid, SIGKILL);
      tmem::testing::WaitExit(tmemd_);
    }
  }
  static int Hit(FakeShim& shim, int pool, uint64_t ino, uint64_t index, int version) {
    return HitOn(shim, pool, ino, index, version);
  }
  static bool Ready(FakeShim& shim, int pool, uint64_t ino) { return ReadyOn(shim, pool, ino); }

  int port_ = 0;
  std::string dir_;
  Process tmemd_;
  std::map<std::string, client::TlsClientOptions> tls_;
};

TEST_F(RelayTlsTest, EachNodeGetsItsOwnPagesAndNoNodeReadsOrPlantsAnothersPages) {
  FakeShim shim1{64, 16}, shim2{64, 16};
  const PoolUuid same{4, 2};  // both nodes mount a filesystem with this UUID
  int p1 = shim1.InitFs(same), p2 = shim2.InitFs(same);
  ASSERT_GE(p1, 0);
  ASSERT_GE(p2, 0);
  RunningRelay node1(shim1, port_, tls_["node-1"], "");
  ASSERT_TRUE(Ready(shim1, p1, 999)) << tmem::testing::ReadLog(tmemd_);
  for (uint64_t i = 0; i < 16; ++i) shim1.Put(p1, Inode(5), i, PageOf(5, i, 1));
  EXPECT_EQ(Hit(shim1, p1, 5, 15, 1), 1) << "node-1's pages come back over mTLS";
  {
    // node-2, with its own certificate, asks for the same UUID and inode: it finds nothing of
    // node-1's, and what it puts never reaches node-1.
    RunningRelay node2(shim2, port_, tls_["node-2"], "");
    ASSERT_TRUE(Ready(shim2, p2, 998));
    int found = 0;
    for (uint64_t i = 0; i < 16; ++i) found += Hit(shim2, p2, 5, i, 1);
    EXPECT_EQ(found, 0) << "node-2 read node-1's cached file data";
    for (uint64_t i = 0; i < 16; ++i) shim2.Put(p2, Inode(5), i, PageOf(5, i, 2));
    EXPECT_EQ(Hit(shim2, p2, 5, 3, 2), 1);
  }
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_EQ(Hit(shim1, p1, 5, i, 1), 1) << "page " << i << " of node-1 was replaced or lost";
  }
  {
    // A relay with node-2's certificate that names node-1 as its tenant is refused: its puts
    // are dropped and never land in node-1's pool.
    FakeShim shim3{64, 16};
    int p3 = shim3.InitFs(same);
    RunningRelay impostor(shim3, port_, tls_["node-2"], "node-1");
    for (int round = 0; round < 20; ++round) {
      for (uint64_t i = 0; i < 16; ++i) shim3.Put(p3, Inode(5), i, PageOf(5, i, 3));
      std::this_thread::sleep_for(10ms);
    }
    std::vector<uint8_t> out(4096);
    EXPECT_FALSE(shim3.Get(p3, Inode(5), 0, out)) << "a relay naming another tenant was served";
  }
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_EQ(Hit(shim1, p1, 5, i, 1), 1) << "page " << i << " of node-1 was planted by another node";
  }
  const std::string log = tmem::testing::ReadLog(tmemd_);
  EXPECT_NE(log.find("is not the caller's tenant 'node-2'"), std::string::npos) << log;
}

}  // namespace
}  // namespace tmem::kshim
