#include "server/trust/tls_context.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/socket_write.h"
#include "common/status_macros.h"
#include "common/tls_priority.h"

namespace tmem::trust {

// What one load of the files made; shared by every session started while it was current.
struct Credentials {
  gnutls_certificate_credentials_t x509 = nullptr;
  gnutls_psk_server_credentials_t psk = nullptr;
  std::map<std::string, std::string, std::less<>> psk_keys;
  std::map<std::string, int64_t> mtimes;  // file -> modification time (ns) at load
  ~Credentials() {
    if (x509 != nullptr) gnutls_certificate_free_credentials(x509);
    if (psk != nullptr) gnutls_psk_free_server_credentials(psk);
  }
};

namespace {

// Sessions carry their TlsSession (for the PSK lookup and the secrets) as the session pointer.
int PskLookup(gnutls_session_t session, const char* username, gnutls_datum_t* key) {
  const Credentials* creds = &static_cast<const TlsSession*>(gnutls_session_get_ptr(session))->credentials();
  auto it = creds->psk_keys.find(absl::string_view(username));
  if (it == creds->psk_keys.end()) return -1;
  key->data = static_cast<unsigned char*>(gnutls_malloc(it->second.size()));
  if (key->data == nullptr) return -1;
  std::memcpy(key->data, it->second.data(), it->second.size());
  key->size = static_cast<unsigned>(it->second.size());
  return 0;
}

// Writes with MSG_NOSIGNAL: a peer that went away is an error, never SIGPIPE.
ssize_t PushVec(gnutls_transport_ptr_t ptr, const giovec_t* iov, int count) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(reinterpret_cast<const iovec*>(iov));
  msg.msg_iovlen = static_cast<size_t>(count);
  return ::sendmsg(static_cast<int>(reinterpret_cast<intptr_t>(ptr)), &msg, MSG_NOSIGNAL);
}

int64_t MtimeNs(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
}

std::string GnutlsError(int rc) { return gnutls_strerror(rc); }

constexpr size_t kReadAheadBytes = 64 << 10;

// The subject CN and the DNS and URI SANs of a certificate, in `tenant_from`'s order.
std::vector<std::string> CertificateNames(gnutls_x509_crt_t crt, const std::string& tenant_from) {
  std::vector<std::string> names;
  if (tenant_from != "san") {
    char buf[256];
    size_t size = sizeof(buf);
    if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &size) == 0) {
      names.emplace_back(buf, size);
    }
  }
  if (tenant_from != "cn") {
    for (unsigned i = 0;; ++i) {
      char buf[512];
      size_t size = sizeof(buf);
      const int type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &size, nullptr);
      if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
      if (type == GNUTLS_SAN_DNSNAME || type == GNUTLS_SAN_URI) names.emplace_back(buf, size);
      if (type < 0 && type != GNUTLS_E_SHORT_MEMORY_BUFFER) break;
    }
  }
  return names;
}

std::vector<std::string> CertificateNames(const gnutls_datum_t& der, const std::string& tenant_from) {
  std::vector<std::string> names;
  gnutls_x509_crt_t crt;
  if (gnutls_x509_crt_init(&crt) != 0) return names;
  if (gnutls_x509_crt_import(crt, &der, GNUTLS_X509_FMT_DER) == 0) names = CertificateNames(crt, tenant_from);
  gnutls_x509_crt_deinit(crt);
  return names;
}

// Why a client certificate with verification status `status` (not 0) is refused, naming it.
absl::Status VerificationFailure(unsigned status, const std::vector<std::string>& names) {
  gnutls_datum_t why{};
  std::string reason = "does not verify";
  if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) == 0) {
    reason.assign(reinterpret_cast<const char*>(why.data), why.size);
    gnutls_free(why.data);
  }
  return absl::UnauthenticatedError(
      absl::StrCat("client certificate", names.empty() ? "" : " '" + names[0] + "'", ": ", reason));
}

constexpr char kNoCertificate[] = "the client showed no certificate";

// The purpose a client certificate must allow (its extended key usage, when it has one).
gnutls_typed_vdata_st ClientPurpose() {
  return {GNUTLS_DT_KEY_PURPOSE_OID, reinterpret_cast<unsigned char*>(const_cast<char*>(GNUTLS_KP_TLS_WWW_CLIENT)), 0};
}

}  // namespace

