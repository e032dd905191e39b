// Accountability: refused authentications, refused calls and admin mutations, counted for
// /metrics and logged with the tenant (or the credential that failed).
//
// Thread-safety: every method is thread-safe (atomic counters; the log is line-atomic).
#ifndef TMEM_SERVER_TRUST_AUDIT_H_
#define TMEM_SERVER_TRUST_AUDIT_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/stats.h"
#include "server/trust/tenants.h"

namespace tmem::trust {

class Audit {
 public:
  // Why a peer was refused.
  enum class Refusal {
    kTls,            // the TLS handshake failed (no, foreign or expired certificate; bad PSK)
    kUnknownTenant,  // a verified certificate or PSK identity that names no configured tenant
    kTlsRequired,    // a plaintext request where TLS is required
    kPermission,     // an authenticated tenant asked for what its roles or allow lists deny
    kCount
  };
  // `listener`: "grpc", "nbd" or "wire". `detail`: the certificate or identity that failed, and why.
  void Refused(absl::string_view listener, Refusal why, absl::string_view detail);
  // An Admin or pool mutation by `who` ("ExportControl DRAIN export=disk0").
  void Mutation(const Identity& who, absl::string_view what);
  // A plaintext listener that is not loopback, allowed by insecure_plaintext.
  void set_insecure_listeners(uint64_t n) { insecure_listeners_.store(n, std::memory_order_relaxed); }

  uint64_t refused(absl::string_view listener, Refusal why) const;
  uint64_t mutations() const { return mutations_.load(std::memory_order_relaxed); }
  void VisitStats(StatsVisitor& v) const;

 private:
  static constexpr int kListeners = 3;  // grpc, nbd, wire
  std::atomic<uint64_t> refused_[kListeners][static_cast<int>(Refusal::kCount)] = {};
  std::atomic<uint64_t> mutations_{0};
  std::atomic<uint64_t> insecure_listeners_{0};
};

}  // namespace tmem::trust

#endif  // TMEM_SERVER_TRUST_AUDIT_H_
