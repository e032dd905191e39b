// TlsRecords against GnuTLS's own record layer, over a real handshake on a socket pair: what one
// side seals the other reads, in both directions, across key updates either side starts.
#include "common/tls_records.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "common/socket_write.h"
#include "gtest/gtest.h"

namespace tmem {
namespace {

constexpr char kCipherPriority[] = "NORMAL:-CIPHER-ALL:+%s";

int KeepSecrets(gnutls_session_t s, gnutls_record_encryption_level_t level, const void* read, const void* write,
                size_t size) {
  return TlsRecords::KeepSecrets(static_cast<TlsRecords::Secrets*>(gnutls_session_get_ptr(s)), level, read, write,
                                 size);
}

// A self-signed ECDSA certificate for the server (the client checks nothing: the handshake
// is not what is tested here).
struct ServerCertificate {
  ServerCertificate() {
    gnutls_x509_privkey_init(&key);
    EXPECT_EQ(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
              0);
    gnutls_x509_crt_init(&crt);
    gnutls_x509_crt_set_version(crt, 3);
    const uint8_t serial = 1;
    gnutls_x509_crt_set_serial(crt, &serial, 1);
    gnutls_x509_crt_set_activation_time(crt, time(nullptr) - 60);
    gnutls_x509_crt_set_expiration_time(crt, time(nullptr) + 3600);
    gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "server", 6);
    gnutls_x509_crt_set_key(crt, key);
    EXPECT_EQ(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
  }
  ~ServerCertificate() {
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
  }
  gnutls_x509_privkey_t key = nullptr;
  gnutls_x509_crt_t crt = nullptr;
};

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed) & 0xff);
  return s;
}

// Two GnuTLS sessions, server and client, with a finished handshake over a socket pair.
class Pair {
 public:
  explicit Pair(const std::string& priority) {
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0);
    static ServerCertificate* cert = new ServerCertificate();
    gnutls_certificate_allocate_credentials(&server_creds_);
    EXPECT_EQ(gnutls_certificate_set_x509_key(server_creds_, &cert->crt, 1, cert->key), 0);
    gnutls_certificate_allocate_credentials(&client_creds_);
    gnutls_init(&server, GNUTLS_SERVER | GNUTLS_NO_TICKETS);
    gnutls_init(&client, GNUTLS_CLIENT);
    for (auto [s, fd, secrets] : {std::tuple{server, fds_[0], &server_secrets}, {client, fds_[1], &client_secrets}}) {
      EXPECT_EQ(gnutls_priority_set_direct(s, priority.c_str(), nullptr), 0) << priority;
      gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, s == server ? server_creds_ : client_creds_);
      gnutls_transport_set_int(s, fd);
      gnutls_session_set_ptr(s, secrets);
      gnutls_handshake_set_secret_function(s, KeepSecrets);
    }
    int server_rc = 0;
    std::thread t([&] {
      do {
        server_rc = gnutls_handshake(server);
      } while (server_rc < 0 && gnutls_error_is_fatal(server_rc) == 0);
      if (server_rc < 0) shutdown(fds_[0], SHUT_RDWR);
    });
    int rc;
    do {
      rc = gnutls_handshake(client);
    } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
    if (rc < 0) shutdown(fds_[1], SHUT_RDWR);
    t.join();
    EXPECT_EQ(rc, 0) << gnutls_strerror(rc);
    EXPECT_EQ(server_rc, 0) << gnutls_strerror(server_rc);
  }
  ~Pair() {
    gnutls_deinit(server);
    gnutls_deinit(client);
    gnutls_certificate_free_credentials(server_creds_);
    gnutls_certificate_free_credentials(client_creds_);
    close(fds_[0]);
    close(fds_[1]);
  }
  int fd(gnutls_session_t s) const { return s == server ? fds_[0] : fds_[1]; }

  gnutls_session_t server = nullptr, client = nullptr;
  TlsRecords::Secrets server_secrets, client_secrets;

 private:
  int fds_[2] = {-1, -1};
  gnutls_certificate_credentials_t server_creds_ = nullptr;
  gnutls_certificate_credentials_t client_creds_ = nullptr;
};

// Reads one whole record from `fd`.
std::vector<uint8_t> ReadRecord(int fd) {
  std::vector<uint8_t> r(TlsRecords::kHeaderBytes);
  size_t have = 0;
  while (true) {
    const ssize_t whole = TlsRecords::WholeRecord(std::span<const uint8_t>(r.data(), have));
    if (whole < 0) return {};
    if (whole > 0) return r;
    const size_t missing = TlsRecords::MissingBytes(std::span<const uint8_t>(r.data(), have));
    r.resize(have + missing);
    const ssize_t n = read(fd, r.data() + have, missing);
    if (n <= 0) return {};
    have += static_cast<size_t>(n);
  }
}

