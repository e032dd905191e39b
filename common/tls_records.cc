#include "common/tls_records.h"

#include <gnutls/crypto.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "common/socket_write.h"

namespace tmem {
namespace {

constexpr uint8_t kApplicationData = 23;
constexpr uint8_t kAlert = 21;
constexpr uint8_t kHandshake = 22;
constexpr uint8_t kNewSessionTicket = 4;
constexpr uint8_t kKeyUpdate = 24;

// HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
bool ExpandLabel(gnutls_mac_algorithm_t hash, const uint8_t* secret, size_t secret_bytes, std::string_view label,
                 uint8_t* out, size_t out_bytes) {
  uint8_t info[2 + 1 + 6 + 32 + 1];
  const std::string_view prefix = "tls13 ";
  if (label.size() > 32) return false;
  size_t n = 0;
  info[n++] = static_cast<uint8_t>(out_bytes >> 8);
  info[n++] = static_cast<uint8_t>(out_bytes);
  info[n++] = static_cast<uint8_t>(prefix.size() + label.size());
  std::memcpy(info + n, prefix.data(), prefix.size());
  n += prefix.size();
  std::memcpy(info + n, label.data(), label.size());
  n += label.size();
  info[n++] = 0;  // context
  gnutls_datum_t key{const_cast<uint8_t*>(secret), static_cast<unsigned>(secret_bytes)};
  gnutls_datum_t data{info, static_cast<unsigned>(n)};
  return gnutls_hkdf_expand(hash, &key, &data, out, out_bytes) == 0;
}

}  // namespace

int TlsRecords::KeepSecrets(Secrets* secrets, gnutls_record_encryption_level_t level, const void* read,
                            const void* write, size_t size) {
  if (level != GNUTLS_ENCRYPTION_LEVEL_APPLICATION || size > secrets->read.size()) return 0;
  secrets->size = size;
  if (read != nullptr) {
    std::memcpy(secrets->read.data(), read, size);
    secrets->have_read = true;
  }
  if (write != nullptr) {
    std::memcpy(secrets->write.data(), write, size);
    secrets->have_write = true;
  }
  return 0;
}

std::unique_ptr<TlsRecords> TlsRecords::Take(gnutls_session_t session, const Secrets& secrets,
                                             uint64_t records_per_key) {
  if (gnutls_protocol_get_version(session) != GNUTLS_TLS1_3) return nullptr;
  if (!secrets.have_read || !secrets.have_write) return nullptr;
  if (gnutls_record_check_pending(session) > 0) return nullptr;
  std::unique_ptr<TlsRecords> r(new TlsRecords());
  r->cipher_ = gnutls_cipher_get(session);
  switch (r->cipher_) {
    case GNUTLS_CIPHER_AES_128_GCM:
    case GNUTLS_CIPHER_AES_256_GCM:
    case GNUTLS_CIPHER_CHACHA20_POLY1305:
      break;
    default:
      return nullptr;
  }
  r->key_bytes_ = gnutls_cipher_get_key_size(r->cipher_);
  // The digest and MAC algorithms of GnuTLS share their numbers.
  r->hash_ = static_cast<gnutls_mac_algorithm_t>(gnutls_prf_hash_get(session));
  r->secret_bytes_ = secrets.size;
  if (r->secret_bytes_ != gnutls_hmac_get_len(r->hash_)) return nullptr;
  r->records_per_key_ = records_per_key;
  for (const bool read : {true, false}) {
    Direction& d = read ? r->read_ : r->write_;
    std::memcpy(d.secret.data(), read ? secrets.read.data() : secrets.write.data(), r->secret_bytes_);
    if (!r->Install(d)) return nullptr;
    // GnuTLS's own state: the same key and IV, and where its sequence stands.
    gnutls_datum_t mac, iv, key;
    uint8_t seq[8];
    if (gnutls_record_get_state(session, read ? 1 : 0, &mac, &iv, &key, seq) < 0) return nullptr;
    uint8_t mine[32];
    if (key.size != r->key_bytes_ || iv.size != d.iv.size() ||
        !ExpandLabel(r->hash_, d.secret.data(), r->secret_bytes_, "key", mine, r->key_bytes_) ||
        std::memcmp(mine, key.data, key.size) != 0 || std::memcmp(d.iv.data(), iv.data, iv.size) != 0) {
      return nullptr;
    }
    d.seq = 0;
    for (uint8_t b : seq) d.seq = d.seq << 8 | b;
  }
  return r;
}

TlsRecords::~TlsRecords() {
  for (Direction* d : {&read_, &write_}) {
    if (d->aead != nullptr) gnutls_aead_cipher_deinit(d->aead);
    gnutls_memset(d->secret.data(), 0, d->secret.size());
  }
}

bool TlsRecords::Install(Direction& d) {
  uint8_t key[32];
  if (key_bytes_ > sizeof(key) || !ExpandLabel(hash_, d.secret.data(), secret_bytes_, "key", key, key_bytes_) ||
      !ExpandLabel(hash_, d.secret.data(), secret_bytes_, "iv", d.iv.data(), d.iv.size())) {
    return false;
  }
  if (d.aead != nullptr) gnutls_aead_cipher_deinit(d.aead);
  d.aead = nullptr;
  gnutls_datum_t k{key, static_cast<unsigned>(key_bytes_)};
  const int rc = gnutls_aead_cipher_init(&d.aead, cipher_, &k);
  gnutls_memset(key, 0, sizeof(key));
  d.seq = 0;
  return rc == 0;
}

bool TlsRecords::Update(Direction& d) {
  uint8_t next[64];
  if (!ExpandLabel(hash_, d.secret.data(), secret_bytes_, "traffic upd", next, secret_bytes_)) return false;
  std::memcpy(d.secret.data(), next, secret_bytes_);
  gnutls_memset(next, 0, sizeof(next));
  ++d.updates;
  return Install(d);
}

void TlsRecords::Nonce(const Direction& d, uint8_t* nonce) const {
  std::memcpy(nonce, d.iv.data(), d.iv.size());
  for (int i = 0; i < 8; ++i) nonce[4 + i] ^= static_cast<uint8_t>(d.seq >> (56 - 8 * i));
}

void TlsRecords::AppendHeader(std::vector<uint8_t>* out, size_t inner) {
  const size_t len = inner + kTagBytes;
  const uint8_t h[kHeaderBytes] = {kApplicationData, 3, 3, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)};
  out->insert(out->end(), h, h + kHeaderBytes);
}