absl::StatusOr<std::shared_ptr<Credentials>> TlsContext::Load(const TlsOptions& o) {
  auto c = std::make_shared<Credentials>();
  if (o.x509()) {
    int rc = gnutls_certificate_allocate_credentials(&c->x509);
    if (rc < 0) return absl::InternalError(GnutlsError(rc));
    rc = gnutls_certificate_set_x509_trust_file(c->x509, o.ca.c_str(), GNUTLS_X509_FMT_PEM);
    if (rc <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls.ca ", o.ca, ": ", rc == 0 ? "holds no certificate" : GnutlsError(rc)));
    }
    rc = gnutls_certificate_set_x509_key_file(c->x509, o.cert.c_str(), o.key.c_str(), GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls.cert ", o.cert, " with tls.key ", o.key, ": ", GnutlsError(rc)));
    }
    for (const std::string* f : {&o.cert, &o.key, &o.ca}) c->mtimes[*f] = MtimeNs(*f);
  }
  if (!o.psk_file.empty()) {
    auto keys = ReadPskFile(o.psk_file);
    if (!keys.ok()) return keys.status();
    c->psk_keys = std::move(*keys);
    int rc = gnutls_psk_allocate_server_credentials(&c->psk);
    if (rc < 0) return absl::InternalError(GnutlsError(rc));
    gnutls_psk_set_server_credentials_function(c->psk, PskLookup);
    c->mtimes[o.psk_file] = MtimeNs(o.psk_file);
  }
  return c;
}

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::Create(const TlsOptions& options) {
  if (!options.any()) return absl::InvalidArgumentError("TLS is not configured (tls.cert or tls.psk_file)");
  auto creds = Load(options);
  if (!creds.ok()) return creds.status();
  std::unique_ptr<TlsContext> t(new TlsContext(options));
  MutexLock lock(&t->mu_);
  t->creds_ = std::move(*creds);
  return t;
}

TlsContext::~TlsContext() = default;

absl::Status TlsContext::Reload() {
  auto creds = Load(options_);
  if (!creds.ok()) return creds.status();
  MutexLock lock(&mu_);
  creds_ = std::move(*creds);
  return absl::OkStatus();
}

bool TlsContext::FilesChanged() const {
  std::shared_ptr<Credentials> c = Current();
  for (const auto& [file, mtime] : c->mtimes) {
    if (MtimeNs(file) != mtime) return true;
  }
  return false;
}

