// TLS settings (the config file's `tls` section), the PSK file, and where plaintext is allowed.
#ifndef TMEM_SERVER_TRUST_TLS_OPTIONS_H_
#define TMEM_SERVER_TRUST_TLS_OPTIONS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/settings.h"

namespace tmem::trust {

struct TlsOptions {
  std::string cert;                      // the server's certificate chain (PEM)
  std::string key;                       // its private key (PEM)
  std::string ca;                        // CA bundle that client certificates must chain to (PEM)
  std::string client_auth = "require";   // require | optional (NBD only: a peer may show none)
  std::string tenant_from = "cn";        // cn | san | any: which certificate names name the tenant
  std::string psk_file;                  // NBD TLS-PSK keys, "identity:hexkey" lines (nbdkit's format)
  int64_t handshake_timeout_ms = 10000;  // a TLS handshake that takes longer is dropped
  int64_t reload_interval_s = 10;        // changed certificate files are loaded within this time
  std::string records = "tmem";          // tmem | gnutls: who seals and opens TLS 1.3 records

  bool x509() const { return !cert.empty(); }
  bool any() const { return x509() || !psk_file.empty(); }
};
// Keys below "tls." (cert, key, ca, ...).
const settings::Table<TlsOptions>& TlsSettings();
// The combination sound (cert needs key and ca) and, with `files`, every file readable (and the
// PSK file well-formed): tmemd checks the files when it starts, the config loader does not.
absl::Status CheckTlsOptions(const TlsOptions& o, bool files = false);

// Reads a PSK file: one "identity:key" per line, the key in hex (nbdkit's and libnbd's format;
// psktool writes it); blank lines and lines starting with # are skipped. InvalidArgument naming
// the line for anything else.
absl::StatusOr<std::map<std::string, std::string, std::less<>>> ReadPskFile(const std::string& path);

// True for loopback addresses (127.0.0.0/8, ::1, localhost) and Unix sockets ("unix:PATH").
bool IsLocalAddress(absl::string_view host_port);
// The safe default: a listener that is not local may be plaintext only when the operator wrote
// insecure_plaintext. FailedPrecondition naming the listener and the fix otherwise.
absl::Status CheckPlaintextListener(absl::string_view what, absl::string_view address, bool insecure_plaintext);

}  // namespace tmem::trust

#endif  // TMEM_SERVER_TRUST_TLS_OPTIONS_H_
