// One pool spread over three tmemd processes by libtmemclient: kill one and calls still succeed
// (its pages miss within the timeout); restart it and the client notices the new instance and
// never gets a stale page — also when the server kept its pages over a clean restart while a
// flush could not reach it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "client/tmem_client.h"
#include "tests/testing/process_util.h"

namespace tmem {
namespace {

using namespace tmem::testing;

std::vector<uint8_t> PageFor(const std::string& object, uint64_t index, int version) {
  std::vector<uint8_t> p(4096);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(object.size() * 31 + index * 7 + version + i);
  return p;
}

// Run over each transport: the page wire protocol (transport "wire": a server without a wire port
// would be unreachable, so the wire is what is tested) and gRPC Session streams.
class ShardingTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      ports_.push_back(FreePort());
      dirs_.push_back(TmpPath("shard" + std::to_string(i)));
      std::filesystem::remove_all(dirs_[i]);
      std::filesystem::create_directories(dirs_[i]);
      procs_.push_back(StartServer(i));
    }
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(WaitOpen(i)) << ReadLog(procs_[i]);
    ASSERT_NO_FATAL_FAILURE(NewClient(500));
  }
  // client_ becomes a new client of the three servers, its calls bounded by `call_timeout_ms`.
  void NewClient(int64_t call_timeout_ms) {
    client::ClientOptions o;
    for (int p : ports_) o.servers.push_back("127.0.0.1:" + std::to_string(p));
    o.call_timeout_ms = call_timeout_ms;
    o.transport = GetParam();
    auto c = client::TmemClient::Create(o);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  void TearDown() override {
    for (auto& p : procs_) {
      if (p.pid > 0) {
        kill(p.pid, SIGKILL);
        WaitExit(p);
      }
    }
  }
  Process StartServer(int i) {
    return Spawn(Runfile("server/main/tmemd"),
                 {"--device=" + dirs_[i] + "/c.img", "--device-size=64M",
                  "--metrics-listen=", "--listen=127.0.0.1:" + std::to_string(ports_[i]), "--shutdown-timeout-ms=2000"},
                 "shard" + std::to_string(i) + "_" + std::to_string(++starts_) + ".log");
  }
  bool WaitOpen(int i) {
    for (int k = 0; k < 200; ++k) {
      if (PortOpen(ports_[i])) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }
  // The first object named `prefix` + a number that lives on server `i`.
  std::string ObjectOn(client::PoolRef pool, size_t i, const std::string& prefix) {
    for (int k = 0;; ++k) {
      if (client_->ServerFor(pool, prefix + std::to_string(k)) == i) return prefix + std::to_string(k);
    }
  }
  // Puts and gets a probe page on server `i` until it hits (the channel may still be in its
  // reconnect backoff, during which calls fail fast); false after 5 s.
  bool Reachable(client::PoolRef pool, size_t i) {
    const std::string probe = ObjectOn(pool, i, "probe-");
    std::vector<uint8_t> out(4096);
    for (int k = 0; k < 100; ++k) {
      EXPECT_TRUE(client_->Put(pool, probe, 0, PageFor(probe, 0, 1)).ok());
      auto r = client_->Get(pool, probe, 0, out);
      if (r.ok() && *r) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  int Hit(client::PoolRef pool, const std::string& object, uint64_t index, int version) {
    std::vector<uint8_t> out(4096);
    auto r = client_->Get(pool, object, index, out);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || !*r) return 0;
    EXPECT_EQ(out, PageFor(object, index, version)) << object << "/" << index << " is not version " << version;
    return 1;
  }

  std::vector<int> ports_;
  std::vector<std::string> dirs_;
  std::vector<Process> procs_;
  int starts_ = 0;
  std::unique_ptr<client::TmemClient> client_;
};

TEST_P(ShardingTest, ADeadServerCostsMissesAndARestartedOneNeverServesStalePages) {
  std::array<uint8_t, 16> uuid{};
  uuid[0] = 7;
  auto pool = client_->CreateSharedPool(uuid, 4096);
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::vector<std::string> objects;
  std::vector<int> per_server(3, 0);
  for (int o = 0; o < 60; ++o) {
    objects.push_back("inode-" + std::to_string(o));
    per_server[client_->ServerFor(*pool, objects.back())]++;
    for (uint64_t i = 0; i < 3; ++i)
      ASSERT_TRUE(client_->Put(*pool, objects.back(), i, PageFor(objects.back(), i, 1)).ok());
  }
  for (int s = 0; s < 3; ++s) EXPECT_GT(per_server[s], 5) << "rendezvous hashing left server " << s << " idle";
  int hits = 0;
  for (const auto& o : objects) hits += Hit(*pool, o, 0, 1);
  EXPECT_EQ(hits, 60);

  // Server 1 dies: its pages miss quickly, the others still hit, puts still "succeed".
  kill(procs_[1].pid, SIGKILL);
  WaitExit(procs_[1]);
  procs_[1].pid = -1;
  int on_dead = 0, alive_hits = 0, alive = 0;
  for (const auto& o : objects) {
    const auto t0 = std::chrono::steady_clock::now();
    int h = Hit(*pool, o, 0, 1);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (client_->ServerFor(*pool, o) == 1) {
      EXPECT_EQ(h, 0);
      EXPECT_LT(ms, 2000) << "a dead server must cost a bounded miss";
      ++on_dead;
      EXPECT_TRUE(client_->Put(*pool, o, 9, PageFor(o, 9, 1)).ok());
    } else {
      alive_hits += h;
      ++alive;
    }
  }
  EXPECT_EQ(alive_hits, alive);
  EXPECT_GT(on_dead, 0);
  EXPECT_GT(client_->counters().puts_dropped.load(), 0u);

  // It comes back after an unclean stop: its old pages are gone, never returned stale.
  procs_[1] = StartServer(1);
  ASSERT_TRUE(WaitOpen(1)) << ReadLog(procs_[1]);
  ASSERT_TRUE(Reachable(*pool, 1)) << "the client did not reconnect to the restarted server: " << ReadLog(procs_[1])
                                   << " puts dropped " << client_->counters().puts_dropped.load()
                                   << " unreachable gets " << client_->counters().gets_unreachable.load();
  for (const auto& o : objects) {
    if (client_->ServerFor(*pool, o) != 1) continue;
    EXPECT_EQ(Hit(*pool, o, 0, 1), 0) << o;
    ASSERT_TRUE(client_->Put(*pool, o, 0, PageFor(o, 0, 2)).ok());
    EXPECT_EQ(Hit(*pool, o, 0, 2), 1) << "the restarted server serves new puts";
  }
  EXPECT_GE(client_->counters().restarts_seen.load(), 1u);

  // Server 2 stops cleanly (it keeps its pages) while a flush for one of its objects cannot reach
  // it: the flush is replayed before anything else, so that page never comes back.
  std::string flushed, kept;
  for (const auto& o : objects) {
    if (client_->ServerFor(*pool, o) != 2) continue;
    (flushed.empty() ? flushed : kept) = o;
    if (!kept.empty()) break;
  }
  ASSERT_FALSE(kept.empty());
  kill(procs_[2].pid, SIGTERM);
  ASSERT_EQ(WaitExit(procs_[2]), 0) << ReadLog(procs_[2]);
  procs_[2].pid = -1;
  ASSERT_TRUE(client_->FlushObject(*pool, flushed).ok());
  EXPECT_GE(client_->counters().flushes_deferred.load(), 1u);
  procs_[2] = StartServer(2);
  ASSERT_TRUE(WaitOpen(2)) << ReadLog(procs_[2]);
  ASSERT_TRUE(Reachable(*pool, 2)) << "the client did not reconnect to the restarted server";
  EXPECT_EQ(Hit(*pool, kept, 1, 1), 1) << "a clean restart keeps the pages";
  for (uint64_t i = 0; i < 3; ++i) EXPECT_EQ(Hit(*pool, flushed, i, 1), 0) << "stale page after a deferred flush";
  EXPECT_GE(client_->counters().flushes_replayed.load(), 1u);
}

// A client that restarts (a relay process, say) joins its shared pool again by UUID. A flush it
// makes while that pool's server is down must still reach the pages the earlier client put there
// once the server is back — it must not be dropped because this client had not reached the pool
// on that server yet.
TEST_P(ShardingTest, AFlushDeferredByANewClientReachesPagesAnEarlierClientPut) {
  std::array<uint8_t, 16> uuid{};
  uuid[0] = 42;
  auto earlier = client_->CreateSharedPool(uuid, 4096, "node-a");
  ASSERT_TRUE(earlier.ok()) << earlier.status();
  const std::string object = ObjectOn(*earlier, 0, "f");
  ASSERT_TRUE(client_->Put(*earlier, object, 1, PageFor(object, 1, 1)).ok());
  ASSERT_TRUE(client_->Put(*earlier, object, 2, PageFor(object, 2, 1)).ok());
  ASSERT_EQ(Hit(*earlier, object, 1, 1), 1);

  // Server 0 stops cleanly (it keeps its pages); a new client joins the pool and flushes a page.
  kill(procs_[0].pid, SIGTERM);
  ASSERT_EQ(WaitExit(procs_[0]), 0) << ReadLog(procs_[0]);
  procs_[0].pid = -1;
  ASSERT_NO_FATAL_FAILURE(NewClient(500));
  auto pool = client_->CreateSharedPool(uuid, 4096, "node-a");
  ASSERT_TRUE(pool.ok()) << pool.status();
  ASSERT_EQ(client_->ServerFor(*pool, object), 0u) << "a shared pool hashes the same in every client";
  ASSERT_TRUE(client_->FlushPage(*pool, object, 1).ok());
  EXPECT_EQ(client_->counters().flushes_deferred.load(), 1u);

  procs_[0] = StartServer(0);
  ASSERT_TRUE(WaitOpen(0)) << ReadLog(procs_[0]);
  std::vector<uint8_t> out(4096);
  absl::StatusOr<bool> got;
  for (int k = 0; k < 100; ++k) {  // until the server answers (the first calls may still miss fast)
    got = client_->Get(*pool, object, 2, out);
    ASSERT_TRUE(got.ok());
    if (*got) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(*got) << "the clean restart kept the page that was not flushed";
  EXPECT_EQ(Hit(*pool, object, 1, 1), 0) << "the deferred flush was lost: a stale page came back";
  EXPECT_GE(client_->counters().flushes_replayed.load(), 1u);
}

// Many threads share one client: their batches are split by server and stream, larger ones
// also at the wire limit, and all travel pipelined on a few long-lived Session streams.
TEST_P(ShardingTest, BatchesFromManyThreadsArePipelinedOnAFewStreams) {
  // Its own client, with a timeout that leaves room for slow (sanitizer) builds: this test is
  // about batching, not about timeouts.
  ASSERT_NO_FATAL_FAILURE(NewClient(20000));
  auto pool = client_->CreatePool(4096);
  ASSERT_TRUE(pool.ok()) << pool.status();
  constexpr int kThreads = 8, kPages = 600;  // 600 > 256: every batch is split on the wire
  std::vector<std::thread> threads;
  std::atomic<int> hits{0}, wrong{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::vector<uint8_t>> pages;
      std::vector<std::string> objects;
      for (int i = 0; i < kPages; ++i) objects.push_back("t" + std::to_string(t) + "-obj" + std::to_string(i % 40));
      std::vector<client::TmemClient::PagePut> puts;
      for (int i = 0; i < kPages; ++i) pages.push_back(PageFor(objects[i], i, t));
      for (int i = 0; i < kPages; ++i) puts.push_back({objects[i], static_cast<uint64_t>(i), pages[i]});
      EXPECT_TRUE(client_->PutPages(*pool, puts).ok());
      std::vector<std::vector<uint8_t>> outs(kPages, std::vector<uint8_t>(4096));
      std::vector<client::TmemClient::PageGet> gets;
      for (int i = 0; i < kPages; ++i) gets.push_back({objects[i], static_cast<uint64_t>(i), outs[i]});
      auto got = client_->GetPages(*pool, gets);
      ASSERT_TRUE(got.ok()) << got.status();
      for (int i = 0; i < kPages; ++i) {
        if (!(*got)[i]) continue;
        ++hits;
        if (outs[i] != pages[i]) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(hits.load(), kThreads * kPages) << "a private pool hits once per put";
  EXPECT_EQ(client_->counters().streams_opened.load(), 3u * 2) << "streams are opened once and shared";
  EXPECT_EQ(client_->counters().wire_streams_opened.load(), GetParam() == "wire" ? 3u * 2 : 0u)
      << "pages travel on the transport asked for";
  EXPECT_EQ(client_->counters().puts_dropped.load(), 0u);

  // Bad batches are refused whole, before anything is sent.
  std::vector<uint8_t> small(512), page(4096);
  std::vector<client::TmemClient::PagePut> bad = {{"a", 0, page}, {"b", 1, small}};
  EXPECT_EQ(client_->PutPages(*pool, bad).code(), absl::StatusCode::kInvalidArgument);
  bad = {{"", 0, page}};
  EXPECT_EQ(client_->PutPages(*pool, bad).code(), absl::StatusCode::kInvalidArgument);
  std::vector<client::TmemClient::PageGet> bad_get = {{"a", 0, small}};
  EXPECT_EQ(client_->GetPages(*pool, bad_get).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->PutPages(*pool + 100, {}).code(), absl::StatusCode::kNotFound);
}

// Gets of a server with no put unanswered leave as one request, on the caller's own stream; a get
// that follows an unanswered put of its handle still travels behind it and sees the new page.
TEST_P(ShardingTest, GetsTakeTheCallersStreamOnlyWhenNoPutCanBeOvertaken) {
  client::ClientOptions o;
  o.servers = {"127.0.0.1:" + std::to_string(ports_[0])};
  o.call_timeout_ms = 20000;
  o.transport = GetParam();
  o.streams_per_server = 8;
  auto c = client::TmemClient::Create(o);
  ASSERT_TRUE(c.ok()) << c.status();
  client_ = std::move(*c);
  auto pool = client_->CreatePool(4096);
  ASSERT_TRUE(pool.ok()) << pool.status();

  // 32 pages over 32 objects (spread over the 8 streams by their keys), all answered: one request.
  std::vector<std::vector<uint8_t>> pages, outs(32, std::vector<uint8_t>(4096));
  std::vector<client::TmemClient::PagePut> puts;
  std::vector<client::TmemClient::PageGet> gets;
  for (int i = 0; i < 32; ++i) pages.push_back(PageFor("spread" + std::to_string(i), 0, 1));
  std::vector<std::string> objects;
  for (int i = 0; i < 32; ++i) objects.push_back("spread" + std::to_string(i));
  for (int i = 0; i < 32; ++i) puts.push_back({objects[i], 0, pages[i]});
  for (int i = 0; i < 32; ++i) gets.push_back({objects[i], 0, outs[i]});
  ASSERT_TRUE(client_->PutPages(*pool, puts).ok());
  client_->WaitForPuts();
  const uint64_t before = client_->counters().get_requests.load();
  auto got = client_->GetPages(*pool, gets);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(client_->counters().get_requests.load() - before, 1u) << "the batch left as one request";
  for (int i = 0; i < 32; ++i) {
    EXPECT_TRUE((*got)[i]) << i;
    EXPECT_EQ(outs[i], pages[i]) << i;
  }

  // A put of 256 pages (one request, which tmemd takes a while to store) left unanswered, then at
  // once a get of its last page: it must not overtake the put on another connection. Every round
  // puts a new version, so an overtaking get finds the older one (or none).
  std::vector<std::vector<uint8_t>> big(256);
  std::vector<client::TmemClient::PagePut> batch(256);
  std::vector<uint8_t> out(4096);
  int stale = 0;
  for (int round = 1; round <= 60; ++round) {
    const std::string object = "ordered" + std::to_string(round % 7);
    for (uint64_t i = 0; i < 256; ++i) {
      big[i] = PageFor(object, i, round);
      batch[i] = {object, i, big[i]};
    }
    ASSERT_TRUE(client_->PutPages(*pool, batch).ok());
    auto hit = client_->Get(*pool, object, 255, out);
    ASSERT_TRUE(hit.ok()) << hit.status();
    if (!*hit || out != big[255]) ++stale;
  }
  EXPECT_EQ(stale, 0) << "gets overtook the puts before them";
  EXPECT_EQ(client_->counters().puts_dropped.load(), 0u);
}

// A server that stops answering without closing its connections (SIGSTOP) costs each call at
// most the call timeout; once it resumes it is used again.
TEST_P(ShardingTest, AHungServerCostsBoundedMissesAndIsUsedAgainWhenItResumes) {
  auto pool = client_->CreatePool(4096);
  ASSERT_TRUE(pool.ok());
  const std::string on0 = ObjectOn(*pool, 0, "h");
  ASSERT_TRUE(client_->Put(*pool, on0, 1, PageFor(on0, 1, 1)).ok());
  kill(procs_[0].pid, SIGSTOP);
  // kill() returns before every thread has stopped: on a loaded machine a request sent at once
  // could still be answered. Wait until the process is seen stopped.
  for (int k = 0; k < 200; ++k) {
    std::ifstream stat("/proc/" + std::to_string(procs_[0].pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto paren = all.rfind(')');
    if (paren != std::string::npos && paren + 2 < all.size() && all[paren + 2] == 'T') break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(Hit(*pool, on0, 1, 1), 0);
    EXPECT_TRUE(client_->Put(*pool, on0, 2, PageFor(on0, 2, 1)).ok());
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(ms, 2 * 500 + 400) << "a get and a put to a hung server must each cost at most the timeout";
  }
  EXPECT_GT(client_->counters().gets_unreachable.load(), 0u);
  kill(procs_[0].pid, SIGCONT);
  ASSERT_TRUE(Reachable(*pool, 0)) << "the client did not come back to the resumed server";
  ASSERT_TRUE(client_->Put(*pool, on0, 3, PageFor(on0, 3, 4)).ok());
  EXPECT_EQ(Hit(*pool, on0, 3, 4), 1);
}

// While a server is down, calls fail fast and streams are re-opened no more often than the
// doubling backoff allows.
TEST_P(ShardingTest, ReconnectsToADownServerBackOff) {
  auto pool = client_->CreatePool(4096);
  ASSERT_TRUE(pool.ok());
  std::vector<std::string> on0;
  for (int k = 0; on0.size() < 20; ++k) {
    if (client_->ServerFor(*pool, "d" + std::to_string(k)) == 0) on0.push_back("d" + std::to_string(k));
  }
  for (const auto& o : on0) ASSERT_TRUE(client_->Put(*pool, o, 0, PageFor(o, 0, 1)).ok());
  client_->WaitForPuts();  // stored before the crash (none to flush afterwards)
  kill(procs_[0].pid, SIGKILL);
  WaitExit(procs_[0]);
  procs_[0].pid = -1;
  const uint64_t opened = client_->counters().stream_attempts.load();
  const auto t0 = std::chrono::steady_clock::now();
  int calls = 0;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1500)) {
    for (const auto& o : on0) {
      EXPECT_EQ(Hit(*pool, o, 0, 1), 0);
      ++calls;
    }
  }
  const uint64_t reopened = client_->counters().stream_attempts.load() - opened;
  EXPECT_GT(calls, 200) << "calls to a down server must fail fast";
  // Two streams, each re-opened after 50, 100, 200, 400, 800 ms at most (plus the first).
  EXPECT_LE(reopened, 2u * 6) << "reconnects did not back off";
  EXPECT_GE(reopened, 2u) << "the client stopped trying";
  procs_[0] = StartServer(0);
  ASSERT_TRUE(WaitOpen(0)) << ReadLog(procs_[0]);
  ASSERT_TRUE(Reachable(*pool, 0));
}

// put-put-get across a server's absence: a put that cannot reach its server (stopped cleanly, so
// it comes back with the older version) must not let that older version be read afterwards.
TEST_P(ShardingTest, APutThatCannotArriveLeavesNoOlderVersionToBeRead) {
  std::array<uint8_t, 16> uuid{};
  uuid[0] = 43;
  auto pool = client_->CreateSharedPool(uuid, 4096, "node-a");
  ASSERT_TRUE(pool.ok()) << pool.status();
  const std::string object = ObjectOn(*pool, 1, "d");
  ASSERT_TRUE(client_->Put(*pool, object, 0, PageFor(object, 0, 1)).ok());
  ASSERT_EQ(Hit(*pool, object, 0, 1), 1);
  kill(procs_[1].pid, SIGTERM);
  ASSERT_EQ(WaitExit(procs_[1]), 0) << ReadLog(procs_[1]);
  procs_[1].pid = -1;
  const uint64_t dropped = client_->counters().puts_dropped.load();
  ASSERT_TRUE(client_->Put(*pool, object, 0, PageFor(object, 0, 2)).ok());
  client_->WaitForPuts();  // puts are answered later: settle it
  EXPECT_EQ(client_->counters().puts_dropped.load(), dropped + 1);
  procs_[1] = StartServer(1);
  ASSERT_TRUE(WaitOpen(1)) << ReadLog(procs_[1]);
  ASSERT_TRUE(Reachable(*pool, 1)) << "the client did not reconnect to the restarted server";
  EXPECT_EQ(Hit(*pool, object, 0, 1), 0) << "version 1 was read after version 2 was put";
  EXPECT_GE(client_->counters().flushes_replayed.load(), 1u);
}

TEST_P(ShardingTest, DestroyPoolRemovesItFromEveryServer) {
  auto pool = client_->CreatePool(4096);
  ASSERT_TRUE(pool.ok());
  for (int o = 0; o < 30; ++o) {
    const std::string obj = "x" + std::to_string(o);
    ASSERT_TRUE(client_->Put(*pool, obj, 0, PageFor(obj, 0, 1)).ok());
  }
  ASSERT_TRUE(client_->DestroyPool(*pool).ok());
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(client_->Get(*pool, "x1", 0, out).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Put(*pool, "x1", 0, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->DestroyPool(*pool).code(), absl::StatusCode::kNotFound);
  // A fresh pool starts empty everywhere.
  auto again = client_->CreatePool(4096);
  ASSERT_TRUE(again.ok());
  int hits = 0;
  for (int o = 0; o < 30; ++o) hits += Hit(*again, "x" + std::to_string(o), 0, 1);
  EXPECT_EQ(hits, 0);
}

INSTANTIATE_TEST_SUITE_P(Transports, ShardingTest, ::testing::Values("wire", "grpc"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace tmem