std::shared_ptr<Credentials> TlsContext::Current() const {
  MutexLock lock(&mu_);
  return creds_;
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsContext::NewSession(bool nonblocking) const {
  std::unique_ptr<TlsSession> t(new TlsSession());
  t->creds_ = Current();
  gnutls_session_t s;
  int rc = gnutls_init(&s, GNUTLS_SERVER | (nonblocking ? GNUTLS_NONBLOCK : 0));
  if (rc < 0) return absl::InternalError(GnutlsError(rc));
  t->session_ = s;
  const char* priority = t->creds_->psk != nullptr ? kTlsServerPskPriority : kTlsServerPriority;
  rc = gnutls_priority_set_direct(s, priority, nullptr);
  if (rc < 0) return absl::InternalError(GnutlsError(rc));
  if (t->creds_->x509 != nullptr) {
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->creds_->x509);
    // Asked for, then checked by CheckPeer: a PSK peer shows none.
    gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
  }
  if (t->creds_->psk != nullptr) gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->creds_->psk);
  gnutls_session_set_ptr(s, t.get());
  // Sessions whose records tmemd takes over keep the application secrets for key updates
  // (TlsRecords::Take, which wipes them); no other session keeps them.
  if (options_.records == "tmem") gnutls_handshake_set_secret_function(s, &TlsSession::KeepSecrets);
  return t;
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsContext::Accept(int fd) const {
  absl::StatusOr<std::unique_ptr<TlsSession>> made = NewSession(/*nonblocking=*/false);
  if (!made.ok()) return made.status();
  std::unique_ptr<TlsSession> t = std::move(*made);
  auto s = static_cast<gnutls_session_t>(t->session_);
  gnutls_transport_set_vec_push_function(s, PushVec);
  t->in_.Reset(fd, kReadAheadBytes);
  // Pulls get the read-ahead buffer, pushes the socket.
  gnutls_transport_set_ptr2(s, &t->in_, reinterpret_cast<gnutls_transport_ptr_t>(static_cast<intptr_t>(fd)));
  gnutls_transport_set_pull_function(s, &TlsReadAhead::Pull);
  gnutls_transport_set_pull_timeout_function(s, &TlsReadAhead::PullTimeout);
  gnutls_handshake_set_timeout(s, static_cast<unsigned>(options_.handshake_timeout_ms));
  int rc;
  do {
    rc = gnutls_handshake(s);
  } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
  if (rc < 0) return absl::UnauthenticatedError(absl::StrCat("TLS handshake failed: ", GnutlsError(rc)));
  // The records from here on (TLS 1.3): GnuTLS read exactly the handshake's records, so what
  // the read-ahead holds past them is the client's first records.
  if (options_.records == "tmem") t->records_ = TlsRecords::Take(s, t->secrets_);
  gnutls_memset(&t->secrets_, 0, sizeof(t->secrets_));
  TMEM_RETURN_IF_ERROR(CheckPeer(*t));
  (t->records_ != nullptr ? socket_own_ : socket_gnutls_).fetch_add(1, std::memory_order_relaxed);
  return t;
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsContext::AcceptInMemory(std::vector<uint8_t>* out) const {
  absl::StatusOr<std::unique_ptr<TlsSession>> made = NewSession(/*nonblocking=*/true);
  if (!made.ok()) return made.status();
  std::unique_ptr<TlsSession> t = std::move(*made);
  auto s = static_cast<gnutls_session_t>(t->session_);
  t->memory_ = true;
  t->mem_out_ = out;
  gnutls_transport_set_ptr(s, t.get());
  gnutls_transport_set_pull_function(s, &TlsSession::MemoryPull);
  gnutls_transport_set_pull_timeout_function(s, &TlsSession::MemoryPullTimeout);
  gnutls_transport_set_vec_push_function(s, &TlsSession::MemoryPush);
  return std::unique_ptr<TlsSession>(std::move(t));
}

absl::Status TlsContext::CheckPeer(TlsSession& t) const {
  auto s = static_cast<gnutls_session_t>(t.session_);
  if (gnutls_auth_get_type(s) == GNUTLS_CRD_PSK) {
    const char* user = gnutls_psk_server_get_username(s);
    t.psk_identity_ = user != nullptr ? user : "";
    if (t.psk_identity_.empty()) return absl::UnauthenticatedError("TLS-PSK without an identity");
    return absl::OkStatus();
  }
  unsigned list_size = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(s, &list_size);
  if (certs == nullptr || list_size == 0) {
    if (options_.client_auth == "require") {
      return absl::UnauthenticatedError(absl::StrCat(kNoCertificate, " (tls.client_auth is require)"));
    }
    return absl::OkStatus();
  }
  // The chain, the validity times and the purpose: a certificate for servers only (extended key
  // usage without clientAuth) does not make a client.
  unsigned status = 0;
  gnutls_typed_vdata_st purpose = ClientPurpose();
  int rc = gnutls_certificate_verify_peers(s, &purpose, 1, &status);
  if (rc < 0) return absl::UnauthenticatedError(absl::StrCat("client certificate: ", GnutlsError(rc)));
  if (status != 0) return VerificationFailure(status, CertificateNames(certs[0], "any"));
  t.has_certificate_ = true;
  t.names_ = CertificateNames(certs[0], options_.tenant_from);
  return absl::OkStatus();
}

absl::Status TlsContext::VerifyClientCertificate(absl::string_view leaf_pem, absl::string_view chain_pem) const {
  std::shared_ptr<Credentials> c = Current();
  if (c->x509 == nullptr) return absl::FailedPreconditionError("no tls.ca to verify client certificates with");
  if (leaf_pem.empty()) return absl::UnauthenticatedError(kNoCertificate);
  // The leaf first, then the chain's certificates other than the leaf (a server-side chain may
  // or may not repeat it).
  std::vector<gnutls_x509_crt_t> certs;
  auto import = [&](absl::string_view pem) -> int {
    gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(pem.data())),
                     static_cast<unsigned>(pem.size())};
    gnutls_x509_crt_t* list = nullptr;
    unsigned n = 0;
    const int rc = gnutls_x509_crt_list_import2(&list, &n, &d, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0) return rc;
    for (unsigned i = 0; i < n; ++i) {
      bool repeat = !certs.empty() && gnutls_x509_crt_equals(certs[0], list[i]) != 0;
      if (repeat) {
        gnutls_x509_crt_deinit(list[i]);
      } else {
        certs.push_back(list[i]);
      }
    }
    gnutls_free(list);
    return 0;
  };
  int rc = import(leaf_pem);
  if (rc >= 0 && certs.size() == 1 && !chain_pem.empty()) rc = import(chain_pem);
  absl::Status result;
  if (rc < 0 || certs.empty()) {
    result = absl::UnauthenticatedError(absl::StrCat("client certificate: ", rc < 0 ? GnutlsError(rc) : "empty"));
  } else {
    gnutls_x509_trust_list_t trust = nullptr;
    gnutls_certificate_get_trust_list(c->x509, &trust);
    unsigned status = 0;
    gnutls_typed_vdata_st purpose = ClientPurpose();
    rc = gnutls_x509_trust_list_verify_crt2(trust, certs.data(), static_cast<unsigned>(certs.size()), &purpose, 1, 0,
                                            &status, nullptr);
    if (rc < 0) {
      result = absl::UnauthenticatedError(absl::StrCat("client certificate: ", GnutlsError(rc)));
    } else if (status != 0) {
      result = VerificationFailure(status, CertificateNames(certs[0], "any"));
    }
  }
  for (gnutls_x509_crt_t crt : certs) gnutls_x509_crt_deinit(crt);
  return result;
}

