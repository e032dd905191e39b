#include "server/trust/tenants.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace tmem::trust {
namespace {

settings::Table<TenantConfig>* BuildTenantSettings() {
  using T = TenantConfig;
  auto* t = new settings::Table<T>;
  t->String("name", "", &T::name, "The tenant's name (1 to 64 bytes of letters, digits and ._@-).", "node-1")
      .List("roles", "", &T::roles, "pages (its own page pools) and/or admin (Admin mutations, every pool).", "pages")
      .List("certs", "", &T::certs,
            "Client certificate names (subject CN or SAN, per tls.tenant_from) that prove this tenant; empty: "
            "the tenant's name.",
            "node-1.tmem.svc")
      .String("psk_identity", "", &T::psk_identity, "Its TLS-PSK identity for NBD (in tls.psk_file).", "node-1")
      .Int("max_pools", "", &T::max_pools, 0, 1 << 16, "Pools the tenant may hold at once.")
      .Int("log_share_percent", "", &T::log_share_percent, 1, 100,
           "Share of the page log the tenant's pages may hold; past it its puts are dropped.");
  return t;
}

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '@';
}

}  // namespace

const settings::Table<TenantConfig>& TenantSettings() {
  static const settings::Table<TenantConfig>* t = BuildTenantSettings();
  return *t;
}

absl::string_view ProofName(Proof p) {
  switch (p) {
    case Proof::kLocal:
      return "local";
    case Proof::kCertificate:
      return "certificate";
    case Proof::kPsk:
      return "psk";
    case Proof::kNone:
      return "none";
  }
  return "none";
}

absl::Status CheckName(absl::string_view what, absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", name, "': want 1 to 64 bytes"));
  }
  for (char c : name) {
    if (!NameChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", name, "': only letters, digits and . _ @ - are allowed"));
    }
  }
  return absl::OkStatus();
}

TenantTable::TenantTable() : TenantTable(*Build({}, "local")) {}

absl::StatusOr<TenantTable> TenantTable::Build(const std::vector<TenantConfig>& tenants, std::string local_tenant) {
  if (absl::Status s = CheckName("local tenant", local_tenant); !s.ok()) return s;
  TenantTable t{Empty{}};
  t.local_ = std::move(local_tenant);
  t.tenants_ = tenants;
  bool has_local = false;
  for (const TenantConfig& c : tenants) has_local |= c.name == t.local_;
  if (!has_local) {
    TenantConfig local;
    local.name = t.local_;
    local.roles = {"pages", "admin"};
    local.max_pools = 1 << 16;
    t.tenants_.push_back(local);
  }
  for (size_t i = 0; i < t.tenants_.size(); ++i) {
    const TenantConfig& c = t.tenants_[i];
    const std::string where = absl::StrCat("tenants[", i, "]");
    if (absl::Status s = CheckName(where + " name", c.name); !s.ok()) return s;
    if (!t.by_name_.emplace(c.name, i).second) {
      return absl::InvalidArgumentError(absl::StrCat("tenant '", c.name, "' is declared twice"));
    }
    for (const std::string& r : c.roles) {
      if (r != "pages" && r != "admin") {
        return absl::InvalidArgumentError(
            absl::StrCat("tenant '", c.name, "': role '", r, "' is not one of pages, admin"));
      }
    }
    std::vector<std::string> certs = c.certs.empty() ? std::vector<std::string>{c.name} : c.certs;
    for (const std::string& n : certs) {
      if (n.empty() || n.size() > 255) {
        return absl::InvalidArgumentError(absl::StrCat("tenant '", c.name, "': a certificate name has 1 to 255 bytes"));
      }
      auto [it, fresh] = t.by_cert_.emplace(n, i);
      if (!fresh && t.tenants_[it->second].name != c.name) {
        return absl::InvalidArgumentError(absl::StrCat("certificate name '", n, "' names two tenants: '",
                                                       t.tenants_[it->second].name, "' and '", c.name, "'"));
      }
    }
    if (!c.psk_identity.empty()) {
      if (absl::Status s = CheckName(absl::StrCat("tenant '", c.name, "' psk_identity"), c.psk_identity); !s.ok()) {
        return s;
      }
      if (!t.by_psk_.emplace(c.psk_identity, i).second) {
        return absl::InvalidArgumentError(absl::StrCat("PSK identity '", c.psk_identity, "' names two tenants"));
      }
    }
  }
  return t;
}

Identity TenantTable::Make(const TenantConfig& t, Proof proof, std::string credential) const {
  Identity id;
  id.tenant = t.name;
  for (const std::string& r : t.roles) {
    id.pages |= r == "pages";
    id.admin |= r == "admin";
  }
  id.proof = proof;
  id.credential = std::move(credential);
  return id;
}

Identity TenantTable::Local() const { return Make(tenants_[by_name_.find(local_)->second], Proof::kLocal, ""); }

std::optional<Identity> TenantTable::ByCertificate(const std::vector<std::string>& names) const {
  for (const std::string& n : names) {
    auto it = by_cert_.find(n);
    if (it != by_cert_.end()) return Make(tenants_[it->second], Proof::kCertificate, n);
  }
  return std::nullopt;
}

std::optional<Identity> TenantTable::ByPsk(absl::string_view identity) const {
  auto it = by_psk_.find(identity);
  if (it == by_psk_.end()) return std::nullopt;
  return Make(tenants_[it->second], Proof::kPsk, std::string(identity));
}

const TenantConfig* TenantTable::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tenants_[it->second];
}

absl::Status CheckAllowList(const std::vector<std::string>& allow) {
  for (const std::string& e : allow) {
    absl::string_view name = e;
    if (name.size() > 3 && name.substr(name.size() - 3) == ":ro") name.remove_suffix(3);
    if (name == "*") continue;
    if (absl::Status s = CheckName("allow entry", name); !s.ok()) return s;
  }
  return absl::OkStatus();
}

Access ExportAccess(const std::vector<std::string>& allow, const Identity& who) {
  std::optional<Access> named, any;
  for (const std::string& e : allow) {
    absl::string_view name = e;
    Access a = Access::kReadWrite;
    if (name.size() > 3 && name.substr(name.size() - 3) == ":ro") {
      name.remove_suffix(3);
      a = Access::kReadOnly;
    }
    if (name == "*") {
      any = a;
    } else if (!who.tenant.empty() && name == who.tenant) {
      named = a;
    }
  }
  if (named) return *named;
  if (who.admin || who.proof == Proof::kLocal) return Access::kReadWrite;
  if (any) return *any;
  return Access::kNone;
}

}  // namespace tmem::trust
