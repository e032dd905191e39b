// The cipher preference of every GnuTLS session tmem opens: the page wire protocol's server and
// client, and the NBD server.
#ifndef TMEM_COMMON_TLS_PRIORITY_H_
#define TMEM_COMMON_TLS_PRIORITY_H_

namespace tmem {

// GnuTLS's NORMAL set, the same suites, with AES-128-GCM first: pages are bulk data, and on the
// CPUs measured AES-128-GCM encrypts a 4 KiB page faster than AES-256-GCM (10 rounds against 14).
// A server picks by its own order, so clients that prefer AES-256 (NBD clients on GnuTLS's
// defaults) get AES-128-GCM too.
#define TMEM_TLS_CIPHERS                                             \
  "NORMAL:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:" \
  "+AES-128-CCM:+AES-256-CCM:+AES-256-CBC:+AES-128-CBC"
inline constexpr char kTlsPriority[] = TMEM_TLS_CIPHERS;
inline constexpr char kTlsServerPriority[] = TMEM_TLS_CIPHERS ":%SERVER_PRECEDENCE";
inline constexpr char kTlsServerPskPriority[] = TMEM_TLS_CIPHERS ":%SERVER_PRECEDENCE:+ECDHE-PSK:+DHE-PSK:+PSK";
#undef TMEM_TLS_CIPHERS

}  // namespace tmem

#endif  // TMEM_COMMON_TLS_PRIORITY_H_