TlsSession::~TlsSession() {
  gnutls_memset(&secrets_, 0, sizeof(secrets_));
  if (session_ != nullptr) {
    auto s = static_cast<gnutls_session_t>(session_);
    // The close_notify alert: at most a second's wait for a peer that does not read.
    timeval tv{1, 0};
    if (in_.fd() >= 0) ::setsockopt(in_.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    // A memory session's close_notify would go into a buffer nobody sends: skipped. With the
    // records taken over, GnuTLS's sequence numbers are stale: the alert is sealed here.
    if (!memory_ && records_ != nullptr && !send_failed_) {
      std::vector<uint8_t> alert;
      if (records_->SealCloseNotify(&alert)) {
        iovec iov{alert.data(), alert.size()};
        [[maybe_unused]] bool sent = SocketWriteFullV(in_.fd(), &iov, 1);
      }
    } else if (!memory_) {
      gnutls_bye(s, GNUTLS_SHUT_WR);
    }
    gnutls_deinit(s);
  }
}

ssize_t TlsSession::Recv(void* buf, size_t len) {
  if (records_ != nullptr) return RecvRecords(static_cast<uint8_t*>(buf), len);
  auto s = static_cast<gnutls_session_t>(session_);
  auto* out = static_cast<uint8_t*>(buf);
  size_t got = 0;
  while (got < len) {
    ssize_t n;
    if (pending_error_ != 0) {
      n = std::exchange(pending_error_, 0);
    } else {
      if (got > 0) {
        // Only what is here already: records GnuTLS holds decrypted, or bytes in the read-ahead
        // buffer (a record there in part is kept by GnuTLS until the next call).
        if (gnutls_record_check_pending(s) == 0 && !in_.buffered()) break;
        in_.set_no_wait(true);
      }
      n = gnutls_record_recv(s, out + got, len - got);
      in_.set_no_wait(false);
    }
    if (n > 0) {
      got += static_cast<size_t>(n);
      continue;
    }
    if (got > 0) {
      // What was read goes up first; the end (GnuTLS repeats it) or the error comes next time.
      if (n < 0 && n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED) pending_error_ = static_cast<int>(n);
      break;
    }
    if (n == 0) return 0;
    if (n == GNUTLS_E_INTERRUPTED) continue;
    if (n == GNUTLS_E_PREMATURE_TERMINATION) return 0;
    return -1;
  }
  return static_cast<ssize_t>(got);
}

bool TlsSession::SendAll(const iovec* iov, int count) {
  if (records_ != nullptr) return SendRecords(iov, count);
  auto s = static_cast<gnutls_session_t>(session_);
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  // Small replies leave as one record; large ones are not copied into a cork buffer.
  const bool cork = total <= (64 << 10) && count > 1;
  if (cork) gnutls_record_cork(s);
  for (int i = 0; i < count; ++i) {
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left > 0) {
      ssize_t n = gnutls_record_send(s, p, left);
      if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN) continue;
      if (n <= 0) return false;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  if (cork) {
    while (true) {
      int rc = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);
      if (rc >= 0) break;
      if (rc != GNUTLS_E_INTERRUPTED && rc != GNUTLS_E_AGAIN) return false;
    }
  }
  return true;
}

