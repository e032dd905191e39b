#include "server/wire/wire_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/pool/pool_test_util.h"
#include "server/wire/wire_codec.h"

namespace tmem::wire {
namespace {

using pool::testing::EngineHarness;
using pool::testing::MakePage;

// A blocking loopback client of raw bytes.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  }
  ~Client() { ::close(fd_); }
  void Send(const std::vector<uint8_t>& b) {
    size_t at = 0;
    while (at < b.size()) {
      const ssize_t n = ::send(fd_, b.data() + at, b.size() - at, MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      at += static_cast<size_t>(n);
    }
  }
  // The next reply, or nullopt if the connection ended (or nothing came within `timeout_ms`).
  std::optional<Reply> Next(int timeout_ms = 5000) {
    while (true) {
      Reply r;
      if (TakeReply(std::span<const uint8_t>(buf_).subspan(pos_), &r)) {
        body_.assign(r.body.begin(), r.body.end());
        pos_ += r.bytes;
        r.body = body_;
        return r;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) != 1) return std::nullopt;
      uint8_t chunk[1 << 16];
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) return std::nullopt;
      buf_.insert(buf_.end(), chunk, chunk + n);
    }
  }
  // True when the server closed the connection within `timeout_ms`.
  bool ClosedWithin(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return false;
    uint8_t b;
    return ::recv(fd_, &b, 1, MSG_PEEK) <= 0;
  }
  void Hello() {
    std::vector<uint8_t> b;
    AppendHello(b, 0);
    Send(b);
    auto r = Next();
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->header.status, 0u);
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  std::vector<uint8_t> body_;
};

class WireServerTest : public ::testing::Test {
 protected:
  void Start(const std::function<void(WireServerOptions&)>& tune = nullptr) {
    engine_ = &harness_.Open();
    WireServerOptions o;
    o.listeners.push_back({"127.0.0.1:0", false});
    o.threads = 2;
    o.engine = engine_;
    o.tenants = &tenants_;
    if (tune) tune(o);
    auto s = WireServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  int port() const { return server_->ports()[0]; }

  EngineHarness harness_{32, 128 << 10};
  pool::PoolEngine* engine_ = nullptr;
  trust::TenantTable tenants_;
  std::unique_ptr<WireServer> server_;
};

TEST_F(WireServerTest, PipelinedRequestsWaitingForRepliesToDrainAreAllAnswered) {
  Start([](WireServerOptions& o) { o.limits.max_pending_reply_bytes = 64 << 10; });
  auto id = engine_->CreateSharedPool(pool::Uuid{3}, 4096, "local");
  ASSERT_TRUE(id.ok());
  for (uint64_t i = 0; i < 32; ++i) ASSERT_TRUE(engine_->Put(*id, "o", i, MakePage(4096, *id, "o", i, 1)).ok());
  Client c(port());
  c.Hello();
  // 64 gets of 32 hits (128 KiB each) in one send: far past the pending bound, all in the
  // server's input at once. Nothing more will arrive from the client: once replies drain, the
  // server must go on with what it already holds.
  std::vector<uint8_t> b;
  for (uint64_t r = 1; r <= 64; ++r) {
    const size_t at = BeginRequest(b, Verb::kGet, r, *id, 32);
    for (uint64_t i = 0; i < 32; ++i) AppendEntry(b, "o", i);
    FinishRequest(b, at);
  }
  c.Send(b);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server stops at its bound
  for (uint64_t r = 1; r <= 64; ++r) {
    auto reply = c.Next();
    ASSERT_TRUE(reply.has_value()) << "reply " << r << " never came";
    EXPECT_EQ(reply->header.request_id, r);
    EXPECT_EQ(reply->header.status, 0u);
    EXPECT_EQ(reply->body.size(), GetResultBytes(32) + 32 * 4096u);
  }
}

TEST_F(WireServerTest, ABurstOfConnectionsIsSpreadOverTheLoops) {
  Start([](WireServerOptions& o) { o.threads = 4; });
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 16; ++i) clients.push_back(std::make_unique<Client>(port()));
  for (auto& c : clients) c->Hello();  // every connection accepted and served
  const std::vector<int64_t> by_loop = server_->connections_by_loop();
  ASSERT_EQ(by_loop.size(), 4u);
  int64_t total = 0;
  for (int64_t n : by_loop) {
    total += n;
    EXPECT_GE(n, 3) << "a loop got too few of 16 connections";
    EXPECT_LE(n, 5) << "a loop got too many of 16 connections";
  }
  EXPECT_EQ(total, 16);
}