// Reads records of `records` until `want` application bytes came (or an error).
std::string OpenBytes(TlsRecords& records, int fd, size_t want) {
  std::string got;
  std::vector<uint8_t> plain(TlsRecords::kMaxRecordBytes);
  while (got.size() < want) {
    std::vector<uint8_t> r = ReadRecord(fd);
    if (r.empty()) break;
    const ssize_t n = records.Open(r, plain.data());
    if (n < 0) break;
    got.append(reinterpret_cast<const char*>(plain.data()), static_cast<size_t>(n));
  }
  return got;
}

std::string GnutlsRecv(gnutls_session_t s, size_t want) {
  std::string got(want, '\0');
  size_t have = 0;
  while (have < want) {
    const ssize_t n = gnutls_record_recv(s, got.data() + have, want - have);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
    if (n <= 0) break;
    have += static_cast<size_t>(n);
  }
  got.resize(have);
  return got;
}

bool GnutlsSend(gnutls_session_t s, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = gnutls_record_send(s, data.data() + done, data.size() - done);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// What `sealed` carries, written to `fd` on a thread of its own and read by GnuTLS's `reader`.
std::string GnutlsReadsSealed(int fd, std::vector<uint8_t>& sealed, gnutls_session_t reader, size_t want) {
  std::thread w([&] {
    iovec iov{sealed.data(), sealed.size()};
    EXPECT_TRUE(SocketWriteFullV(fd, &iov, 1));
  });
  std::string got = GnutlsRecv(reader, want);
  w.join();
  return got;
}

class TlsRecordsCipherTest : public testing::TestWithParam<const char*> {};

TEST_P(TlsRecordsCipherTest, RecordsSealedHereAreReadByGnutlsAndTheOtherWayRound) {
  char priority[128];
  std::snprintf(priority, sizeof(priority), kCipherPriority, GetParam());
  Pair p(priority);
  auto ours = TlsRecords::Take(p.server, p.server_secrets);
  ASSERT_NE(ours, nullptr);
  // Three pieces, 40,000 bytes: three records, the pieces split across them.
  const std::string a = Pattern(100, 1), b = Pattern(20000, 2), c = Pattern(19900, 3);
  iovec iov[] = {{const_cast<char*>(a.data()), a.size()},
                 {const_cast<char*>(b.data()), b.size()},
                 {const_cast<char*>(c.data()), c.size()}};
  std::vector<uint8_t> out;
  ASSERT_TRUE(ours->Seal(iov, 3, &out));
  EXPECT_EQ(out.size(), 40000 + 3 * (TlsRecords::kHeaderBytes + 1 + TlsRecords::kTagBytes));
  EXPECT_EQ(GnutlsReadsSealed(p.fd(p.server), out, p.client, 40000), a + b + c);

  const std::string back = Pattern(50000, 4);
  std::thread s([&] { EXPECT_TRUE(GnutlsSend(p.client, back)); });
  EXPECT_EQ(OpenBytes(*ours, p.fd(p.server), back.size()), back);
  s.join();
}

INSTANTIATE_TEST_SUITE_P(Ciphers, TlsRecordsCipherTest,
                         testing::Values("AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305"));

TEST(TlsRecordsTest, AKeyUpdateThePeerAsksForIsFollowedAndAnswered) {
  Pair p("NORMAL:-CIPHER-ALL:+AES-128-GCM");
  auto ours = TlsRecords::Take(p.client, p.client_secrets);
  ASSERT_NE(ours, nullptr);
  // The server updates its key and asks for ours, then sends under its new key.
  const std::string data = Pattern(30000, 5);
  std::thread s([&] {
    EXPECT_EQ(gnutls_session_key_update(p.server, GNUTLS_KU_PEER), 0);
    EXPECT_TRUE(GnutlsSend(p.server, data));
  });
  EXPECT_EQ(OpenBytes(*ours, p.fd(p.client), data.size()), data);
  s.join();
  EXPECT_EQ(ours->key_updates_received(), 1u);
  // Our next records start with the update asked for; GnuTLS reads past it.
  const std::string reply = Pattern(5000, 6);
  iovec iov{const_cast<char*>(reply.data()), reply.size()};
  std::vector<uint8_t> out;
  ASSERT_TRUE(ours->Seal(&iov, 1, &out));
  EXPECT_EQ(ours->key_updates_sent(), 1u);
  EXPECT_EQ(GnutlsReadsSealed(p.fd(p.client), out, p.server, reply.size()), reply);
}

TEST(TlsRecordsTest, APeerThatOnlyUpdatesItsKeyIsCutOff) {
  Pair p("NORMAL:-CIPHER-ALL:+AES-128-GCM");
  auto ours = TlsRecords::Take(p.server, p.server_secrets);
  ASSERT_NE(ours, nullptr);
  std::vector<uint8_t> plain(TlsRecords::kMaxRecordBytes);
  // Key updates with data between them are fine, however many.
  for (int i = 0; i < TlsRecords::kMaxEmptyInRow + 10; ++i) {
    ASSERT_EQ(gnutls_session_key_update(p.client, 0), 0);
    ASSERT_EQ(ours->Open(ReadRecord(p.fd(p.server)), plain.data()), 0);
    if (i % 8 == 0) {
      ASSERT_TRUE(GnutlsSend(p.client, "x"));
      ASSERT_EQ(ours->Open(ReadRecord(p.fd(p.server)), plain.data()), 1);
    }
  }
  // Nothing but key updates: the one past the bound ends the records.
  ssize_t last = 0;
  for (int i = 0; i <= TlsRecords::kMaxEmptyInRow && last == 0; ++i) {
    ASSERT_EQ(gnutls_session_key_update(p.client, 0), 0);
    last = ours->Open(ReadRecord(p.fd(p.server)), plain.data());
  }
  EXPECT_EQ(last, TlsRecords::kError);
}

TEST(TlsRecordsTest, SealUpdatesItsKeyAfterItsShareOfRecords) {
  Pair p("NORMAL:-CIPHER-ALL:+AES-256-GCM");
  auto ours = TlsRecords::Take(p.server, p.server_secrets, /*records_per_key=*/2);
  ASSERT_NE(ours, nullptr);
  const std::string data = Pattern(5 * TlsRecords::kMaxPlaintext + 7, 7);
  iovec iov{const_cast<char*>(data.data()), data.size()};
  std::vector<uint8_t> out;
  ASSERT_TRUE(ours->Seal(&iov, 1, &out));
  ASSERT_TRUE(ours->Seal(&iov, 1, &out));
  EXPECT_GE(ours->key_updates_sent(), 5u);
  EXPECT_EQ(GnutlsReadsSealed(p.fd(p.server), out, p.client, 2 * data.size()), data + data);
}

TEST(TlsRecordsTest, AChangedByteOrACloseNotifyEndsTheRecords) {
  Pair p("NORMAL:-CIPHER-ALL:+AES-128-GCM");
  auto ours = TlsRecords::Take(p.server, p.server_secrets);
  ASSERT_NE(ours, nullptr);
  std::vector<uint8_t> plain(TlsRecords::kMaxRecordBytes);
  ASSERT_TRUE(GnutlsSend(p.client, "first"));
  std::vector<uint8_t> r = ReadRecord(p.fd(p.server));
  ASSERT_FALSE(r.empty());
  std::vector<uint8_t> bad = r;
  bad[bad.size() / 2] ^= 1;
  EXPECT_EQ(ours->Open(bad, plain.data()), TlsRecords::kError);
  EXPECT_EQ(ours->Open(r, plain.data()), 5);
  // The same record again: its sequence number is gone.
  EXPECT_EQ(ours->Open(r, plain.data()), TlsRecords::kError);

  auto again = TlsRecords::Take(p.client, p.client_secrets);
  ASSERT_NE(again, nullptr);
  Pair q("NORMAL:-CIPHER-ALL:+AES-128-GCM");
  auto server = TlsRecords::Take(q.server, q.server_secrets);
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(gnutls_bye(q.client, GNUTLS_SHUT_WR), 0);
  r = ReadRecord(q.fd(q.server));
  EXPECT_EQ(server->Open(r, plain.data()), TlsRecords::kClosed);
}

TEST(TlsRecordsTest, AHeaderThatIsNotATls13RecordIsRefused) {
  const uint8_t partial[] = {23, 3, 3, 0, 40, 1, 2};
  EXPECT_EQ(TlsRecords::WholeRecord(partial), 0);
  EXPECT_EQ(TlsRecords::WholeRecord(std::span<const uint8_t>(partial, 3)), 0);
  const uint8_t handshake[] = {22, 3, 3, 0, 40};
  EXPECT_EQ(TlsRecords::WholeRecord(handshake), TlsRecords::kError);
  const uint8_t too_long[] = {23, 3, 3, 0x48, 0x01};
  EXPECT_EQ(TlsRecords::WholeRecord(too_long), TlsRecords::kError);
  const uint8_t no_tag[] = {23, 3, 3, 0, 16};
  EXPECT_EQ(TlsRecords::WholeRecord(no_tag), TlsRecords::kError);
}

TEST(TlsRecordsTest, Tls12SessionsStayWithGnutls) {
  Pair p("NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM");
  ASSERT_EQ(gnutls_protocol_get_version(p.server), GNUTLS_TLS1_2);
  EXPECT_EQ(TlsRecords::Take(p.server, p.server_secrets), nullptr);
}

}  // namespace
}  // namespace tmem
