#include "server/trust/tls_options.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tmem::trust {
namespace {

absl::Status OneOf(absl::string_view what, const std::string& v, std::initializer_list<absl::string_view> allowed) {
  for (absl::string_view a : allowed) {
    if (v == a) return absl::OkStatus();
  }
  std::string list;
  for (absl::string_view a : allowed) absl::StrAppend(&list, list.empty() ? "" : ", ", a);
  return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not one of ", list, " (", what, ")"));
}

settings::Table<TlsOptions>* BuildTlsSettings() {
  using T = TlsOptions;
  auto* t = new settings::Table<T>;
  t->String("cert", "tls-cert", &T::cert,
            "The server's certificate chain (PEM). Set, every TCP listener speaks TLS (gRPC at once, NBD through "
            "NBD_OPT_STARTTLS); reloaded on SIGHUP and when the file changes.",
            "/etc/tmem/tls/server.crt")
      .String("key", "tls-key", &T::key, "The server certificate's private key (PEM).", "/etc/tmem/tls/server.key")
      .String("ca", "tls-ca", &T::ca, "CA certificates that client certificates must chain to (PEM).",
              "/etc/tmem/tls/ca.crt")
      .String("client_auth", "tls-client-auth", &T::client_auth,
              "require: every TLS peer shows a certificate of a configured tenant; optional: an NBD peer may show "
              "none and opens only exports that allow \"*\" (gRPC always requires one).",
              "",
              [](const std::string& v) {
                return OneOf("tls.client_auth", v, {"require", "optional"});
              })
      .String("tenant_from", "tls-tenant-from", &T::tenant_from,
              "Which names of a client certificate name its tenant: cn (subject common name), san (DNS and URI "
              "subject alternative names) or any (CN, then SANs).",
              "",
              [](const std::string& v) {
                return OneOf("tls.tenant_from", v, {"cn", "san", "any"});
              })
      .String("psk_file", "tls-psk-file", &T::psk_file,
              "NBD TLS-PSK keys: identity:hexkey lines (nbdkit's and libnbd's format, psktool writes it).",
              "/etc/tmem/tls/keys.psk")
      .Int("handshake_timeout_ms", "tls-handshake-timeout-ms", &T::handshake_timeout_ms, 100, 600'000,
           "A connection that has not finished its TLS or NBD handshake by then is closed.")
      .Int("reload_interval_s", "tls-reload-interval-s", &T::reload_interval_s, 1, 3600,
           "Certificate, key and CA files are checked this often; changed ones are loaded without a restart "
           "(SIGHUP loads them at once). A bad new file is refused and the old one kept.")
      .String("records", "tls-records", &T::records,
              "Who seals and opens the TLS 1.3 records of the page wire protocol and of NBD once the handshake is "
              "done: tmem (straight between the socket's bytes and the requests and replies, as the kernel's TLS "
              "offload does; key updates both ways) or gnutls (GnuTLS's record layer, which copies each record "
              "twice more). TLS 1.2 sessions always use GnuTLS's.",
              "", [](const std::string& v) {
                return OneOf("tls.records", v, {"tmem", "gnutls"});
              });
  return t;
}

absl::Status Readable(absl::string_view what, const std::string& path) {
  if (::access(path.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": cannot read it"));
  }
  return absl::OkStatus();
}

}  // namespace

const settings::Table<TlsOptions>& TlsSettings() {
  static const settings::Table<TlsOptions>* t = BuildTlsSettings();
  return *t;
}

absl::Status CheckTlsOptions(const TlsOptions& o, bool files) {
  if (absl::Status s = TlsSettings().Validate(o, "tls."); !s.ok()) return s;
  if (o.cert.empty() != o.key.empty()) {
    return absl::InvalidArgumentError("tls.cert and tls.key go together: give both or neither");
  }
  if (!o.cert.empty() && o.ca.empty()) {
    return absl::InvalidArgumentError("tls.cert needs tls.ca: client certificates are verified against it");
  }
  if (o.cert.empty() && !o.ca.empty()) return absl::InvalidArgumentError("tls.ca needs tls.cert and tls.key");
  if (!files) return absl::OkStatus();
  for (const auto& [what, path] : {std::pair<const char*, const std::string*>{"tls.cert", &o.cert},
                                   {"tls.key", &o.key},
                                   {"tls.ca", &o.ca},
                                   {"tls.psk_file", &o.psk_file}}) {
    if (!path->empty()) {
      if (absl::Status s = Readable(what, *path); !s.ok()) return s;
    }
  }
  if (!o.psk_file.empty()) {
    auto keys = ReadPskFile(o.psk_file);
    if (!keys.ok()) return keys.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string, std::less<>>> ReadPskFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("PSK file ", path, ": cannot read it"));
  std::map<std::string, std::string, std::less<>> keys;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l[0] == '#') continue;
    const auto colon = l.rfind(':');
    const std::string where = absl::StrCat("PSK file ", path, " line ", n);
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": want identity:hexkey"));
    }
    absl::string_view id = l.substr(0, colon), hex = l.substr(colon + 1);
    if (hex.empty() || hex.size() % 2 != 0 || hex.size() > 128) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the key wants 2 to 128 hex digits"));
    }
    std::string key;
    for (size_t i = 0; i < hex.size(); i += 2) {
      auto digit = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      const int hi = digit(hex[i]), lo = digit(hex[i + 1]);
      if (hi < 0 || lo < 0) return absl::InvalidArgumentError(absl::StrCat(where, ": the key is not hex"));
      key.push_back(static_cast<char>(hi * 16 + lo));
    }
    if (!keys.emplace(std::string(id), std::move(key)).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": identity '", id, "' appears twice"));
    }
  }
  return keys;
}

bool IsLocalAddress(absl::string_view a) {
  if (a.rfind("unix:", 0) == 0) return true;
  std::string host(a);
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') == std::string::npos ? std::string::npos : host.find(']') - 1);
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    host.resize(host.find(':'));
  }
  if (host == "localhost") return true;
  in_addr v4;
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
  }
  return false;
}

absl::Status CheckPlaintextListener(absl::string_view what, absl::string_view address, bool insecure_plaintext) {
  if (insecure_plaintext || IsLocalAddress(address)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      what, " ", address,
      " is not a loopback address and TLS is not configured: any peer that reaches it could read and plant "
      "pages. Configure tls.cert, tls.key and tls.ca (scripts/make-certs.sh makes them), listen on 127.0.0.1, "
      "or write insecure_plaintext: true to accept the risk"));
}

}  // namespace tmem::trust
