// WireStream: a PageStream over one page wire protocol connection (docs/wire.md).
//
// A writer thread connects (TCP, then TLS with the client's certificate when configured), sends
// HELLO and then every operation queued meanwhile with one send; from then on each submitting
// thread encodes and sends its own request (no handoff); a reader thread matches replies to
// operations by request id, writing a get's hits straight into the caller's buffers. The constructor never blocks: a
// server that cannot be reached breaks the stream (UNAVAILABLE), as does a refused HELLO (the reply's status and words
// are kept in the failure).
//
// Thread-safety: every method is thread-safe.
// Lock order: send_mu_ -> mu_ -> Op's lock (never the other way).
#ifndef TMEM_CLIENT_WIRE_STREAM_H_
#define TMEM_CLIENT_WIRE_STREAM_H_

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "client/page_stream.h"
#include "common/mutex.h"

namespace tmem::client {

// The client's TLS credentials for wire connections, read once (GnuTLS).
class WireTlsCredentials {
 public:
  // `ca`, `cert`, `key`: PEM files (cert and key may be empty: no client certificate).
  // InvalidArgument naming a file that does not load.
  static absl::StatusOr<std::shared_ptr<WireTlsCredentials>> Load(const std::string& ca, const std::string& cert,
                                                                  const std::string& key);
  ~WireTlsCredentials();
  void* gnutls_credentials() const { return creds_; }

 private:
  WireTlsCredentials() = default;
  void* creds_ = nullptr;  // gnutls_certificate_credentials_t
};

struct WireStreamOptions {
  std::string host;  // a name or an address
  int port = 0;
  std::shared_ptr<WireTlsCredentials> tls;  // null: plaintext
  std::string server_name;                  // verified in the server's certificate ("": host)
  int64_t connect_timeout_ms = 1000;
};

class WireStream final : public PageStream {
 public:
  explicit WireStream(WireStreamOptions options);
  ~WireStream() override;
  WireStream(const WireStream&) = delete;
  WireStream& operator=(const WireStream&) = delete;

  std::shared_ptr<Op> Submit(tmem::v1::SessionRequest request) override;
  std::shared_ptr<Op> SubmitGet(tmem::v1::SessionRequest request, std::vector<std::span<uint8_t>> outputs) override;
  // Once connected: the header and entries are built here and sent with the pages where the
  // caller holds them (one sendmsg; TLS: records made from them), without a copy of its own.
  std::shared_ptr<Op> SubmitPut(uint32_t pool_id, std::span<const PutView> pages) override;
  absl::StatusOr<tmem::v1::SessionResponse> Wait(Op& op, std::chrono::steady_clock::time_point deadline) override;
  void Cancel() override;
  bool broken() const override;
  uint64_t replies() const override;
  // The tenant the server says this connection is (after its HELLO reply; "" before).
  std::string tenant() const;

 private:
  // Once connected, the submitting thread encodes and sends its request itself (under send_mu_,
  // in id order); before, the writer thread sends what was queued.
  std::shared_ptr<Op> SubmitOp(std::shared_ptr<Op> op, tmem::v1::SessionRequest request);
  // A request id for `op`, now in flight; nullopt (and `op` failed) once the stream is broken.
  std::optional<uint64_t> RegisterLocked(const std::shared_ptr<Op>& op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriterLoop();
  void ReaderLoop();
  // Connects, handshakes and sends HELLO; false (stream broken) on failure.
  bool Connect();
  void Break(const absl::Status& why);
  bool SendAll(const uint8_t* data, size_t len);
  // Sends every byte of the iovecs (modified in place).
  bool SendAllV(iovec* iov, int count);
  // Reads exactly `len` bytes; false at the end or on an error.
  bool ReadAll(uint8_t* data, size_t len);

  const WireStreamOptions options_;
  int fd_ = -1;              // set by Connect before the reader starts; closed by the destructor
  void* session_ = nullptr;  // gnutls_session_t (TLS), same lifetime as fd_

  // Held while a request is encoded and sent, so that requests leave in the order of their ids.
  Mutex send_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::vector<uint8_t> send_buf_ ABSL_GUARDED_BY(send_mu_);
  std::vector<iovec> send_iov_ ABSL_GUARDED_BY(send_mu_);
  mutable Mutex mu_;
  CondVar cv_;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;  // the socket exists (Break shuts it down)
  bool ready_ ABSL_GUARDED_BY(mu_) = false;      // HELLO and the queue sent: submitters send themselves
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;    // 0 is HELLO's
  std::deque<std::pair<uint64_t, tmem::v1::SessionRequest>> queue_ ABSL_GUARDED_BY(mu_);
  // By request id; with the page size each get's reply carries.
  struct InFlight {
    std::shared_ptr<Op> op;
  };
  std::map<uint64_t, InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
  uint64_t replies_ ABSL_GUARDED_BY(mu_) = 0;
  std::string tenant_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_progress_ ABSL_GUARDED_BY(mu_);

  std::thread writer_;
  std::thread reader_;
};

}  // namespace tmem::client

#endif  // TMEM_CLIENT_WIRE_STREAM_H_
