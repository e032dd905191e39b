// TlsSession on tmem's TLS 1.3 records (common/tls_records.h), after GnuTLS's handshake: the
// secrets kept for them, Recv and SendAll over a socket (NBD), Decrypt in memory mode (the wire).
#include <gnutls/gnutls.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "server/trust/tls_context.h"

namespace tmem::trust {

size_t TlsSession::TakeStaged(uint8_t* out, size_t len) {
  const size_t k = std::min(len, staged_end_ - staged_pos_);
  if (k == 0) return 0;  // nothing staged (staged_ may not be allocated yet)
  std::memcpy(out, staged_.data() + staged_pos_, k);
  staged_pos_ += k;
  return k;
}

int TlsSession::KeepSecrets(gnutls_session_t session, gnutls_record_encryption_level_t level, const void* read,
                            const void* write, size_t size) {
  auto* t = static_cast<TlsSession*>(gnutls_session_get_ptr(session));
  return TlsRecords::KeepSecrets(&t->secrets_, level, read, write, size);
}

ssize_t TlsSession::RecvRecords(uint8_t* out, size_t len) {
  size_t got = 0;
  while (got < len) {
    if (pending_error_ != 0) {
      // What was read goes up first; the end or the error then comes on every later call
      // (nothing after a close_notify is read).
      if (got > 0) break;
      return pending_error_ == GNUTLS_E_SESSION_EOF ? 0 : -1;
    }
    if (staged_pos_ < staged_end_) {
      got += TakeStaged(out + got, len - got);
      continue;
    }
    const std::span<const uint8_t> in = in_.unread();
    const ssize_t whole = TlsRecords::WholeRecord(in);
    if (whole < 0) {
      pending_error_ = GNUTLS_E_UNEXPECTED_PACKET;
      continue;
    }
    if (whole == 0) {
      if (got > 0) break;  // only what is here already once something was read
      const ssize_t n = in_.Fill();
      if (n == 0) return 0;  // the end of the stream
      if (n < 0) return -1;  // an error, or SO_RCVTIMEO's timeout
      continue;
    }
    const std::span<const uint8_t> record = in.first(static_cast<size_t>(whole));
    const size_t room = TlsRecords::OpenRoom(record.size());
    ssize_t n;
    if (len - got >= room) {
      n = records_->Open(record, out + got);
      if (n > 0) got += static_cast<size_t>(n);
    } else {
      // Less room than the record may hold (a request header): opened aside, handed out in parts.
      if (staged_.size() < room) staged_.resize(TlsRecords::kMaxRecordBytes);
      n = records_->Open(record, staged_.data());
      staged_end_ = n > 0 ? static_cast<size_t>(n) : 0;
      staged_pos_ = 0;
    }
    in_.Take(record.size());
    if (n < 0) pending_error_ = n == TlsRecords::kClosed ? GNUTLS_E_SESSION_EOF : GNUTLS_E_DECRYPTION_FAILED;
  }
  return static_cast<ssize_t>(got);
}

bool TlsSession::SendRecords(const iovec* iov, int count) {
  if (send_failed_) return false;  // a record may have left in part: nothing may follow it
  if (SealAndSend(*records_, in_.fd(), iov, count, 256 << 10, &sealed_)) return true;
  send_failed_ = true;
  return false;
}

ssize_t TlsSession::OpenRecords(uint8_t* buf, size_t len) {
  if (pending_error_ != 0) {
    lent_len_ = 0;
    return -1;
  }
  if (len == 0) {
    // No room: every lent byte is kept for a call that has some.
    mem_in_.insert(mem_in_.end(), lent_, lent_ + lent_len_);
    lent_len_ = 0;
    return 0;
  }
  size_t produced = TakeStaged(buf, len);
  if (staged_pos_ < staged_end_) return static_cast<ssize_t>(produced);
  while (true) {
    // Bytes kept from earlier Feeds come first: a record not whole yet is completed from what
    // was lent. Then the records lent, read where they are.
    const bool from_kept = mem_in_pos_ < mem_in_.size();
    ssize_t whole;
    if (from_kept) {
      std::span<const uint8_t> kept;
      while ((whole = TlsRecords::WholeRecord(kept = {mem_in_.data() + mem_in_pos_, mem_in_.size() - mem_in_pos_})) ==
                 0 &&
             lent_len_ > 0) {
        const size_t k = std::min(TlsRecords::MissingBytes(kept), lent_len_);
        mem_in_.insert(mem_in_.end(), lent_, lent_ + k);
        lent_ += k;
        lent_len_ -= k;
      }
    } else {
      whole = TlsRecords::WholeRecord({lent_, lent_len_});
    }
    if (whole < 0) {
      pending_error_ = GNUTLS_E_UNEXPECTED_PACKET;
      lent_len_ = 0;
      records_->set_failure_alert_unexpected();
      records_->SealFailureAlert(mem_out_);  // sent before the connection closes
      return produced > 0 ? static_cast<ssize_t>(produced) : -1;
    }
    if (whole == 0) {
      // The start of a record: kept until the next Feed brings the rest (every lent byte is).
      if (!from_kept) {
        mem_in_.assign(lent_, lent_ + lent_len_);
        mem_in_pos_ = 0;
        lent_len_ = 0;
      }
      return static_cast<ssize_t>(produced);
    }
    const std::span<const uint8_t> record(from_kept ? mem_in_.data() + mem_in_pos_ : lent_, static_cast<size_t>(whole));
    const size_t room = TlsRecords::OpenRoom(record.size());
    ssize_t n;
    if (len - produced >= room) {
      n = records_->Open(record, buf + produced);
    } else if (produced > 0) {
      return static_cast<ssize_t>(produced);  // the next call opens it
    } else {
      // Less room than the record may hold (callers give more): opened aside, handed out in parts.
      if (staged_.size() < room) staged_.resize(TlsRecords::kMaxRecordBytes);
      n = records_->Open(record, staged_.data());
      staged_end_ = n > 0 ? static_cast<size_t>(n) : 0;
      staged_pos_ = std::min(len, staged_end_);
      std::memcpy(buf, staged_.data(), staged_pos_);
      if (n >= 0) n = static_cast<ssize_t>(staged_pos_);
    }
    if (from_kept) {
      mem_in_pos_ += record.size();
      if (mem_in_pos_ == mem_in_.size()) {
        mem_in_.clear();
        mem_in_pos_ = 0;
      }
    } else {
      lent_ += record.size();
      lent_len_ -= record.size();
    }
    if (n < 0) {
      // close_notify or a record that does not open: reported after what came before it.
      pending_error_ = n == TlsRecords::kClosed ? GNUTLS_E_SESSION_EOF : GNUTLS_E_DECRYPTION_FAILED;
      lent_len_ = 0;
      // The peer is told why (the loop sends what is queued before it closes the connection).
      if (n == TlsRecords::kError) records_->SealFailureAlert(mem_out_);
      return produced > 0 ? static_cast<ssize_t>(produced) : -1;
    }
    produced += static_cast<size_t>(n);
    if (staged_pos_ < staged_end_) return static_cast<ssize_t>(produced);
  }
}

}  // namespace tmem::trust
