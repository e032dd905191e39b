// The application records of a TLS 1.3 session, sealed and opened here with GnuTLS's AEAD
// ciphers once GnuTLS's handshake is done: what the kernel's TLS offload (kTLS) does, in user
// space (this project's hosts may lack kTLS). GnuTLS's record layer copies every record twice
// around its cipher and allocates a buffer per record; here a record is opened straight from the
// received bytes into the caller's buffer, and sealed in the caller's output buffer.
//
// Only TLS 1.3 with AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305 (RFC 8446 5.2-5.3): the
// record header is the additional data, the nonce the IV xor the record's sequence number, the
// inner plaintext the data and its content type. What else may come after the handshake:
//  - KeyUpdate (RFC 8446 4.6.3): the read key moves on; when the peer asks, the next Seal sends
//    one of ours first. Seal also updates its own key every kRecordsPerKey records (5.5);
//  - NewSessionTicket: ignored (tmem's clients do not resume);
//  - close_notify: Open reports kClosed; any other alert or handshake message: kError.
// The secrets for key updates come from the handshake (KeepSecrets, before it); Take checks
// that the keys it derives from them are GnuTLS's and otherwise leaves the records to GnuTLS.
//
// Thread-safety: one thread seals and one opens at a time (the two directions are apart; a
// key update asked for by the peer crosses through an atomic).
#ifndef TMEM_COMMON_TLS_RECORDS_H_
#define TMEM_COMMON_TLS_RECORDS_H_

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace tmem {

class TlsRecords {
 public:
  static constexpr size_t kHeaderBytes = 5;
  static constexpr size_t kTagBytes = 16;
  static constexpr size_t kMaxPlaintext = 16384;
  static constexpr size_t kMaxRecordBytes = kHeaderBytes + kMaxPlaintext + 256;  // RFC 8446 5.2
  // Records in a row that carry no application data (key updates, tickets, empty records) before
  // Open calls the peer abusive: each key update costs a key derivation.
  static constexpr int kMaxEmptyInRow = 64;
  // Records sealed under one key before Seal updates it (AES-GCM's bound is 2^24.5 records).
  static constexpr uint64_t kRecordsPerKey = uint64_t{1} << 23;
  // Open's results that are not a byte count.
  static constexpr ssize_t kClosed = -1;
  static constexpr ssize_t kError = -2;

  // The application traffic secrets of a handshake, as seen from this side.
  struct Secrets {
    std::array<uint8_t, 64> read{}, write{};
    size_t size = 0;
    bool have_read = false, have_write = false;
  };
  // For gnutls_handshake_set_secret_function: the owner's callback finds its Secrets and hands
  // what GnuTLS gives here. Returns 0 (GnuTLS's success).
  static int KeepSecrets(Secrets* secrets, gnutls_record_encryption_level_t level, const void* read, const void* write,
                         size_t size);

  // Takes the records of `session` over from GnuTLS: its handshake done, nothing received and
  // not yet read in GnuTLS's buffers. Null when the session is not TLS 1.3 with one of the
  // ciphers above, the secrets are missing, or they do not give GnuTLS's keys: GnuTLS keeps the
  // records then. `records_per_key` is for tests.
  static std::unique_ptr<TlsRecords> Take(gnutls_session_t session, const Secrets& secrets,
                                          uint64_t records_per_key = kRecordsPerKey);
  ~TlsRecords();
  TlsRecords(const TlsRecords&) = delete;
  TlsRecords& operator=(const TlsRecords&) = delete;

  // Appends to `out` the records carrying every byte of the iovecs, kMaxPlaintext each (after a
  // key update when one is due). False on a cipher error: the connection must close.
  bool Seal(const iovec* iov, int count, std::vector<uint8_t>* out);

  // Appends a close_notify alert to `out`; false on a cipher error.
  bool SealCloseNotify(std::vector<uint8_t>* out);
  // After Open's kError: appends the fatal alert that says why (bad_record_mac, record_overflow,
  // unexpected_message, decode_error), or nothing when the peer's own alert ended the records;
  // the opening thread may call it only while no other thread seals.
  bool SealFailureAlert(std::vector<uint8_t>* out);
  // unexpected_message: what the peer is told when WholeRecord refused a header.
  void set_failure_alert_unexpected() { alert_ = kUnexpectedMessage; }

  // The bytes of the record at the front of `in`, header included, once all of it is there; 0
  // while it is not; kError when the header is not a TLS 1.3 record's.
  static ssize_t WholeRecord(std::span<const uint8_t> in);
  // How many more bytes the record at the front of `in` needs to be whole (its header first).
  static size_t MissingBytes(std::span<const uint8_t> in);
  // The most bytes Open writes for a record of `record_bytes` (its inner plaintext).
  static size_t OpenRoom(size_t record_bytes) { return record_bytes - kHeaderBytes - kTagBytes; }
  // Opens one whole record into `out` (OpenRoom(record.size()) bytes of room). Returns the
  // application bytes now at the front of `out` (0: the record carried none, e.g. a key update;
  // more than kMaxEmptyInRow of those in a row are kError), kClosed at the peer's close_notify,
  // kError otherwise (the connection must close).
  ssize_t Open(std::span<const uint8_t> record, uint8_t* out);

  uint64_t key_updates_sent() const { return write_.updates; }
  uint64_t key_updates_received() const { return read_.updates; }

 private:
  struct Direction {
    gnutls_aead_cipher_hd_t aead = nullptr;
    std::array<uint8_t, 64> secret{};
    std::array<uint8_t, 12> iv{};
    uint64_t seq = 0;
    uint64_t updates = 0;
  };
  TlsRecords() = default;
  // Derives the key and IV of `d.secret` and makes its cipher; false on an error.
  bool Install(Direction& d);
  // The next traffic secret (RFC 8446 7.2), installed.
  bool Update(Direction& d);
  void Nonce(const Direction& d, uint8_t* nonce) const;
  static void AppendHeader(std::vector<uint8_t>* out, size_t inner);
  // Seals the record at out[at] (its header, then `inner` bytes ending with the type byte, the
  // end of `out`): appends its tag.
  bool SealOne(std::vector<uint8_t>* out, size_t at, size_t inner);
  // A KeyUpdate message of ours (not asking the peer for one), then the new write key.
  bool SendKeyUpdate(std::vector<uint8_t>* out);
  // Post-handshake messages of an opened record: kError unless each is known.
  ssize_t HandshakeMessages(const uint8_t* p, size_t len);

  static constexpr uint8_t kUnexpectedMessage = 10, kBadRecordMac = 20, kRecordOverflow = 22, kDecodeError = 50,
                           kInternalError = 80;
  bool SealAlert(uint8_t level, uint8_t description, std::vector<uint8_t>* out);

  gnutls_cipher_algorithm_t cipher_ = GNUTLS_CIPHER_UNKNOWN;
  gnutls_mac_algorithm_t hash_ = GNUTLS_MAC_UNKNOWN;
  size_t key_bytes_ = 0;
  size_t secret_bytes_ = 0;
  uint64_t records_per_key_ = kRecordsPerKey;
  Direction read_, write_;
  std::atomic<bool> update_asked_{false};  // the peer asked for a key update of ours
  int empty_in_row_ = 0;                   // Open's: records without application data in a row
  uint8_t alert_ = kUnexpectedMessage;     // Open's: the alert for its last kError (0: none)
};

// Seals every byte of the iovecs and sends it to the blocking socket `fd` in parts of at most
// `part_bytes` (a large iovec is cut up), so that the first bytes leave before the last are
// sealed and `sealed` (the caller's buffer, emptied) stays small. False on an error, after which
// nothing may be sent: a record may have left in part. Called by the one thread that seals.
bool SealAndSend(TlsRecords& records, int fd, const iovec* iov, int count, size_t part_bytes,
                 std::vector<uint8_t>* sealed);

}  // namespace tmem

#endif  // TMEM_COMMON_TLS_RECORDS_H_
