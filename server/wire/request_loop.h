// RequestLoop: one wire connection's requests, without its socket. The event loop (wire_server)
// receives plaintext bytes into InputSpace(), calls Run(), and sends out(); the fuzzer drives it
// the same way. Each request is parsed, checked (pool/request_checks.h, the gRPC edge's checks),
// run on the engine and answered on the calling thread, in order — but for a GET whose pages are
// not all in RAM when the loop has DeviceReads: it waits for its device reads there, and its reply
// comes when they are done (Complete), after the replies of requests behind it. Replies carry
// their request's id; the protocol lets them come in any order. Each get is answered as of its
// lookup, before any later request of the connection ran.
//
// Bad input: a request whose header can be read but is wrong (unknown verb, lengths that do not
// match the verb and count, a bad entry, another tenant's or an unknown pool) is answered with
// its code and the connection goes on; a header that cannot be trusted (bad magic, a body past
// kMaxBodyBytes) or a failed handshake is answered with kReplyClosing and the loop closes
// (Run returns false once its reply is queued).
//
// Memory: the input holds at most one whole request beyond what was answered; Run stops taking
// requests while more than `max_pending_reply_bytes` of replies wait to be sent, pages of gets
// waiting for the device included (wants_input() turns false), so a client that never reads
// its replies holds a bounded amount.
//
// Thread-safety: none; one loop thread owns a RequestLoop. The engine is thread-safe.
#ifndef TMEM_SERVER_WIRE_REQUEST_LOOP_H_
#define TMEM_SERVER_WIRE_REQUEST_LOOP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/latency_histogram.h"
#include "common/mutex.h"
#include "server/pool/pool_engine.h"
#include "server/trust/audit.h"
#include "server/trust/tenants.h"
#include "server/wire/device_reads.h"
#include "server/wire/wire_format.h"

namespace tmem::wire {

// Counters of one event loop (summed over loops for /metrics). Written by the loop's thread
// only; read by the metrics thread (relaxed: monotonic counts).
struct WireCounters {
  std::atomic<uint64_t> requests[kMaxVerb + 1] = {};  // by verb (0: unreadable header)
  std::atomic<uint64_t> errors = {};                  // replies with a status other than OK
  std::atomic<uint64_t> pages_put = {};
  std::atomic<uint64_t> pages_got = {};  // hits sent
  std::atomic<uint64_t> bytes_in = {};
  std::atomic<uint64_t> bytes_out = {};
  std::atomic<uint64_t> connections_accepted = {};
  std::atomic<uint64_t> connections_refused = {};  // handshake failed, unknown tenant, no room
  std::atomic<uint64_t> connections_timed_out = {};
  std::atomic<int64_t> connections_open = {};
  std::atomic<int64_t> gets_waiting = {};  // gets waiting for their device reads now
  std::atomic<uint64_t> gets_waited = {};  // gets that waited for device reads
  // TLS sessions by who has their records (common/tls_records, or GnuTLS), and the key updates
  // of closed ones.
  std::atomic<uint64_t> tls_own_records = {}, tls_gnutls_records = {};
  std::atomic<uint64_t> tls_key_updates_received = {}, tls_key_updates_sent = {};
  // A request's time in tmemd, by verb: from the request whole in the loop's buffer to its reply
  // queued (a get that waits for the device included). Sending is not counted.
  LatencyHistogram durations[kMaxVerb + 1];
  // A waiting get's device reads: from its lookup (the reads queued; they enter the kernel at
  // the end of the loop's turn) to the loop reaping them.
  LatencyHistogram device_waits;
};

struct LoopLimits {
  uint32_t max_in_flight = 64;                // announced in the hello reply
  size_t max_pending_reply_bytes = 8u << 20;  // replies waiting to be sent before reading stops
};

// Connections per tenant, bounded (taken at HELLO, given back when the loop ends): one tenant
// cannot take every connection slot from the others. Thread-safety: thread-safe.
class TenantConnections {
 public:
  explicit TenantConnections(int max_per_tenant) : max_(max_per_tenant) {}
  bool Acquire(const std::string& tenant);
  void Release(const std::string& tenant);
  int max() const { return max_; }

 private:
  const int max_;
  Mutex mu_;
  std::map<std::string, int, std::less<>> open_ ABSL_GUARDED_BY(mu_);
};

class RequestLoop {
 public:
  // Borrows every pointer; they outlive the loop. `peer`: who the connection proved itself to
  // be (nullopt: a TLS peer whose certificate names no tenant; its hello is refused).
  // `audit` and `tenants` (no bound) may be null. `scratch`: where GET reads pages before they
  // are copied into the reply, shared by the loops of one thread (null: the loop's own).
  // `reads`: where gets wait for the device (null: they read in place); `context` is the
  // owner's, given back by context().
  RequestLoop(pool::PoolEngine* engine, std::optional<trust::Identity> peer, trust::Audit* audit,
              WireCounters* counters, const LoopLimits& limits, TenantConnections* tenants = nullptr,
              std::vector<uint8_t>* scratch = nullptr, DeviceReads* reads = nullptr, void* context = nullptr);
  ~RequestLoop();
  RequestLoop(const RequestLoop&) = delete;
  RequestLoop& operator=(const RequestLoop&) = delete;

