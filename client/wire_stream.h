// WireStream: a PageStream over one page wire protocol connection (docs/wire.md).
//
// A writer thread connects (TCP, then TLS with the client's certificate when configured), sends
// HELLO and then every operation queued meanwhile with one send; from then on each submitting
// thread encodes and sends its own request (no handoff). Replies are read by the threads that
// wait for them (leader and followers): a waiter that finds no one reading the socket takes the
// read role and reads until its own reply came, handing out every reply it meets by request id
// (a get's hits straight into the caller's buffers); then it passes the role on. A caller on
// its own connection thus sends and reads its replies itself, with no thread between it and
// the socket. A reader thread takes the role only when no one has waited for a while, so that
// a connection the server closes is noticed while idle; a waiter pulls it out of its poll
// through an eventfd. The constructor never blocks: a
// server that cannot be reached breaks the stream (UNAVAILABLE), as does a refused HELLO (the reply's status and words
// are kept in the failure).
//
// Thread-safety: every method is thread-safe.
// Lock order: send_mu_ -> mu_ -> Op's lock, and read_mu_ -> mu_ -> Op's lock (never the other
// way; send_mu_ and read_mu_ are never held together).
#ifndef TMEM_CLIENT_WIRE_STREAM_H_
#define TMEM_CLIENT_WIRE_STREAM_H_

#include <sys/uio.h>

#include <atomic>
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
#include "common/tls_read_ahead.h"
#include "common/tls_records.h"

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
  bool own_tls_records = true;              // TLS 1.3 records by common/tls_records, not GnuTLS
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
  // Reads for `op` as Wait does (taking the read role when free).
  bool Await(Op& op, std::chrono::steady_clock::time_point deadline) override;
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
  // The idle reader (above).
  void ReaderLoop();
  enum class Pump { kProgress, kQuiet, kBroken };
  // With the read role: hands out the complete replies buffered; if there were none, waits up
  // to `timeout_ms` for bytes (or for a kick on wake_fd_ when `kickable`), reads them and hands
  // out what completed. kBroken once the stream is broken (it breaks it on the end of the
  // connection, an error or a bad reply).
  Pump PumpLocked(int timeout_ms, bool kickable) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  // Hands out every complete reply in rbuf_; a non-OK status is why the stream must break.
  absl::Status HandleRepliesLocked(size_t* handled) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  // Wakes the waiters of every op in flight (the read role is free: one of them takes it).
  void WakeWaiters();
  // Connects, handshakes and sends HELLO; false (stream broken) on failure.
  bool Connect();
  // The TLS session over the connected socket, handshake done (wire_stream_tls.cc); false after
  // Break.
  bool StartTls(int fd);
  void Break(const absl::Status& why);
  bool SendAll(const uint8_t* data, size_t len) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_);
  // Sends every byte of the iovecs (modified in place).
  bool SendAllV(iovec* iov, int count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_);
  // TLS with TlsRecords (wire_stream_tls.cc): every byte of the iovecs sealed into `sealed` and
  // sent; the whole records received opened into rbuf_ past rend_ (the bytes written, for the
  // caller to add to rend_; 0 at the end of the stream or on an error).
  bool SealAndSend(const iovec* iov, int count, std::vector<uint8_t>* sealed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_);
  ssize_t OpenRecordsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  // Reads exactly `len` bytes; false at the end or on an error.
  bool ReadAll(uint8_t* data, size_t len);

  const WireStreamOptions options_;
  int fd_ = -1;              // set by Connect before the reader starts; closed by the destructor
  void* session_ = nullptr;  // gnutls_session_t (TLS), same lifetime as fd_
  // TLS 1.3 after the handshake: the records (sealed under send_mu_, opened under read_mu_), and
  // the application secrets of the handshake they came from.
  std::unique_ptr<TlsRecords> records_;
  TlsRecords::Secrets secrets_;

  // Held while a request is encoded and sent, so that requests leave in the order of their ids.
  Mutex send_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::vector<uint8_t> send_buf_ ABSL_GUARDED_BY(send_mu_);
  std::vector<iovec> send_iov_ ABSL_GUARDED_BY(send_mu_);
  std::vector<uint8_t> gathered_ ABSL_GUARDED_BY(send_mu_);  // TLS: one request's records
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

  // The read role and what it owns: the bytes read and not yet handed out, [rstart_, rend_).
  Mutex read_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::vector<uint8_t> rbuf_ ABSL_GUARDED_BY(read_mu_);
  size_t rstart_ ABSL_GUARDED_BY(read_mu_) = 0;
  size_t rend_ ABSL_GUARDED_BY(read_mu_) = 0;
  // TLS: ciphertext received ahead of GnuTLS (its pull function), so that one recv brings a
  // reply's many records. Used by the thread in the handshake, then only under read_mu_ (GnuTLS
  // reads only there).
  static constexpr size_t kReadAheadBytes = 256 << 10;
  TlsReadAhead ahead_;
  bool records_failed_ ABSL_GUARDED_BY(read_mu_) = false;  // TLS records: the stream ended
  int wake_fd_ = -1;                                       // eventfd: a waiter pulls the idle reader out of its poll
  std::atomic<int> waiters_{0};                            // threads inside Wait
  std::atomic<int64_t> last_wait_ns_{0};                   // steady clock when a waiter last left Wait
  std::atomic<bool> idle_reading_{false};
  // Set (release) once the connection and its TLS session are up and HELLO is sent: fd_ and
  // session_ may be read by a reader only from then on.
  std::atomic<bool> readable_{false};

  std::thread writer_;
  std::thread reader_;
};

}  // namespace tmem::client

#endif  // TMEM_CLIENT_WIRE_STREAM_H_
