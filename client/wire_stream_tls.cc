// The wire stream's TLS: the client's credentials, the session and its handshake, and GnuTLS's
// transport (records gathered into one send, replies read ahead).
#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/wire_stream.h"
#include "common/socket_write.h"
#include "common/tls_priority.h"

namespace tmem::client {
namespace {

// While a thread's corked request is turned into records, the records gather here and leave in
// one send when the request is whole, not in one send each (a 32-page put is eight records). Set
// only by the sending thread around its own session's uncork. The reading thread's GnuTLS calls
// push nothing in GnuTLS 3.7 (a key update asked for is answered on the next send); a record
// pushed from there would leave at once, ahead of records gathered, and break the sequence.
thread_local std::vector<uint8_t>* t_gather = nullptr;
constexpr size_t kGatherBytes = 512 << 10;  // a larger request leaves in parts of about this size

bool SendGathered(int fd, std::vector<uint8_t>* gathered) {
  iovec iov{gathered->data(), gathered->size()};
  const bool ok = gathered->empty() || SocketWriteFullV(fd, &iov, 1);
  gathered->clear();
  return ok;
}

// GnuTLS's sends with MSG_NOSIGNAL: a server that went away is an error, never SIGPIPE.
ssize_t PushNoSignal(gnutls_transport_ptr_t ptr, const giovec_t* iov, int count) {
  const int fd = static_cast<int>(reinterpret_cast<intptr_t>(ptr));
  if (t_gather != nullptr) {
    size_t total = 0;
    for (int i = 0; i < count; ++i) {
      const auto* b = static_cast<const uint8_t*>(iov[i].iov_base);
      t_gather->insert(t_gather->end(), b, b + iov[i].iov_len);
      total += iov[i].iov_len;
    }
    if (t_gather->size() >= kGatherBytes && !SendGathered(fd, t_gather)) {
      errno = EPIPE;
      return -1;
    }
    return static_cast<ssize_t>(total);
  }
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(reinterpret_cast<const iovec*>(iov));
  msg.msg_iovlen = static_cast<size_t>(count);
  return ::sendmsg(fd, &msg, MSG_NOSIGNAL);
}

// The handshake's application secrets, for TlsRecords: the session pointer is the stream's Secrets.
int KeepSecrets(gnutls_session_t s, gnutls_record_encryption_level_t level, const void* read, const void* write,
                size_t size) {
  return TlsRecords::KeepSecrets(static_cast<TlsRecords::Secrets*>(gnutls_session_get_ptr(s)), level, read, write,
                                 size);
}

bool IsAddress(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

}  // namespace

absl::StatusOr<std::shared_ptr<WireTlsCredentials>> WireTlsCredentials::Load(const std::string& ca,
                                                                             const std::string& cert,
                                                                             const std::string& key) {
  std::shared_ptr<WireTlsCredentials> c(new WireTlsCredentials());
  gnutls_certificate_credentials_t x509;
  if (gnutls_certificate_allocate_credentials(&x509) < 0) return absl::InternalError("gnutls credentials");
  c->creds_ = x509;
  int rc = gnutls_certificate_set_x509_trust_file(x509, ca.c_str(), GNUTLS_X509_FMT_PEM);
  if (rc <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CA ", ca, ": ", rc == 0 ? "holds no certificate" : gnutls_strerror(rc)));
  }
  if (!cert.empty()) {
    rc = gnutls_certificate_set_x509_key_file(x509, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM);
    if (rc < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("certificate ", cert, " with key ", key, ": ", gnutls_strerror(rc)));
  }
  return c;
}

WireTlsCredentials::~WireTlsCredentials() {
  if (creds_ != nullptr) gnutls_certificate_free_credentials(static_cast<gnutls_certificate_credentials_t>(creds_));
}

bool WireStream::StartTls(int fd) {
  gnutls_session_t s;
  if (gnutls_init(&s, GNUTLS_CLIENT) < 0) {
    Break(absl::InternalError("gnutls_init"));
    return false;
  }
  session_ = s;
  gnutls_priority_set_direct(s, kTlsPriority, nullptr);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE,
                         static_cast<gnutls_certificate_credentials_t>(options_.tls->gnutls_credentials()));
  const std::string name = options_.server_name.empty() ? options_.host : options_.server_name;
  if (!IsAddress(name)) gnutls_server_name_set(s, GNUTLS_NAME_DNS, name.data(), name.size());
  gnutls_session_set_verify_cert(s, name.c_str(), 0);
  // Reads through the read-ahead buffer, sends straight to the socket (its number).
  ahead_.Reset(fd, kReadAheadBytes);
  gnutls_transport_set_ptr2(s, &ahead_, reinterpret_cast<gnutls_transport_ptr_t>(static_cast<intptr_t>(fd)));
  gnutls_transport_set_pull_function(s, &TlsReadAhead::Pull);
  gnutls_transport_set_pull_timeout_function(s, &TlsReadAhead::PullTimeout);
  gnutls_transport_set_vec_push_function(s, PushNoSignal);
  gnutls_handshake_set_timeout(s, static_cast<unsigned>(options_.connect_timeout_ms));
  if (options_.own_tls_records) {
    gnutls_session_set_ptr(s, &secrets_);
    gnutls_handshake_set_secret_function(s, KeepSecrets);
  }
  int rc;
  do {
    rc = gnutls_handshake(s);
  } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
  if (rc < 0) {
    Break(absl::UnavailableError(
        absl::StrCat("TLS handshake with ", options_.host, ":", options_.port, ": ", gnutls_strerror(rc))));
    return false;
  }
  // TLS 1.3: the records from here on. GnuTLS read exactly the handshake's records, so what the
  // read-ahead holds past them is the server's first records.
  if (options_.own_tls_records) records_ = TlsRecords::Take(s, secrets_);
  gnutls_memset(&secrets_, 0, sizeof(secrets_));
  return true;
}

bool WireStream::SealAndSend(const iovec* iov, int count, std::vector<uint8_t>* sealed) {
  return tmem::SealAndSend(*records_, fd_, iov, count, kGatherBytes, sealed);
}

ssize_t WireStream::OpenRecordsLocked() {
  if (records_failed_) return 0;
  size_t produced = 0;
  while (true) {
    const std::span<const uint8_t> in = ahead_.unread();
    const ssize_t whole = TlsRecords::WholeRecord(in);
    if (whole < 0) {
      records_failed_ = true;  // the end of the stream, after the replies opened before it
      return static_cast<ssize_t>(produced);
    }
    if (whole == 0) {
      if (produced > 0) return static_cast<ssize_t>(produced);
      const ssize_t n = ahead_.Fill();
      if (n < 0 && errno == EAGAIN) continue;  // SO_RCVTIMEO: the caller polled first
      if (n <= 0) return 0;
      continue;
    }
    const size_t room = TlsRecords::OpenRoom(static_cast<size_t>(whole));
    const size_t at = rend_ + produced;  // the caller adds what this returns to rend_
    if (rbuf_.size() - at < room) rbuf_.resize(at + room);
    const ssize_t n = records_->Open(in.first(static_cast<size_t>(whole)), rbuf_.data() + at);
    ahead_.Take(static_cast<size_t>(whole));
    if (n < 0) {
      records_failed_ = true;  // close_notify, or a record that does not open
      return static_cast<ssize_t>(produced);
    }
    produced += static_cast<size_t>(n);
  }
}

bool WireStream::SendAllV(iovec* iov, int count) {
  if (records_ != nullptr) return SealAndSend(iov, count, &gathered_);
  if (session_ != nullptr) {
    // Records from the pieces, corked so that small pieces do not each make a record, gathered so
    // that they leave in one send.
    auto s = static_cast<gnutls_session_t>(session_);
    struct GatherScope {
      explicit GatherScope(std::vector<uint8_t>* b) { t_gather = b; }
      ~GatherScope() { t_gather = nullptr; }
    } gather(&gathered_);
    gathered_.clear();
    gnutls_record_cork(s);
    for (int i = 0; i < count; ++i) {
      const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
      size_t left = iov[i].iov_len;
      while (left > 0) {
        const ssize_t n = gnutls_record_send(s, p, left);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
        if (n <= 0) return false;
        p += n;
        left -= static_cast<size_t>(n);
      }
    }
    while (true) {
      const int rc = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);
      if (rc >= 0) return SendGathered(fd_, &gathered_);
      if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED) return false;
    }
  }
  return SocketWriteFullV(fd_, iov, count);
}

}  // namespace tmem::client