  // Room for at least `min_bytes` more input; Received(n) commits what was written there.
  std::span<uint8_t> InputSpace(size_t min_bytes = 64 << 10);
  void Received(size_t n);

  // Answers every whole request received (while wants_input()). False when the connection must
  // close once out() is sent.
  bool Run();

  // Replies not yet sent; the owner sends a prefix and calls Sent with its length.
  std::span<const uint8_t> out() const { return {out_.data() + out_pos_, out_.size() - out_pos_}; }
  void Sent(size_t n);
  bool wants_input() const {
    return !closing_ && out_.size() - out_pos_ + pending_bytes_ <= limits_.max_pending_reply_bytes;
  }
  // A get whose device reads are done (DeviceReads::Reap): settles it and queues its reply
  // (none once a closing reply was queued).
  void Complete(std::unique_ptr<PendingGet> get);
  // Gets waiting for the device.
  size_t pending_gets() const { return pending_gets_; }
  void* context() const { return context_; }
  bool closing() const { return closing_; }
  // Whether no part of a request waits in the input.
  bool idle() const { return in_end_ == in_pos_ && skip_ == 0; }
  bool hello_done() const { return hello_done_; }

 private:
  // A header's checks that need no body: OK, or the answer (with whether to close). Runs as
  // soon as the header is in, so that no body is waited for (or buffered) in vain.
  absl::Status CheckHeader(const RequestHeader& h, bool* close) const;
  // One request whose body is whole in the input.
  void Handle(const RequestHeader& h, const uint8_t* body);
  void HandleHello(const RequestHeader& h, const uint8_t* body);
  // Each verb's work; OK or the status to answer.
  absl::Status DoPut(const RequestHeader& h, const uint8_t* body);
  // OK with *answered: the reply is queued (or will be, by Complete).
  absl::Status DoGet(const RequestHeader& h, const uint8_t* body, bool* answered);
  // The reply of a GET: outcomes[i] answers entry i, hits' pages at pages + i * page.
  void AppendGetReply(uint8_t verb, uint64_t request_id, const std::vector<pool::GetOutcome>& outcomes,
                      const uint8_t* pages, size_t page);
  absl::Status DoFlushPages(const RequestHeader& h, const uint8_t* body);
  absl::Status DoFlushObject(const RequestHeader& h, const uint8_t* body);
  absl::Status DoFlushPool(const RequestHeader& h);
  // The entries' object keys, checked; InvalidArgument naming the first bad one.
  absl::Status CheckEntries(const uint8_t* body, size_t count, size_t stride, bool index_zero);
  absl::StatusOr<pool::PoolInfo> Reach(uint32_t pool_id);

  // Appends a reply header (body follows from the caller) and returns its offset.
  size_t AppendHeader(uint8_t verb, uint64_t request_id, uint32_t status, uint16_t count, uint8_t flags);
  void FinishReply(size_t at);  // sets body_bytes from what follows the header at `at`
  void ReplyStatus(uint8_t verb, uint64_t request_id, const absl::Status& s, bool closing = false);

  pool::PoolEngine* const engine_;
  const std::optional<trust::Identity> peer_;
  trust::Audit* const audit_;
  WireCounters* const counters_;
  const LoopLimits limits_;

  std::vector<uint8_t> in_;  // a buffer: bytes [in_pos_, in_end_) are received and not yet taken
  size_t in_pos_ = 0;
  size_t in_end_ = 0;
  size_t need_ = 0;    // bytes the request at in_pos_ has in all (0: its header is not in yet)
  uint64_t skip_ = 0;  // body bytes of a refused request still to be dropped as they arrive
  std::vector<uint8_t> out_;
  size_t out_pos_ = 0;  // the first byte not yet sent
  bool hello_done_ = false;
  bool closing_ = false;
  TenantConnections* const tenants_;
  bool tenant_slot_ = false;  // holds one of tenants_ for peer_->tenant
  // Hits' pages between the engine's reads and the reply (grown to the largest batch seen).
  std::vector<uint8_t> own_scratch_;
  std::vector<uint8_t>& scratch_;
  std::vector<pool::PoolEngine::PagePut> puts_;
  std::vector<pool::PoolEngine::PageGet> gets_;
  DeviceReads* const reads_;
  void* const context_;
  size_t pending_gets_ = 0;
  int64_t started_ns_ = 0;    // when the request being handled was whole
  bool handed_off_ = false;   // the request being handled waits for the device (Complete answers)
  size_t pending_bytes_ = 0;  // pages of the gets waiting for the device
};

}  // namespace tmem::wire

#endif  // TMEM_SERVER_WIRE_REQUEST_LOOP_H_
