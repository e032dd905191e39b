// The NBD server of tmemd: listeners (TCP and a unix socket), the fixed newstyle handshake
// (handshake.cc) and the transmission request loop (connection.cc), over exports that each
// serve a BlockBackend. Split as nbdkit splits it: handshake, request loop, backend.
//
// Concurrency (nbdkit's "parallel" model): each connection has up to `threads_per_connection`
// threads (started as requests arrive while every thread is busy); one at a time takes the
// next request off the socket (Connection::read_mu_), then
// runs it against the backend and sends its reply, so requests run in parallel and replies
// leave in the order they finish. One thread at a time is on the socket; small replies that
// complete meanwhile are queued and that thread sends them with its own in one write (fewer
// trips through the network stack and wakeups of the client under load). A connection keeps at
// most `max_requests_in_flight` requests and `max_bytes_in_flight` payload bytes in flight;
// past that it stops reading from the socket. For a backend whose small writes complete in
// memory (BackendCaps::buffered_writes), the thread that reads a small read or write runs it and
// the small ones buffered behind it itself, still holding read_mu_, and sends their replies in
// one write (a request that would wait runs after read_mu_ is let go); and while requests
// arrive several per read, the reader waits `gather_us` before each read from the socket so
// that they keep arriving together (gather.h).
// Lock order: Connection::read_mu_ -> Connection::mu_; Connection::reply_mu_ is a leaf (taken
// under read_mu_ by a batch, as are the backend's locks: a backend never takes a connection lock);
// NbdServer::mu_ is never held while a connection lock is taken.
#ifndef TMEM_SERVER_NBD_NBD_SERVER_H_
#define TMEM_SERVER_NBD_NBD_SERVER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/latency_histogram.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/backend/block_backend.h"
#include "server/trust/audit.h"
#include "server/trust/tenants.h"

namespace tmem::trust {
class TlsContext;
}

namespace tmem::nbd {

// One export: a name, a backend and its counters.
struct Export {
  std::string name;
  std::string description;
  bool read_only = false;
  bool tls_required = false;       // TLS-only: plaintext clients get NBD_REP_ERR_TLS_REQD
  std::vector<std::string> allow;  // trust::ExportAccess: who may open it, read-write or read-only
  std::unique_ptr<backend::BlockBackend> backend;

  // Per command (index: NBD command type 0..7; 8 = unknown).
  static constexpr int kCommands = 9;
  std::atomic<uint64_t> requests[kCommands] = {};
  std::atomic<uint64_t> errors[kCommands] = {};
  LatencyHistogram latency[kCommands];
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> bytes_written{0};
  // Requests run in a batch with others taken off the socket at once (BackendCaps::buffered_writes).
  std::atomic<uint64_t> batched_requests{0};
  // Waits before a read from the socket, to let a busy client's requests arrive together.
  std::atomic<uint64_t> gathers{0};
  std::atomic<uint64_t> connections_total{0};
  std::atomic<int64_t> connections_open{0};

