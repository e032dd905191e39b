// Membership from DNS: libtmemclient with `dns:NAME:PORT` against a real DNS server (dnsmasq,
// started here on loopback) whose records change during the test, and four tmemd processes on
// 127.0.0.1 to 127.0.0.4. A node removed from DNS stops receiving objects and only its objects
// move; a node added receives only its share; no stale page is read across either, also when a
// node comes back holding older versions of objects that were put elsewhere meanwhile.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "client/tmem_client.h"
#include "tests/testing/process_util.h"

namespace tmem {
namespace {

using namespace tmem::testing;
using namespace std::chrono_literals;

constexpr int kObjects = 600;
constexpr char kName[] = "tmemd.membership.test";

std::vector<uint8_t> PageOf(int object, int version) {
  std::vector<uint8_t> p(4096);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(object * 7 + version * 131 + i);
  return p;
}
std::string Obj(int i) { return "obj" + std::to_string(i); }

// A TCP port free on every 127.0.0.x (the four servers share it, as a Service's port).
int SharedFreePort() { return FreePort(); }

class MembershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/sbin/dnsmasq", X_OK) != 0) GTEST_SKIP() << "dnsmasq is not installed (scripts/setup.sh)";
    dir_ = TmpPath("membership");
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    port_ = SharedFreePort();
    for (int i = 1; i <= 4; ++i) {
      metrics_.push_back(FreePort());
      const std::string ip = "127.0.0." + std::to_string(i);
      servers_.push_back(
          Spawn(Runfile("server/main/tmemd"),
                {"--device=" + dir_ + "/d" + std::to_string(i) + ".img", "--device-size=64M",
                 "--listen=" + ip + ":" + std::to_string(port_), "--wire-listen=" + ip + ":0",
                 "--metrics-listen=127.0.0.1:" + std::to_string(metrics_.back()), "--shutdown-timeout-ms=2000"},
                "tmemd" + std::to_string(i) + ".log"));
    }
    for (int i = 0; i < 4; ++i) {
      bool up = false;
      for (int k = 0; k < 200 && !up; ++k) {
        up = HttpGet(metrics_[i], "/metrics").find("tmem_") != std::string::npos;
        if (!up) std::this_thread::sleep_for(25ms);
      }
      ASSERT_TRUE(up) << ReadLog(servers_[i]);
    }
    dns_port_ = FreePort();
    WriteHosts({1, 2, 3});
    dns_ = Spawn("/usr/sbin/dnsmasq",
                 {"--keep-in-foreground", "--port=" + std::to_string(dns_port_), "--listen-address=127.0.0.1",
                  "--bind-interfaces", "--no-resolv", "--no-hosts", "--addn-hosts=" + dir_ + "/hosts",
                  "--local=/test/",  // answered here: no AAAA is an answer, not a failure to forward
                  "--local-ttl=0", "--conf-file=/dev/null", "--pid-file=", "--user=root", "--log-facility=-"},
                 "dnsmasq.log");
    std::this_thread::sleep_for(300ms);
    ASSERT_EQ(waitpid(dns_.pid, nullptr, WNOHANG), 0) << "dnsmasq exited: " << ReadLog(dns_);
    client::ClientOptions o;
    o.servers = {"dns:" + std::string(kName) + ":" + std::to_string(port_)};
    o.dns_server = "127.0.0.1:" + std::to_string(dns_port_);
    o.dns_refresh_ms = 100;
    o.call_timeout_ms = 2000;
    o.transport = "wire";
    absl::StatusOr<std::unique_ptr<client::TmemClient>> c;
    for (int k = 0; k < 50; ++k) {  // dnsmasq may take a moment to answer
      c = client::TmemClient::Create(o);
      if (c.ok()) break;
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(c.ok()) << c.status() << "\n" << ReadLog(dns_);
    client_ = std::move(*c);
  }
  void TearDown() override {
    client_.reset();
    for (Process* p : {&dns_}) {
      if (p->pid > 0) kill(p->pid, SIGKILL), WaitExit(*p);
    }
    for (Process& p : servers_) {
      if (p.pid > 0) kill(p.pid, SIGKILL), WaitExit(p);
    }
  }
  void WriteHosts(const std::vector<int>& nodes) {
    std::ofstream out(dir_ + "/hosts.new");
    for (int n : nodes) out << "127.0.0." << n << " " << kName << "\n";
    out.close();
    std::filesystem::rename(dir_ + "/hosts.new", dir_ + "/hosts");
    if (dns_.pid > 0) kill(dns_.pid, SIGHUP);  // dnsmasq reads its hosts files again
  }
  // Waits until the client's members are exactly `nodes` (it re-resolves every 100 ms).
  void WaitMembers(const std::vector<int>& nodes) {
    std::vector<std::string> want;
    for (int n : nodes) want.push_back("127.0.0." + std::to_string(n) + ":" + std::to_string(port_));
    for (int k = 0; k < 100; ++k) {
      if (client_->members() == want) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "the client's members did not become the DNS records";
  }
  // The node (1..4) each object lives on now.
  std::vector<int> Owners(client::PoolRef pool) {
    std::vector<int> owner;
    const std::vector<std::string> m = client_->members();
    for (int i = 0; i < kObjects; ++i) {
      const std::string& a = m[client_->ServerFor(pool, Obj(i))];
      owner.push_back(a[8] - '0');  // "127.0.0.N:PORT"
    }
    return owner;
  }
  double PagesPut(int node) {
    std::smatch m;
    const std::string text = HttpGet(metrics_[node - 1], "/metrics");
    static const std::regex re("\ntmem_wire_pages_put_total ([0-9.e+]+)");
    return std::regex_search(text, m, re) ? std::stod(m[1]) : -1;
  }
  void PutAll(client::PoolRef pool, int version) {
    for (int i = 0; i < kObjects; ++i) {
      const auto page = PageOf(i, version);
      ASSERT_TRUE(client_->Put(pool, Obj(i), 0, page).ok());
    }
    ASSERT_EQ(client_->counters().puts_dropped.load(), 0u);
  }
  // Per version got (0: miss), for every object.
  std::map<int, int> GetAll(client::PoolRef pool, std::vector<int>* versions = nullptr) {
    std::map<int, int> count;
    std::vector<uint8_t> out(4096);
    for (int i = 0; i < kObjects; ++i) {
      auto hit = client_->Get(pool, Obj(i), 0, out);
      EXPECT_TRUE(hit.ok());
      int v = 0;
      if (hit.ok() && *hit) {
        v = -1;  // not any version of this object
        for (int k = 1; k <= 3; ++k) {
          if (out == PageOf(i, k)) v = k;
        }
      }
      ++count[v];
      if (versions != nullptr) versions->push_back(v);
    }
    return count;
  }

  std::string dir_;
  int port_ = 0, dns_port_ = 0;
  std::vector<int> metrics_;
  std::vector<Process> servers_;
  Process dns_;
  std::unique_ptr<client::TmemClient> client_;
};

TEST_F(MembershipTest, NodesLeavingAndJoiningMoveOnlyTheirShareAndNoStalePageIsEverRead) {
  ASSERT_EQ(client_->members().size(), 3u);
  std::array<uint8_t, 16> uuid{};
  uuid.fill(9);
  auto pool = client_->CreateSharedPool(uuid, 4096);
  ASSERT_TRUE(pool.ok()) << pool.status();
  const std::vector<int> at3 = Owners(*pool);
  PutAll(*pool, 1);
  EXPECT_EQ(GetAll(*pool)[1], kObjects) << "every object's version 1 is there";

  // --- node 3 leaves DNS: only its objects move; it receives nothing more ---
  WriteHosts({1, 2});
  WaitMembers({1, 2});
  const std::vector<int> at2 = Owners(*pool);
  int moved = 0, moved_wrongly = 0, on3 = 0;
  for (int i = 0; i < kObjects; ++i) {
    on3 += at3[i] == 3;
    if (at2[i] != at3[i]) {
      ++moved;
      if (at3[i] != 3) ++moved_wrongly;
    }
    EXPECT_NE(at2[i], 3);
  }
  EXPECT_EQ(moved, on3) << "exactly node 3's objects moved";
  EXPECT_EQ(moved_wrongly, 0);
  const double node3_puts = PagesPut(3);
  PutAll(*pool, 2);
  EXPECT_EQ(PagesPut(3), node3_puts) << "a node removed from DNS receives no object";
  std::map<int, int> got = GetAll(*pool);
  EXPECT_EQ(got[2], kObjects) << "version 2 everywhere; misses " << got[0] << ", version 1 " << got[1];

  // --- node 4 joins: it receives about a third, taken from nodes 1 and 2 only ---
  WriteHosts({1, 2, 4});
  WaitMembers({1, 2, 4});
  const std::vector<int> at4 = Owners(*pool);
  int to4 = 0, other_moves = 0;
  for (int i = 0; i < kObjects; ++i) {
    if (at4[i] == at2[i]) continue;
    if (at4[i] == 4) {
      ++to4;
    } else {
      ++other_moves;
    }
  }
  EXPECT_EQ(other_moves, 0) << "objects move only to the node that joined";
  // 1/3 of 600 is 200; the binomial's standard deviation is about 12.
  EXPECT_GT(to4, kObjects / 3 - 60);
  EXPECT_LT(to4, kObjects / 3 + 60);
  std::printf("node 4 joined: %d of %d objects moved to it (1/3 = %d)\n", to4, kObjects, kObjects / 3);
  got = GetAll(*pool);
  EXPECT_EQ(got[1], 0) << "no stale page";
  EXPECT_EQ(got[-1], 0);
  PutAll(*pool, 3);

  // --- node 3 comes back holding version 1 of the objects that were its own ---
  WriteHosts({1, 2, 3, 4});
  WaitMembers({1, 2, 3, 4});
  const std::vector<int> back = Owners(*pool);
  int back_to_3 = 0;
  for (int i = 0; i < kObjects; ++i) back_to_3 += back[i] == 3;
  ASSERT_GT(back_to_3, 0);
  std::vector<int> versions;
  got = GetAll(*pool, &versions);
  int stale = 0;
  for (int i = 0; i < kObjects; ++i) stale += versions[i] == 1 || versions[i] == 2;
  EXPECT_EQ(stale, 0) << "a node that comes back never serves the older versions it kept (" << back_to_3
                      << " objects are its own again)";
  EXPECT_EQ(got[-1], 0);
  EXPECT_GT(client_->counters().moved_object_flushes.load(), 0u);
  EXPECT_GE(client_->counters().membership_changes.load(), 3u);
  PutAll(*pool, 3);
  got = GetAll(*pool);
  EXPECT_EQ(got[3], kObjects) << "after new puts every object hits, on its new node too";
}

}  // namespace
}  // namespace tmem
