// TlsSession against a GnuTLS client: a memory-mode one (the wire server's): after the handshake its
// TLS 1.3 records are TlsRecords', fed in pieces of any size, read into buffers of any size,
// across key updates, up to the client's close_notify; with tls.records: gnutls the same bytes
// go through GnuTLS's record layer. And a session over a socket (NBD's) on tmem's records.
#include <gnutls/gnutls.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/trust/tls_context.h"

namespace tmem::trust {
namespace {

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 167 + seed) & 0xff);
  return s;
}

// Equal bytes, or where they part (never the bytes themselves: they are long).
testing::AssertionResult Same(const std::string& got, const std::string& want) {
  if (got == want) return testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                     << ", first difference at " << i;
}

// A TLS context with one PSK, a socket pair, and a GnuTLS client with that key on one end (the
// server's end is fds[0]).
struct PskSocketPair {
  explicit PskSocketPair(const std::string& name, const std::string& records = "tmem") {
    const std::string psk = testing::TempDir() + "/" + name + ".psk";
    std::FILE* f = std::fopen(psk.c_str(), "w");
    EXPECT_NE(f, nullptr);
    std::fputs("tenant:000102030405060708090a0b0c0d0e0f\n", f);
    std::fclose(f);
    TlsOptions o;
    o.psk_file = psk;
    o.records = records;
    auto c = TlsContext::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    context = std::move(*c);
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    gnutls_psk_allocate_client_credentials(&creds);
    const unsigned char key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const gnutls_datum_t k{const_cast<unsigned char*>(key), sizeof(key)};
    gnutls_psk_set_client_credentials(creds, "tenant", &k, GNUTLS_PSK_KEY_RAW);
    gnutls_init(&client, GNUTLS_CLIENT);
    gnutls_priority_set_direct(client, "NORMAL:+ECDHE-PSK:+PSK", nullptr);
    gnutls_credentials_set(client, GNUTLS_CRD_PSK, creds);
    gnutls_transport_set_int(client, fds[1]);
  }
  ~PskSocketPair() {
    gnutls_deinit(client);
    gnutls_psk_free_client_credentials(creds);
    close(fds[0]);
    close(fds[1]);
  }
  // The client's side of the handshake (run it on a thread of its own).
  int ClientHandshake() {
    int rc;
    do {
      rc = gnutls_handshake(client);
    } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
    return rc;
  }

  std::unique_ptr<TlsContext> context;
  int fds[2] = {-1, -1};
  gnutls_psk_client_credentials_t creds = nullptr;
  gnutls_session_t client = nullptr;
};

class MemorySessionTest : public testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    pair_ = std::make_unique<PskSocketPair>("keys", GetParam());
    context_ = pair_->context.get();
    fds_[0] = pair_->fds[0];
    fds_[1] = pair_->fds[1];
    client_ = pair_->client;

    auto s = context_->AcceptInMemory(&out_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    int rc = 0;
    std::thread t([&] { rc = pair_->ClientHandshake(); });
    bool done = false;
    while (!done) {
      Flush();
      const std::vector<uint8_t> in = Read(/*wait_ms=*/5000);
      ASSERT_FALSE(in.empty()) << "the handshake stalled";
      server_->Feed(in.data(), in.size());
      auto d = server_->Handshake(*context_);
      ASSERT_TRUE(d.ok()) << d.status();
      done = *d;
    }
    Flush();
    t.join();
    ASSERT_EQ(rc, 0) << gnutls_strerror(rc);
  }
  void TearDown() override {
    server_.reset();
    pair_.reset();
  }

  // The session's output to the client's socket.
  void Flush() {
    size_t done = 0;
    while (done < out_.size()) {
      const ssize_t n = write(fds_[0], out_.data() + done, out_.size() - done);
      ASSERT_GT(n, 0);
      done += static_cast<size_t>(n);
    }
    out_.clear();
  }
  // What the client sent (waiting up to `wait_ms` for the first bytes).
  std::vector<uint8_t> Read(int wait_ms) {
    std::vector<uint8_t> got;
    pollfd p{fds_[0], POLLIN, 0};
    while (poll(&p, 1, got.empty() ? wait_ms : 50) > 0) {
      uint8_t buf[65536];
      const ssize_t n = read(fds_[0], buf, sizeof(buf));
      if (n <= 0) break;
      got.insert(got.end(), buf, buf + n);
    }
    return got;
  }
  // Feeds `in` in pieces of `piece` bytes and decrypts into buffers of `room` bytes after each.
  std::string FeedAndDecrypt(const std::vector<uint8_t>& in, size_t piece, size_t room, bool* closed = nullptr) {
    std::string got;
    std::vector<uint8_t> buf(room);
    for (size_t at = 0; at < in.size(); at += piece) {
      server_->Feed(in.data() + at, std::min(piece, in.size() - at));
      while (true) {
        const ssize_t n = server_->Decrypt(buf.data(), buf.size());
        if (n < 0 && closed != nullptr) *closed = true;
        if (n <= 0) break;
        got.append(reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(n));
      }
    }
    return got;
  }
  void ClientSend(const std::string& data) {
    for (size_t done = 0; done < data.size();) {
      const ssize_t n = gnutls_record_send(client_, data.data() + done, data.size() - done);
      ASSERT_GT(n, 0) << gnutls_strerror(static_cast<int>(n));
      done += static_cast<size_t>(n);
    }
  }
  std::string ClientRecv(size_t want) {
    std::string got(want, '\0');
    size_t have = 0;
    while (have < want) {
      const ssize_t n = gnutls_record_recv(client_, got.data() + have, want - have);
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
      if (n <= 0) break;
      have += static_cast<size_t>(n);
    }
    got.resize(have);
    return got;
  }
  bool own() const { return std::string(GetParam()) == "tmem"; }

  std::unique_ptr<PskSocketPair> pair_;
  TlsContext* context_ = nullptr;
  std::unique_ptr<TlsSession> server_;
  std::vector<uint8_t> out_;
  gnutls_session_t client_ = nullptr;
  int fds_[2] = {-1, -1};
};