  // The flags a connection sees; `read_only` (the tenant's access) adds NBD_FLAG_READ_ONLY.
  uint16_t TransmissionFlags(bool read_only = false) const;
};

struct NbdServerOptions {
  std::vector<std::string> listen;  // host:port (port 0 picks one); may be empty
  std::string unix_socket;          // path; "" = none
  int max_connections = 64;         // more are accepted and closed at once
  // Request and reply bytes in flight over all connections; a request that would pass it waits
  // (one alone is always taken). tmemd checks it against the memory it may use.
  uint64_t max_total_bytes_in_flight = 1ull << 30;
  int max_requests_in_flight = 128;            // per connection
  uint64_t max_bytes_in_flight = 64ull << 20;  // per connection
  int threads_per_connection = 16;
  // For backends with buffered writes: how long a connection's reader waits before reading
  // from the socket again while requests arrive several per read (gather.h); 0 = never.
  int gather_us = 30;
  int64_t shutdown_timeout_ms = 10000;
  // Trust (docs/nbd.md "TLS and tenants"). Borrowed; may be null: no NBD_OPT_STARTTLS / no audit.
  const trust::TlsContext* tls = nullptr;
  trust::Audit* audit = nullptr;
  trust::TenantTable tenants;       // who PSK identities and certificates are; the local tenant
  bool insecure_plaintext = false;  // plaintext peers off loopback are the local tenant too
  // The whole handshake (TLS included) must end by then, or the connection is closed. When
  // max_connections are open, a new connection closes the oldest one still in its handshake.
  int64_t handshake_timeout_ms = 10000;
};

class NbdServer {
 public:
  // Binds every listener (errors name the address) and starts serving.
  static absl::StatusOr<std::unique_ptr<NbdServer>> Start(const NbdServerOptions& options,
                                                          std::vector<std::unique_ptr<Export>> exports);
  // Stop() if not done.
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // Stops accepting, lets requests in flight finish (up to the shutdown timeout), answers later
  // ones with ESHUTDOWN, closes every connection, then flushes every export.
  void Stop();

  // Bound TCP ports, in the order of options.listen.
  const std::vector<int>& tcp_ports() const { return ports_; }
  const std::vector<std::unique_ptr<Export>>& exports() const { return exports_; }
  const Export* FindExport(const std::string& name) const;
  void VisitStats(StatsVisitor& visitor) const;

  uint64_t connections_refused() const { return refused_.load(); }

  const NbdServerOptions& options() const { return options_; }
  const trust::TenantTable& tenants() const { return options_.tenants; }
  // Called by a connection when its handshake ends (it no longer may be closed for a newcomer).
  void HandshakeDone(int fd);
  // The server-wide in-flight bound (max_total_bytes_in_flight), for connections.
  void AdmitBytes(uint64_t bytes);
  bool TryAdmitBytes(uint64_t bytes);
  void ReleaseBytes(uint64_t bytes);
  uint64_t total_bytes_in_flight() const;
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

 private:
  explicit NbdServer(const NbdServerOptions& options) : options_(options) {}
  absl::Status Listen();
  void AcceptLoop(int listen_fd);
  void Serve(uint64_t id, int fd);

  const NbdServerOptions options_;
  std::vector<std::unique_ptr<Export>> exports_;
  std::vector<int> listen_fds_;
  std::vector<int> ports_;
  std::vector<std::thread> acceptors_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> handshakes_evicted_{0};
  std::atomic<int> open_connections_{0};

  mutable Mutex bytes_mu_;  // a leaf: taken under Connection::mu_ (TryAdmit) and alone
  CondVar bytes_cv_;
  uint64_t total_bytes_ ABSL_GUARDED_BY(bytes_mu_) = 0;

  Mutex mu_;
  struct ConnectionThread {
    int fd = -1;
    std::thread thread;
    bool in_handshake = true;
    bool evicted = false;
  };
  // Closes the oldest connection still in its handshake; false if there is none.
  bool EvictOneHandshake() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<uint64_t, ConnectionThread> connections_ ABSL_GUARDED_BY(mu_);  // by connection id
  uint64_t next_connection_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<std::thread> finished_ ABSL_GUARDED_BY(mu_);  // to join
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

// Converts a backend error into the NBD error the protocol names (the one place): OK → 0,
// PermissionDenied → EPERM, InvalidArgument and OutOfRange → EINVAL, ResourceExhausted →
// ENOSPC, Cancelled (the server is stopping) → ESHUTDOWN, anything else → EIO.
uint32_t NbdErrorOf(const absl::Status& status);

// Drives one accepted connection to the end: handshake, then requests. For the listener and
// for fuzzing (which passes a socketpair end).
void ServeConnection(NbdServer& server, int fd);

}  // namespace tmem::nbd

#endif  // TMEM_SERVER_NBD_NBD_SERVER_H_
