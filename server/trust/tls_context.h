// TLS for the listeners that speak it themselves (NBD's NBD_OPT_STARTTLS; gRPC uses gRPC's own
// TLS), through GnuTLS as nbdkit, libnbd and qemu do: X.509 with client certificates verified
// against the CA, and TLS-PSK with the keys of the PSK file.
//
// The credentials are reloaded by Reload() (tmemd calls it on SIGHUP and when a file changes);
// a reload that fails keeps the credentials in use and says why. A handshake uses the
// credentials current when it starts.
//
// Thread-safety: TlsContext is thread-safe. A TlsSession may be used by two threads at once,
// one receiving and one sending (GnuTLS allows exactly that; on tmem's records the receiver owns
// the read-ahead, the staged plaintext and the read direction, the sender its sealed buffer and
// the write direction); nothing else.
#ifndef TMEM_SERVER_TRUST_TLS_CONTEXT_H_
#define TMEM_SERVER_TRUST_TLS_CONTEXT_H_

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/mutex.h"
#include "common/tls_read_ahead.h"
#include "common/tls_records.h"
#include "server/trust/tls_options.h"

namespace tmem::trust {

struct Credentials;  // tls_context.cc
class TlsContext;

// One server-side TLS session over a connected socket.
class TlsSession {
 public:
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Like recv(2): bytes read (> 0), 0 at the end of the stream, -1 on an error. Waits for one
  // record, then takes every further record already received, without waiting (as recv(2)
  // returns every byte already there): a client's requests sent back to back arrive in one call.
  ssize_t Recv(void* buf, size_t len);
  // Sends every byte of the iovecs as few records; false on an error.
  bool SendAll(const iovec* iov, int count);

  // Memory mode (TlsContext::AcceptInMemory), for event loops that never block on a socket: the
  // owner feeds the ciphertext it received and sends what the session appends to its output
  // buffer. The owner reads and writes the socket; the session never touches one.
  // Once the handshake is done, a TLS 1.3 session's records are sealed and opened by TlsRecords
  // (common/tls_records.h) instead of GnuTLS: Feed then borrows `data` (no copy) until Decrypt
  // returns 0 or -1, and keeps only the bytes of a record not whole yet.
  void Feed(const uint8_t* data, size_t len);
  // Steps the handshake with what was fed: true once done and the peer checked (as Accept
  // checks it), false while it needs more input; UNAUTHENTICATED when it failed.
  absl::StatusOr<bool> Handshake(const TlsContext& context);
  // Plaintext bytes decrypted from what was fed (> 0), 0 when no whole record is here yet, -1 at
  // the peer's close or on an error.
  ssize_t Decrypt(void* buf, size_t len);
  // Encrypts every byte of the iovecs into the output buffer; false on an error.
  bool Encrypt(const iovec* iov, int count);
  // Whether TlsRecords has the records (TLS 1.3 with tls.records: tmem, after the handshake).
  bool own_records() const { return records_ != nullptr; }
  const TlsRecords* records() const { return records_.get(); }

  // Who the peer proved itself to be.
  bool psk() const { return !psk_identity_.empty(); }
  const std::string& psk_identity() const { return psk_identity_; }
  bool has_certificate() const { return has_certificate_; }
  // The verified client certificate's names by `tenant_from`: subject CN and/or DNS/URI SANs.
  const std::vector<std::string>& certificate_names() const { return names_; }
  const Credentials& credentials() const { return *creds_; }

 private:
  friend class TlsContext;
  TlsSession() = default;
  static ssize_t MemoryPull(void* self, void* data, size_t len);
  static int MemoryPullTimeout(void* self, unsigned ms);
  static ssize_t MemoryPush(void* self, const iovec* iov, int count);
  static int KeepSecrets(gnutls_session_t session, gnutls_record_encryption_level_t level, const void* read,
                         const void* write, size_t size);
  // Decrypt, Recv and SendAll with TlsRecords.
  ssize_t OpenRecords(uint8_t* buf, size_t len);
  ssize_t RecvRecords(uint8_t* out, size_t len);
  // Up to `len` bytes of the plaintext opened aside (staged_); the bytes given.
  size_t TakeStaged(uint8_t* out, size_t len);
  bool SendRecords(const iovec* iov, int count);