TEST_P(MemorySessionTest, RecordsFedInAnyPiecesAreReadIntoAnyRoom) {
  EXPECT_EQ(server_->own_records(), own());
  EXPECT_EQ(server_->psk_identity(), "tenant");
  const std::string data = Pattern(3 * 16384 + 1000, 1);
  for (const auto [piece, room] : {std::pair<size_t, size_t>{1, 70000},
                                   {7, 100},
                                   {5000, 64 << 10},
                                   {1 << 20, 3},
                                   {16389, 16385},
                                   {1 << 20, 1 << 20}}) {
    ClientSend(data);
    const std::vector<uint8_t> in = Read(5000);
    EXPECT_TRUE(Same(FeedAndDecrypt(in, piece, room), data)) << "pieces of " << piece << ", room " << room;
  }
}

TEST_P(MemorySessionTest, RepliesReachTheClientAcrossKeyUpdatesBothWays) {
  const std::string reply = Pattern(50000, 2);
  iovec iov[] = {{const_cast<char*>(reply.data()), 100}, {const_cast<char*>(reply.data()) + 100, reply.size() - 100}};
  ASSERT_TRUE(server_->Encrypt(iov, 2));
  Flush();
  EXPECT_TRUE(Same(ClientRecv(reply.size()), reply));

  // The client updates its own key only, then sends under its new key.
  ASSERT_EQ(gnutls_session_key_update(client_, 0), 0);
  const std::string request = Pattern(20000, 3);
  ClientSend(request);
  EXPECT_TRUE(Same(FeedAndDecrypt(Read(5000), 1 << 20, 64 << 10), request));

  // The client updates its key and asks for one of ours, then sends under its new key.
  ASSERT_EQ(gnutls_session_key_update(client_, GNUTLS_KU_PEER), 0);
  ClientSend(request);
  EXPECT_TRUE(Same(FeedAndDecrypt(Read(5000), 1000, 64 << 10), request));
  ASSERT_TRUE(server_->Encrypt(iov, 2));
  Flush();
  EXPECT_TRUE(Same(ClientRecv(reply.size()), reply));
  if (own()) {
    EXPECT_EQ(server_->records()->key_updates_received(), 2u);
    EXPECT_EQ(server_->records()->key_updates_sent(), 1u);
  }
}

TEST_P(MemorySessionTest, CloseNotifyEndsTheStreamAfterWhatCameBefore) {
  ClientSend("last words");
  ASSERT_EQ(gnutls_bye(client_, GNUTLS_SHUT_WR), 0);
  bool closed = false;
  EXPECT_TRUE(Same(FeedAndDecrypt(Read(5000), 1 << 20, 64 << 10, &closed), "last words"));
  EXPECT_TRUE(closed);
}

