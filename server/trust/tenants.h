// Tenants, roles and identities (DESIGN.md "Trust").
//
// A tenant is what a connection proves: an X.509 client certificate verified against the
// configured CA, whose subject CN or a SAN is one of the tenant's certificate names, or (NBD) a
// TLS-PSK identity. A plaintext connection, which tmemd accepts only on loopback and Unix
// sockets unless the operator wrote `insecure_plaintext: true`, is the local tenant (by default
// "local", with both roles): a process on the node can read the device anyway.
//
// Roles: `pages` uses page pools of its own tenant; `admin` may call Admin mutations, sees every
// pool and opens every export. NBD exports also have allow lists (docs/trust.md).
//
// Thread-safety: a TenantTable is built once and read-only afterwards.
#ifndef TMEM_SERVER_TRUST_TENANTS_H_
#define TMEM_SERVER_TRUST_TENANTS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/settings.h"

namespace tmem::trust {

// One entry of the config file's `tenants` list.
struct TenantConfig {
  std::string name;                            // 1 to 64 bytes: [A-Za-z0-9._-]
  std::vector<std::string> roles = {"pages"};  // "pages", "admin"
  std::vector<std::string> certs;              // certificate names (CN or SAN); empty: the name itself
  std::string psk_identity;                    // NBD TLS-PSK identity ("": none)
  uint32_t max_pools = 1024;                   // pools the tenant may hold at once
  uint32_t log_share_percent = 100;            // share of the page log its pages may hold
};
const settings::Table<TenantConfig>& TenantSettings();

// How a connection proved who it is.
enum class Proof { kLocal, kCertificate, kPsk, kNone };
absl::string_view ProofName(Proof p);

// The caller of one request. `tenant` is empty for a TLS peer that showed no certificate (it
// may open only exports that allow "*").
struct Identity {
  std::string tenant;
  bool pages = false;
  bool admin = false;
  Proof proof = Proof::kNone;
  std::string credential;  // the certificate name or PSK identity that proved it
};

// What an NBD export allows one identity.
enum class Access { kNone, kReadOnly, kReadWrite };

class TenantTable {
 public:
  // Checks names (unique, well-formed), roles, certificate names and PSK identities (each
  // names one tenant). `local_tenant` is the plaintext peers' tenant; unless the table lists it,
  // it has both roles. InvalidArgument naming the entry otherwise.
  static absl::StatusOr<TenantTable> Build(const std::vector<TenantConfig>& tenants, std::string local_tenant);
  // A table with only the local tenant "local" (tests, and a tmemd without a tenants list).
  TenantTable();

  Identity Local() const;
  // The tenant whose certificate names contain one of `names` (the subject CN and SANs of a
  // verified certificate, in the order of the mapping); nullopt if none.
  std::optional<Identity> ByCertificate(const std::vector<std::string>& names) const;
  std::optional<Identity> ByPsk(absl::string_view identity) const;
  const TenantConfig* Find(absl::string_view name) const;
  const std::vector<TenantConfig>& tenants() const { return tenants_; }
  const std::string& local_tenant() const { return local_; }

 private:
  struct Empty {};
  explicit TenantTable(Empty) {}
  Identity Make(const TenantConfig& t, Proof proof, std::string credential) const;

  std::vector<TenantConfig> tenants_;  // the local tenant included
  std::string local_;
  std::map<std::string, size_t, std::less<>> by_cert_, by_psk_, by_name_;
};

// An export's allow list: entries "TENANT" (read-write), "TENANT:ro", "*" and "*:ro" (every
// identity, also a TLS peer without a certificate). Admins and the local tenant open every
// export read-write unless the list names them. InvalidArgument for a malformed entry.
absl::Status CheckAllowList(const std::vector<std::string>& allow);
Access ExportAccess(const std::vector<std::string>& allow, const Identity& who);

// Tenant and certificate names: 1 to 64 bytes of [A-Za-z0-9._@-].
absl::Status CheckName(absl::string_view what, absl::string_view name);

}  // namespace tmem::trust

#endif  // TMEM_SERVER_TRUST_TENANTS_H_