ssize_t TlsSession::MemoryPull(void* self, void* data, size_t len) {
  auto* t = static_cast<TlsSession*>(self);
  if (t->mem_in_pos_ == t->mem_in_.size()) {
    errno = EAGAIN;
    return -1;
  }
  const size_t k = std::min(len, t->mem_in_.size() - t->mem_in_pos_);
  std::memcpy(data, t->mem_in_.data() + t->mem_in_pos_, k);
  t->mem_in_pos_ += k;
  if (t->mem_in_pos_ == t->mem_in_.size()) {
    t->mem_in_.clear();
    t->mem_in_pos_ = 0;
  }
  return static_cast<ssize_t>(k);
}

int TlsSession::MemoryPullTimeout(void* self, unsigned) {
  auto* t = static_cast<TlsSession*>(self);
  return t->mem_in_pos_ < t->mem_in_.size() ? 1 : 0;
}

ssize_t TlsSession::MemoryPush(void* self, const iovec* iov, int count) {
  auto* t = static_cast<TlsSession*>(self);
  size_t total = 0;
  for (int i = 0; i < count; ++i) {
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    t->mem_out_->insert(t->mem_out_->end(), p, p + iov[i].iov_len);
    total += iov[i].iov_len;
  }
  return static_cast<ssize_t>(total);
}

void TlsSession::Feed(const uint8_t* data, size_t len) {
  if (records_ != nullptr) {
    // Decrypt keeps or drops every lent byte before it returns 0 or -1; a caller that fed again
    // before that broke the contract, and the bytes lent then may be gone: the stream ends.
    if (lent_len_ > 0) pending_error_ = GNUTLS_E_INTERNAL_ERROR;
    lent_ = data;
    lent_len_ = len;
    return;
  }
  if (mem_in_pos_ > 0 && mem_in_pos_ == mem_in_.size()) {
    mem_in_.clear();
    mem_in_pos_ = 0;
  }
  mem_in_.insert(mem_in_.end(), data, data + len);
}

absl::StatusOr<bool> TlsSession::Handshake(const TlsContext& context) {
  auto s = static_cast<gnutls_session_t>(session_);
  int rc = 0;
  for (int tries = 0; tries < 64; ++tries) {
    rc = gnutls_handshake(s);
    if (rc == GNUTLS_E_AGAIN) return false;  // it needs more input than was fed
    // A warning alert or an interruption: what was fed may still hold the rest of the flight.
    if (rc < 0 && gnutls_error_is_fatal(rc) == 0) continue;
    break;
  }
  if (rc < 0 && gnutls_error_is_fatal(rc) == 0) return false;
  if (rc < 0) return absl::UnauthenticatedError(absl::StrCat("TLS handshake failed: ", GnutlsError(rc)));
  // The records from here on (TLS 1.3); what was fed past the handshake stays in mem_in_.
  if (context.options().records == "tmem") records_ = TlsRecords::Take(s, secrets_);
  gnutls_memset(&secrets_, 0, sizeof(secrets_));
  TMEM_RETURN_IF_ERROR(context.CheckPeer(*this));
  return true;
}

ssize_t TlsSession::Decrypt(void* buf, size_t len) {
  if (records_ != nullptr) return OpenRecords(static_cast<uint8_t*>(buf), len);
  auto s = static_cast<gnutls_session_t>(session_);
  for (int again = 0;;) {
    const ssize_t n = gnutls_record_recv(s, buf, len);
    if (n > 0) return n;
    // GnuTLS answers a record that carried no data (a key update) with AGAIN too: while bytes
    // fed are still unread, that is not "no whole record yet" (bounded: a record in part ends it).
    if (n == GNUTLS_E_AGAIN && mem_in_pos_ < mem_in_.size() && ++again < 64) continue;
    if (n == GNUTLS_E_AGAIN) return 0;
    if (n == GNUTLS_E_INTERRUPTED) continue;
    // A non-fatal alert or a rehandshake request: nothing for the reader; go on.
    if (n < 0 && gnutls_error_is_fatal(static_cast<int>(n)) == 0) continue;
    return -1;  // 0 (close_notify) or a fatal error
  }
}

bool TlsSession::Encrypt(const iovec* iov, int count) {
  if (records_ != nullptr) return records_->Seal(iov, count, mem_out_);
  auto s = static_cast<gnutls_session_t>(session_);
  for (int i = 0; i < count; ++i) {
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left > 0) {
      // The push never blocks (it appends to memory), so a send is never GNUTLS_E_AGAIN.
      const ssize_t n = gnutls_record_send(s, p, left);
      if (n == GNUTLS_E_INTERRUPTED) continue;
      if (n <= 0) return false;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  return true;
}

}  // namespace tmem::trust