bool TlsRecords::SealOne(std::vector<uint8_t>* out, size_t at, size_t inner) {
  // Room for the tag, then the inner plaintext (type byte included) encrypted where it is.
  out->insert(out->end(), kTagBytes, 0);
  uint8_t* h = out->data() + at;
  uint8_t nonce[12];
  Nonce(write_, nonce);
  giovec_t aad{h, kHeaderBytes};
  giovec_t body{h + kHeaderBytes, inner};
  size_t tag = kTagBytes;
  if (gnutls_aead_cipher_encryptv2(write_.aead, nonce, sizeof(nonce), &aad, 1, &body, 1, h + kHeaderBytes + inner,
                                   &tag) < 0) {
    return false;
  }
  ++write_.seq;
  return true;
}

bool TlsRecords::SendKeyUpdate(std::vector<uint8_t>* out) {
  const size_t at = out->size();
  const uint8_t message[] = {kKeyUpdate, 0, 0, 1, 0 /* update_not_requested */, kHandshake};
  AppendHeader(out, sizeof(message));
  out->insert(out->end(), message, message + sizeof(message));
  return SealOne(out, at, sizeof(message)) && Update(write_);
}

bool TlsRecords::SealCloseNotify(std::vector<uint8_t>* out) { return SealAlert(1 /* warning */, 0, out); }

bool TlsRecords::SealFailureAlert(std::vector<uint8_t>* out) {
  return alert_ == 0 || SealAlert(2 /* fatal */, alert_, out);
}

bool TlsRecords::SealAlert(uint8_t level, uint8_t description, std::vector<uint8_t>* out) {
  const size_t at = out->size();
  const uint8_t alert[] = {level, description, kAlert};
  AppendHeader(out, sizeof(alert));
  out->insert(out->end(), alert, alert + sizeof(alert));
  return SealOne(out, at, sizeof(alert));
}

bool TlsRecords::Seal(const iovec* iov, int count, std::vector<uint8_t>* out) {
  if (update_asked_.exchange(false, std::memory_order_acq_rel) && !SendKeyUpdate(out)) return false;
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  const size_t records = (total + kMaxPlaintext - 1) / kMaxPlaintext;
  // Appended piece by piece (vector::resize would write zeros over the room first: a pass more),
  // into room grown geometrically (reserving just what is needed would copy a backlog each time).
  const size_t need = out->size() + total + records * (kHeaderBytes + 1 + kTagBytes);
  if (need > out->capacity()) out->reserve(std::max(need, 2 * out->capacity()));
  int i = 0;
  size_t off = 0;  // into iov[i]
  while (total > 0) {
    if (write_.seq >= records_per_key_ && !SendKeyUpdate(out)) return false;
    const size_t n = std::min(total, kMaxPlaintext);
    const size_t at = out->size();
    AppendHeader(out, n + 1);
    for (size_t left = n; left > 0;) {
      const size_t k = std::min(left, iov[i].iov_len - off);
      const auto* p = static_cast<const uint8_t*>(iov[i].iov_base) + off;
      out->insert(out->end(), p, p + k);
      left -= k;
      off += k;
      if (off == iov[i].iov_len) {
        ++i;
        off = 0;
      }
    }
    out->push_back(kApplicationData);
    if (!SealOne(out, at, n + 1)) return false;
    total -= n;
  }
  return true;
}