TEST_P(MemorySessionTest, ARecordChangedOnTheWayEndsTheStream) {
  ClientSend(Pattern(1000, 4));
  std::vector<uint8_t> in = Read(5000);
  ASSERT_GT(in.size(), 500u);
  in[500] ^= 0x20;
  bool closed = false;
  EXPECT_TRUE(Same(FeedAndDecrypt(in, 1 << 20, 64 << 10, &closed), ""));
  EXPECT_TRUE(closed);
  if (own()) {
    // The client is told why: a fatal bad_record_mac alert (a read that waits fails after 3 s).
    Flush();
    timeval tv{3, 0};
    setsockopt(fds_[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char b;
    EXPECT_EQ(gnutls_record_recv(client_, &b, 1), GNUTLS_E_FATAL_ALERT_RECEIVED);
    EXPECT_EQ(gnutls_alert_get(client_), GNUTLS_A_BAD_RECORD_MAC);
  }
}

INSTANTIATE_TEST_SUITE_P(RecordLayers, MemorySessionTest, testing::Values("tmem", "gnutls"));

// A session over a socket (NBD's): its receiving thread reads requests in small and large parts,
// its sending thread seals replies of any size, across a key update, and it ends with a
// close_notify the client reads.
TEST(SocketSessionTest, ReadsAnyPartsAndSendsAnySizeOnTmemRecords) {
  PskSocketPair p("socket");
  gnutls_session_t client = p.client;
  const std::string header = Pattern(28, 5), payload = Pattern(300000, 6), reply = Pattern(1 << 20, 7);
  std::string got_reply, got_after_update;
  int end = 1;
  std::thread c([&] {
    const int rc = p.ClientHandshake();
    ASSERT_EQ(rc, 0) << gnutls_strerror(rc);
    // A request header and its payload in one go, as an NBD client writes them.
    const std::string request = header + payload;
    for (size_t done = 0; done < request.size();) {
      const ssize_t n = gnutls_record_send(client, request.data() + done, request.size() - done);
      ASSERT_GT(n, 0);
      done += static_cast<size_t>(n);
    }
    auto recv_all = [&](size_t want) {
      std::string out(want, '\0');
      size_t have = 0;
      while (have < want) {
        const ssize_t n = gnutls_record_recv(client, out.data() + have, want - have);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
        if (n <= 0) {
          ADD_FAILURE() << "client read: " << gnutls_strerror(static_cast<int>(n));
          break;
        }
        have += static_cast<size_t>(n);
      }
      out.resize(have);
      return out;
    };
    got_reply = recv_all(reply.size());
    // The client updates its key and asks for the server's; the next reply comes under it.
    ASSERT_EQ(gnutls_session_key_update(client, GNUTLS_KU_PEER), 0);
    ASSERT_GT(gnutls_record_send(client, header.data(), header.size()), 0);
    got_after_update = recv_all(header.size());
    char b;
    end = static_cast<int>(gnutls_record_recv(client, &b, 1));  // the server's close_notify: 0
  });
  auto server = p.context->Accept(p.fds[0]);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*server)->own_records());
  // The header in two small reads, then the payload into a large buffer.
  std::string h(28, '\0');
  ASSERT_EQ((*server)->Recv(h.data(), 10), 10);
  ASSERT_EQ((*server)->Recv(h.data() + 10, 18), 18);
  EXPECT_EQ(h, header);
  std::string body(payload.size(), '\0');
  for (size_t have = 0; have < body.size();) {
    const ssize_t n = (*server)->Recv(body.data() + have, body.size() - have);
    ASSERT_GT(n, 0);
    have += static_cast<size_t>(n);
  }
  EXPECT_TRUE(Same(body, payload));
  iovec iov[] = {{const_cast<char*>(reply.data()), 16}, {const_cast<char*>(reply.data()) + 16, reply.size() - 16}};
  ASSERT_TRUE((*server)->SendAll(iov, 2));
  std::string h2(28, '\0');
  for (size_t have = 0; have < h2.size();) {
    const ssize_t n = (*server)->Recv(h2.data() + have, h2.size() - have);
    ASSERT_GT(n, 0);
    have += static_cast<size_t>(n);
  }
  EXPECT_EQ(h2, header);
  iovec one{const_cast<char*>(header.data()), header.size()};
  ASSERT_TRUE((*server)->SendAll(&one, 1));
  EXPECT_EQ((*server)->records()->key_updates_received(), 1u);
  server->reset();  // sends close_notify
  c.join();
  EXPECT_TRUE(Same(got_reply, reply));
  EXPECT_EQ(got_after_update, header);
  EXPECT_EQ(end, 0);
}

// The end of the stream is reported after the data before it, and again on every later read
// (a caller reading exact lengths asks again; it must not wait for bytes that never come).
TEST(SocketSessionTest, CloseNotifyEndsEveryLaterRead) {
  PskSocketPair p("end");
  timeval tv{3, 0};  // a read that waits fails after 3 s instead of hanging the test
  setsockopt(p.fds[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::thread c([&] {
    const int rc = p.ClientHandshake();
    ASSERT_EQ(rc, 0) << gnutls_strerror(rc);
    ASSERT_EQ(gnutls_record_send(p.client, "abc", 3), 3);
    ASSERT_EQ(gnutls_bye(p.client, GNUTLS_SHUT_WR), 0);  // the TCP stream stays open
  });
  auto server = p.context->Accept(p.fds[0]);
  ASSERT_TRUE(server.ok()) << server.status();
  c.join();
  ASSERT_TRUE((*server)->own_records());
  char buf[10];
  EXPECT_EQ((*server)->Recv(buf, 2), 2);
  EXPECT_EQ((*server)->Recv(buf, 10), 1);
  EXPECT_EQ((*server)->Recv(buf, 10), 0);
  EXPECT_EQ((*server)->Recv(buf, 10), 0);
}

}  // namespace
}  // namespace tmem::trust
