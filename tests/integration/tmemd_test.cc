// tmemd as a real process on loopback: start, serve, SIGTERM (clean stop, pages kept), SIGKILL
// (unclean stop, pages dropped, pools kept), and the refusals to start, each naming its cause.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "proto/tmem_clients.h"
#include "tests/testing/process_util.h"

namespace tmem {
namespace {

using testing::FreePort;
using testing::HttpGet;
using testing::PortOpen;
using testing::ReadLog;
using testing::WaitExit;
using Daemon = testing::Process;

Daemon Start(const std::vector<std::string>& args, const std::string& log_name) {
  return testing::Spawn(testing::Runfile("server/main/tmemd"), args, log_name);
}

class TmemdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TmpPath("tmemd_" + std::to_string(::getpid()) + "_" +
                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    port_ = FreePort();
    metrics_port_ = FreePort();
  }
  std::vector<std::string> Args() {
    return {"--device=" + dir_ + "/cache.img", "--device-size=64M", "--listen=127.0.0.1:" + std::to_string(port_),
            "--metrics-listen=127.0.0.1:" + std::to_string(metrics_port_), "--shutdown-timeout-ms=3000"};
  }
  // Waits until the daemon answers ServerInfo; returns its instance id (0 on timeout).
  uint64_t WaitServing() {
    // Connect only once the port accepts, and retry fast: gRPC's default reconnect backoff
    // (1 s, growing) would otherwise dominate the test's run time.
    for (int i = 0; i < 400 && !PortOpen(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ::grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
    channel_ =
        ::grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), ::grpc::InsecureChannelCredentials(), args);
    pool_ = tmem::v1::PagePool::NewStub(channel_);
    admin_ = tmem::v1::Admin::NewStub(channel_);
    for (int i = 0; i < 200; ++i) {
      ::grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
      tmem::v1::ServerInfoResponse info;
      if (admin_->ServerInfo(&ctx, tmem::v1::ServerInfoRequest(), &info).ok()) return info.instance_id();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return 0;
  }
  uint32_t SharedPool() {
    ::grpc::ClientContext ctx;
    tmem::v1::CreateSharedPoolRequest req;
    req.set_uuid(std::string(16, 'U'));
    tmem::v1::CreatePoolResponse resp;
    EXPECT_TRUE(pool_->CreateSharedPool(&ctx, req, &resp).ok());
    return resp.pool_id();
  }
  void PutAll(uint32_t pool, int n) {
    ::grpc::ClientContext ctx;
    tmem::v1::PutPagesRequest req;
    req.set_pool_id(pool);
    for (int i = 0; i < n; ++i) {
      auto* p = req.add_pages();
      p->mutable_handle()->set_object("file");
      p->mutable_handle()->set_index(i);
      p->set_data(std::string(4096, static_cast<char>('a' + i % 26)));
    }
    tmem::v1::PutPagesResponse resp;
    ASSERT_TRUE(pool_->PutPages(&ctx, req, &resp).ok());
  }
  int CountHits(uint32_t pool, int n) {
    ::grpc::ClientContext ctx;
    tmem::v1::GetPagesRequest req;
    req.set_pool_id(pool);
    for (int i = 0; i < n; ++i) {
      auto* h = req.add_handles();
      h->set_object("file");
      h->set_index(i);
    }
    tmem::v1::GetPagesResponse resp;
    EXPECT_TRUE(pool_->GetPages(&ctx, req, &resp).ok());
    int hits = 0;
    for (int i = 0; i < resp.results_size(); ++i) {
      if (!resp.results(i).hit()) continue;
      ++hits;
      EXPECT_EQ(resp.results(i).data(), std::string(4096, static_cast<char>('a' + i % 26))) << i;
    }
    return hits;
  }

  std::string dir_;
  int port_ = 0, metrics_port_ = 0;
  std::shared_ptr<::grpc::Channel> channel_;
  std::unique_ptr<tmem::v1::PagePoolClient> pool_;
  std::unique_ptr<tmem::v1::AdminClient> admin_;
};

TEST_F(TmemdTest, CleanStopKeepsPagesAndKillDropsThem) {
  Daemon d = Start(Args(), "run1.log");
  const uint64_t first = WaitServing();
  ASSERT_GT(first, 0u) << ReadLog(d);
  uint32_t pool = SharedPool();
  PutAll(pool, 50);
  EXPECT_EQ(CountHits(pool, 50), 50);
  const std::string metrics = HttpGet(metrics_port_, "/metrics");
  EXPECT_NE(metrics.find("tmem_pool_puts_total{pool=\"" + std::to_string(pool) + "\",kind=\"shared\"} 50"),
            std::string::npos)
      << metrics.substr(0, 2000);

  kill(d.pid, SIGTERM);
  int status = WaitExit(d);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << ReadLog(d);
  EXPECT_NE(ReadLog(d).find("stopped cleanly"), std::string::npos);

  Daemon d2 = Start(Args(), "run2.log");
  ASSERT_EQ(WaitServing(), first + 1) << ReadLog(d2);
  EXPECT_EQ(SharedPool(), pool) << "the shared pool keeps its id";
  EXPECT_EQ(CountHits(pool, 50), 50) << "a clean stop keeps the pages";

  kill(d2.pid, SIGKILL);
  WaitExit(d2);
  Daemon d3 = Start(Args(), "run3.log");
  ASSERT_EQ(WaitServing(), first + 2) << ReadLog(d3);
  EXPECT_EQ(SharedPool(), pool) << "pool definitions survive a kill";
  EXPECT_EQ(CountHits(pool, 50), 0) << "no page survives an unclean stop";
  kill(d3.pid, SIGINT);
  status = WaitExit(d3);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadLog(d3);
}

TEST_F(TmemdTest, RefusesToStartAndSaysWhy) {
  auto refused = [&](std::vector<std::string> args, const std::string& log, const std::string& want) {
    Daemon d = Start(args, log);
    int status = WaitExit(d);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "started anyway: " << want;
    EXPECT_NE(ReadLog(d).find(want), std::string::npos) << "want '" << want << "' in:\n" << ReadLog(d);
  };
  const std::string port = "--listen=127.0.0.1:" + std::to_string(port_);
  const std::string no_metrics = "--metrics-listen=";

  // A foreign device, and nothing written to it.
  {
    std::ofstream(dir_ + "/foreign.img") << std::string(1 << 20, 'F');
    refused({"--device=" + dir_ + "/foreign.img", port, no_metrics}, "foreign.log", "foreign data, not a tmem log");
    std::ifstream in(dir_ + "/foreign.img");
    std::string back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(back, std::string(1 << 20, 'F'));
  }
  // Another segment size than asked for.
  {
    Daemon d = Start({"--device=" + dir_ + "/seg.img", "--device-size=64M", "--segment-size=2M", port, no_metrics},
                     "seg1.log");
    ASSERT_GT(WaitServing(), 0u) << ReadLog(d);
    kill(d.pid, SIGTERM);
    WaitExit(d);
    refused({"--device=" + dir_ + "/seg.img", "--segment-size=1M", port, no_metrics}, "seg2.log",
            "has 2097152-byte segments but 1048576 were asked for");
  }
  // A device path that cannot be created.
  refused({"--device=" + dir_ + "/no/such/dir/cache.img", "--device-size=64M", port, no_metrics}, "path.log",
          "No such file or directory");
  // A device that does not exist and no size to create it.
  refused({"--device=" + dir_ + "/absent.img", port, no_metrics}, "absent.log", "give --device-size");
  // A port in use (by a socket this test holds).
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd, 1);
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    const std::string taken = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    refused({"--device=" + dir_ + "/p.img", "--device-size=64M", "--listen=" + taken, no_metrics}, "port.log",
            "cannot listen on " + taken + ": Address already in use");
    refused({"--device=" + dir_ + "/p.img", "--device-size=64M", port, "--metrics-listen=" + taken}, "mport.log",
            "cannot serve metrics on " + taken);
    ::close(fd);
  }
  // Bad command lines exit 2.
  {
    Daemon d = Start({"--devise=/x"}, "flags.log");
    int status = WaitExit(d);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    EXPECT_NE(ReadLog(d).find("unknown flag --devise"), std::string::npos) << ReadLog(d);
  }
}

}  // namespace
}  // namespace tmem