size_t TlsRecords::MissingBytes(std::span<const uint8_t> in) {
  if (in.size() < kHeaderBytes) return kHeaderBytes - in.size();
  const size_t whole = kHeaderBytes + (size_t{in[3]} << 8 | in[4]);
  return in.size() < whole ? whole - in.size() : 0;
}

ssize_t TlsRecords::WholeRecord(std::span<const uint8_t> in) {
  if (in.size() < kHeaderBytes) return 0;
  const size_t len = size_t{in[3]} << 8 | in[4];
  if (in[0] != kApplicationData || in[1] != 3 || in[2] != 3 || len < kTagBytes + 1 ||
      kHeaderBytes + len > kMaxRecordBytes) {
    return kError;
  }
  return in.size() < kHeaderBytes + len ? 0 : static_cast<ssize_t>(kHeaderBytes + len);
}

ssize_t TlsRecords::Open(std::span<const uint8_t> record, uint8_t* out) {
  uint8_t nonce[12];
  Nonce(read_, nonce);
  size_t len = OpenRoom(record.size());
  if (gnutls_aead_cipher_decrypt(read_.aead, nonce, sizeof(nonce), record.data(), kHeaderBytes, kTagBytes,
                                 record.data() + kHeaderBytes, record.size() - kHeaderBytes, out, &len) < 0) {
    alert_ = kBadRecordMac;
    return kError;  // does not authenticate
  }
  ++read_.seq;
  // The inner plaintext: content, its type, zeros of padding (RFC 8446 5.4: at most 2^14 + 1
  // bytes before the padding; handshake and alert records are never empty).
  while (len > 0 && out[len - 1] == 0) --len;
  if (len == 0 || len > kMaxPlaintext + 1) {
    alert_ = len == 0 ? kUnexpectedMessage : kRecordOverflow;
    return kError;
  }
  const uint8_t type = out[--len];
  alert_ = kUnexpectedMessage;
  ssize_t n = kError;
  if (type == kApplicationData) n = static_cast<ssize_t>(len);
  if (type == kAlert) {
    n = len == 2 && out[1] == 0 ? kClosed : kError;
    alert_ = 0;  // the peer's own alert: none is sent back
  }
  if (type == kHandshake && len > 0) n = HandshakeMessages(out, len);
  if (n == 0 && ++empty_in_row_ > kMaxEmptyInRow) return kError;
  if (n > 0) empty_in_row_ = 0;
  return n;
}

ssize_t TlsRecords::HandshakeMessages(const uint8_t* p, size_t len) {
  while (len > 0) {
    alert_ = kDecodeError;
    if (len < 4) return kError;
    const size_t body = size_t{p[1]} << 16 | size_t{p[2]} << 8 | p[3];
    if (len < 4 + body) return kError;  // a message split over records: not sent after a handshake
    if (p[0] == kKeyUpdate) {
      if (body != 1 || p[4] > 1) return kError;
      if (p[4] == 1) update_asked_.store(true, std::memory_order_release);
      alert_ = kInternalError;
      if (!Update(read_)) return kError;
      alert_ = kUnexpectedMessage;
      // The key changed: anything after this message in the record is not allowed (8446 5.1).
      return len == 5 ? 0 : kError;
    }
    alert_ = kUnexpectedMessage;
    if (p[0] != kNewSessionTicket) return kError;
    p += 4 + body;
    len -= 4 + body;
  }
  return 0;
}

bool SealAndSend(TlsRecords& records, int fd, const iovec* iov, int count, size_t part_bytes,
                 std::vector<uint8_t>* sealed) {
  // A part also ends at kPieces pieces (no allocation for the list: a page each is 64 pages).
  constexpr int kPieces = 64;
  iovec part[kPieces];
  int pieces = 0;
  size_t bytes = 0;
  auto send = [&] {
    sealed->clear();
    if (!records.Seal(part, pieces, sealed)) return false;
    iovec out{sealed->data(), sealed->size()};
    pieces = 0;
    bytes = 0;
    return SocketWriteFullV(fd, &out, 1);
  };
  for (int i = 0; i < count; ++i) {
    auto* p = static_cast<uint8_t*>(iov[i].iov_base);
    for (size_t left = iov[i].iov_len; left > 0;) {
      const size_t k = std::min(left, part_bytes - bytes);
      part[pieces++] = {p, k};
      p += k;
      left -= k;
      bytes += k;
      if ((bytes == part_bytes || pieces == kPieces) && !send()) return false;
    }
  }
  return pieces == 0 || send();
}

}  // namespace tmem
