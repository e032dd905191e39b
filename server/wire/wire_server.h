// WireServer: the page wire protocol's listeners and event loops (docs/wire.md).
//
// One event loop (epoll, level-triggered) per thread, `threads` of them (default: one per core).
// Every loop waits on every listener (EPOLLEXCLUSIVE: one loop is woken per connection), so the
// loop that accepts a connection owns it for its life: its bytes are read, its requests run on
// the engine and its replies sent on that one thread, with no handoff. Each turn of a loop reads
// what every ready connection has, answers every whole request (RequestLoop), then sends each
// connection's replies with one send.
//
// TLS (a listener with `tls`): the handshake runs inside the loop in memory mode
// (TlsSession::Feed/Handshake), so a slow or silent peer holds no thread; the peer's certificate
// (or PSK identity) names its tenant as on the other listeners. A connection that has not
// finished its TLS handshake and HELLO within `handshake_timeout_ms`, or that is idle for
// `idle_timeout_ms`, is closed; past `max_connections` a new connection is closed at once.
//
// Thread-safety: Start and Stop from one thread; VisitStats and ports from any.
// Locks: none on the request path. Each loop's connections are its own; counters are atomics.
#ifndef TMEM_SERVER_WIRE_WIRE_SERVER_H_
#define TMEM_SERVER_WIRE_WIRE_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/pool/pool_engine.h"
#include "server/trust/audit.h"
#include "server/trust/tenants.h"
#include "server/trust/tls_context.h"
#include "server/wire/request_loop.h"

namespace tmem::wire {

struct WireServerOptions {
  struct Listener {
    std::string address;  // host:port ([v6]:port); port 0 picks a free one (see ports())
    bool tls = false;     // TLS from the first byte (needs `tls`)
  };
  std::vector<Listener> listeners;
  int threads = 0;  // event loops; 0 = one per core
  int max_connections = 1024;
  int max_connections_per_tenant = 256;  // taken at HELLO
  int64_t handshake_timeout_ms = 10000;
  int64_t idle_timeout_ms = 300000;
  LoopLimits limits;
  // Borrowed; outlive the server. `tls` may be null when no listener has tls; `audit` may be null.
  pool::PoolEngine* engine = nullptr;
  const trust::TenantTable* tenants = nullptr;
  const trust::TlsContext* tls = nullptr;
  trust::Audit* audit = nullptr;
};

class WireServer {
 public:
  // Binds every listener (UNAVAILABLE naming the address that cannot be bound, InvalidArgument
  // for a malformed one or a TLS listener without a TLS context) and starts the loops.
  static absl::StatusOr<std::unique_ptr<WireServer>> Start(const WireServerOptions& options);
  ~WireServer();
  WireServer(const WireServer&) = delete;
  WireServer& operator=(const WireServer&) = delete;

  // Stops accepting, sends what replies it can without waiting, closes every connection and
  // joins the loops. Requests being run finish first. Idempotent.
  void Stop();

  // The bound ports, in the order of options.listeners.
  const std::vector<int>& ports() const { return ports_; }
  int64_t connections_open() const;
  // Connections open on each event loop (they are spread at accept: the loop with the fewest
  // takes the next one).
  std::vector<int64_t> connections_by_loop() const;
  void VisitStats(StatsVisitor& v) const;  // wire_server_stats.cc

  struct Loop;  // wire_server.cc

 private:
  explicit WireServer(const WireServerOptions& options);
  absl::Status Listen();
  void RunLoop(Loop& loop);
  // Each loop's counters.
  std::vector<const WireCounters*> loop_counters() const;

  const WireServerOptions options_;
  std::vector<int> listen_fds_;
  std::vector<bool> listen_tls_;
  std::vector<int> ports_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};  // set by Stop; read by the loops (acquire)
  std::atomic<int> open_{0};           // connections open over every loop (max_connections)
  std::unique_ptr<TenantConnections> tenant_connections_;
  // Kept open to be closed when accept fails for want of descriptors (EMFILE): the pending
  // connection is then accepted and closed at once instead of waking every loop forever.
  Mutex spare_mu_;  // the loops' accepts of the spare's turn
  int spare_fd_ ABSL_GUARDED_BY(spare_mu_) = -1;
};

}  // namespace tmem::wire

#endif  // TMEM_SERVER_WIRE_WIRE_SERVER_H_