TEST_F(WireServerTest, BeforeHelloOnlyHelloIsReadAndALargeBodyIsNeverWaitedFor) {
  Start();
  Client c(port());
  std::vector<uint8_t> b;
  BeginRequest(b, Verb::kPut, 4, 1, 256, 65536);
  const uint32_t body = 256 * (40 + 65536);
  std::memcpy(b.data() + offsetof(RequestHeader, body_bytes), &body, 4);
  c.Send(b);  // a header that announces 16 MiB, and no body
  auto r = c.Next(2000);
  ASSERT_TRUE(r.has_value()) << "the server waited for a body it should refuse";
  EXPECT_EQ(r->header.status, static_cast<uint32_t>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r->header.flags, kReplyClosing);
  EXPECT_TRUE(c.ClosedWithin(2000));
}

TEST_F(WireServerTest, ARefusedRequestsBodyIsSkippedAsItArrivesAndTheConnectionGoesOn) {
  Start();
  auto id = engine_->CreatePool(4096, "local");
  Client c(port());
  c.Hello();
  // Verb 42 with a 1 MiB body, sent in pieces after its answer came.
  std::vector<uint8_t> b;
  BeginRequest(b, static_cast<Verb>(42), 7, *id, 0);
  const uint32_t body = 1 << 20;
  std::memcpy(b.data() + offsetof(RequestHeader, body_bytes), &body, 4);
  c.Send(b);
  auto r = c.Next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->header.request_id, 7u);
  EXPECT_EQ(r->header.status, static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  for (int k = 0; k < 16; ++k) c.Send(std::vector<uint8_t>(body / 16, 0xee));
  std::vector<uint8_t> put;
  const size_t at = BeginRequest(put, Verb::kPut, 8, *id, 1, 4096);
  AppendEntry(put, "o", 1);
  const auto page = MakePage(4096, *id, "o", 1, 1);
  put.insert(put.end(), page.begin(), page.end());
  FinishRequest(put, at);
  c.Send(put);
  r = c.Next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->header.request_id, 8u);
  EXPECT_EQ(r->header.status, 0u);
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(*engine_->Get(*id, "o", 1, out), pool::GetOutcome::kHit);
}

TEST_F(WireServerTest, ATenantPastItsConnectionsIsRefusedAtHello) {
  Start([](WireServerOptions& o) { o.max_connections_per_tenant = 2; });
  std::optional<Client> a(std::in_place, port());
  Client b(port()), c(port());
  a->Hello();
  b.Hello();
  std::vector<uint8_t> h;
  AppendHello(h, 0);
  c.Send(h);
  auto r = c.Next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->header.status, static_cast<uint32_t>(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(c.ClosedWithin(2000));
  // A closed connection gives its place back.
  a.reset();
  for (int i = 0; i < 50; ++i) {
    Client d(port());
    d.Send(h);
    auto rd = d.Next();
    if (rd.has_value() && rd->header.status == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL() << "a closed connection's place was not given back";
}

TEST_F(WireServerTest, APeerThatStopsHalfwayThroughARequestIsClosedWhenIdle) {
  Start([](WireServerOptions& o) { o.idle_timeout_ms = 300; });
  Client c(port());
  c.Hello();
  std::vector<uint8_t> b;
  BeginRequest(b, Verb::kFlushPool, 1, 1, 0);
  b.resize(20);  // part of a header
  c.Send(b);
  EXPECT_TRUE(c.ClosedWithin(3000));
}

TEST_F(WireServerTest, PastMaxConnectionsANewConnectionIsClosedAtOnce) {
  Start([](WireServerOptions& o) { o.max_connections = 2; });
  Client a(port()), b(port());
  a.Hello();
  b.Hello();
  Client c(port());
  EXPECT_TRUE(c.ClosedWithin(2000));
  EXPECT_EQ(server_->connections_open(), 2);
}

}  // namespace
}  // namespace tmem::wire