  void* session_ = nullptr;  // gnutls_session_t
  TlsReadAhead in_;          // reads from the socket; used only by the receiving thread
  std::shared_ptr<Credentials> creds_;
  // Memory mode: ciphertext fed and not yet taken by GnuTLS, and the owner's output buffer.
  bool memory_ = false;
  std::vector<uint8_t> mem_in_;
  size_t mem_in_pos_ = 0;
  std::vector<uint8_t>* mem_out_ = nullptr;
  // After the handshake (TLS 1.3): the records, the application secrets they came from; in
  // memory mode what Feed lent and Decrypt has not read yet; plaintext of a record opened for a
  // read with less room than the record held; the sender's sealed records (socket mode).
  TlsRecords::Secrets secrets_;
  std::unique_ptr<TlsRecords> records_;
  const uint8_t* lent_ = nullptr;
  size_t lent_len_ = 0;
  std::vector<uint8_t> staged_;  // the receiving thread's (both modes): [staged_pos_, staged_end_)
  size_t staged_pos_ = 0, staged_end_ = 0;
  std::vector<uint8_t> sealed_;  // the sending thread's (socket mode)
  bool send_failed_ = false;     // the sending thread's: a record may have left in part
  // A GnuTLS error met after some bytes were read: returned by the next Recv (GnuTLS reports
  // some, such as a renegotiation request, only once).
  int pending_error_ = 0;
  std::string psk_identity_;
  bool has_certificate_ = false;
  std::vector<std::string> names_;
};

class TlsContext {
 public:
  // Loads the certificate and key, the CA and the PSK file (whichever are set); InvalidArgument
  // naming the file and GnuTLS's reason when one does not load (e.g. a key that does not match
  // the certificate).
  static absl::StatusOr<std::unique_ptr<TlsContext>> Create(const TlsOptions& options);
  ~TlsContext();

  // Loads every file again. On success later handshakes use the new credentials; on failure the
  // old ones stay and the error says why.
  absl::Status Reload();
  // Whether any file's modification time changed since the last load.
  bool FilesChanged() const;

  // The server side of a handshake on `fd` (blocking), bounded by the handshake timeout. Fails
  // (and the connection must close) on a handshake error, a certificate that does not verify
  // (wrong CA, expired, not yet valid), or no certificate when client_auth is "require" and the
  // peer did not use PSK.
  absl::StatusOr<std::unique_ptr<TlsSession>> Accept(int fd) const;
  // The server side of a handshake in memory mode (TlsSession::Feed/Handshake): nothing blocks;
  // the ciphertext to send is appended to `out`, which must outlive the session. The caller
  // bounds the handshake's time.
  absl::StatusOr<std::unique_ptr<TlsSession>> AcceptInMemory(std::vector<uint8_t>* out) const;

  // Verifies a client certificate that another TLS stack took in (gRPC's): `leaf_pem` and any
  // intermediates of `chain_pem` against the current CA, by the same rules and in the same words
  // as Accept. UNAUTHENTICATED saying why (no certificate, another CA, expired, not yet valid).
  absl::Status VerifyClientCertificate(absl::string_view leaf_pem, absl::string_view chain_pem) const;

  const TlsOptions& options() const { return options_; }
  // Sessions over a socket (Accept) whose handshake succeeded, by who has their records.
  uint64_t socket_sessions_own_records() const { return socket_own_.load(std::memory_order_relaxed); }
  uint64_t socket_sessions_gnutls_records() const { return socket_gnutls_.load(std::memory_order_relaxed); }

 private:
  explicit TlsContext(const TlsOptions& o) : options_(o) {}
  friend class TlsSession;
  static absl::StatusOr<std::shared_ptr<Credentials>> Load(const TlsOptions& o);
  // A server session with the current credentials, without a transport.
  absl::StatusOr<std::unique_ptr<TlsSession>> NewSession(bool nonblocking) const;
  // After a handshake: the peer's PSK identity or certificate, checked (chain, times, purpose;
  // client_auth "require" wants one); its names recorded in `t`.
  absl::Status CheckPeer(TlsSession& t) const;
  std::shared_ptr<Credentials> Current() const;

  const TlsOptions options_;
  mutable Mutex mu_;
  std::shared_ptr<Credentials> creds_ ABSL_GUARDED_BY(mu_);
  mutable std::atomic<uint64_t> socket_own_{0}, socket_gnutls_{0};
};

}  // namespace tmem::trust

#endif  // TMEM_SERVER_TRUST_TLS_CONTEXT_H_
