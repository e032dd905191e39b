#include "server/trust/audit.h"

#include "common/logging.h"

namespace tmem::trust {
namespace {

constexpr const char* kListenerNames[] = {"grpc", "nbd", "wire"};
constexpr const char* kRefusalNames[] = {"tls", "unknown_tenant", "tls_required", "permission"};

int ListenerIndex(absl::string_view listener) { return listener == "nbd" ? 1 : listener == "wire" ? 2 : 0; }

}  // namespace

void Audit::Refused(absl::string_view listener, Refusal why, absl::string_view detail) {
  refused_[ListenerIndex(listener)][static_cast<int>(why)].fetch_add(1, std::memory_order_relaxed);
  TMEM_LOG(Warning) << "refused " << std::string(listener) << " peer (" << kRefusalNames[static_cast<int>(why)]
                    << "): " << std::string(detail);
}

void Audit::Mutation(const Identity& who, absl::string_view what) {
  mutations_.fetch_add(1, std::memory_order_relaxed);
  TMEM_LOG(Info) << "tenant '" << who.tenant << "' (" << ProofName(who.proof)
                 << (who.credential.empty() ? "" : " " + who.credential) << "): " << std::string(what);
}

uint64_t Audit::refused(absl::string_view listener, Refusal why) const {
  return refused_[ListenerIndex(listener)][static_cast<int>(why)].load(std::memory_order_relaxed);
}

void Audit::VisitStats(StatsVisitor& v) const {
  for (int l = 0; l < kListeners; ++l) {
    for (int r = 0; r < static_cast<int>(Refusal::kCount); ++r) {
      v.Counter("auth_refused", "Peers and calls refused, by listener and reason",
                refused_[l][r].load(std::memory_order_relaxed),
                {{"listener", kListenerNames[l]}, {"reason", kRefusalNames[r]}});
    }
  }
  v.Counter("admin_mutations", "Admin and pool mutations (each is logged with its tenant)",
            mutations_.load(std::memory_order_relaxed), {});
  v.Gauge("insecure_plaintext_listeners",
          "Plaintext listeners on non-loopback addresses, allowed by insecure_plaintext: true",
          static_cast<double>(insecure_listeners_.load(std::memory_order_relaxed)), {});
}

}  // namespace tmem::trust
