// TlsSession on tmem's TLS 1.3 records (common/tls_records.h), after GnuTLS's handshake: the
// secrets kept for them, Recv and SendAll over a socket (NBD), Decrypt in memory mode (the wire).
#include <gnutls/gnutls.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "common/socket_write.h"
#include "server/trust/tls_context.h"

namespace tmem::trust {

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
      const size_t k = std::min(len - got, staged_end_ - staged_pos_);
      std::memcpy(out + got, staged_.data() + staged_pos_, k);
      staged_pos_ += k;
      got += k;
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
  // Sealed and sent in parts of at most kSendPart bytes (a large iovec cut up), so that the
  // first bytes leave before the last are sealed and the buffer stays small.
  constexpr size_t kSendPart = 256 << 10;
  std::vector<iovec> part;
  size_t bytes = 0;
  auto flush = [&] {
    sealed_.clear();
    bool ok = records_->Seal(part.data(), static_cast<int>(part.size()), &sealed_);
    iovec out{sealed_.data(), sealed_.size()};
    ok = ok && SocketWriteFullV(in_.fd(), &out, 1);
    part.clear();
    bytes = 0;
    if (!ok) send_failed_ = true;
    return ok;
  };
  for (int i = 0; i < count; ++i) {
    auto* p = static_cast<uint8_t*>(iov[i].iov_base);
    for (size_t left = iov[i].iov_len; left > 0;) {
      const size_t k = std::min(left, kSendPart - bytes);
      part.push_back({p, k});
      p += k;
      left -= k;
      bytes += k;
      if (bytes == kSendPart && !flush()) return false;
    }
  }
  return part.empty() || flush();
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
  size_t produced = 0;
  if (staged_pos_ < staged_end_) {
    const size_t k = std::min(len, staged_end_ - staged_pos_);
    std::memcpy(buf, staged_.data() + staged_pos_, k);
    staged_pos_ += k;
    produced = k;
    if (staged_pos_ < staged_end_) return static_cast<ssize_t>(produced);
  }
  while (true) {
    std::span<const uint8_t> record;
    bool from_kept = mem_in_pos_ < mem_in_.size();
    if (from_kept) {
      // Bytes kept from earlier Feeds come first: a record not whole yet is completed from what
      // was lent.
      ssize_t whole;
      while ((whole = TlsRecords::WholeRecord({mem_in_.data() + mem_in_pos_, mem_in_.size() - mem_in_pos_})) == 0 &&
             lent_len_ > 0) {
        const size_t have = mem_in_.size() - mem_in_pos_;
        const size_t need =
            have < TlsRecords::kHeaderBytes
                ? TlsRecords::kHeaderBytes - have
                : TlsRecords::kHeaderBytes + (size_t{mem_in_[mem_in_pos_ + 3]} << 8 | mem_in_[mem_in_pos_ + 4]) - have;
        const size_t k = std::min(need, lent_len_);
        mem_in_.insert(mem_in_.end(), lent_, lent_ + k);
        lent_ += k;
        lent_len_ -= k;
      }
      if (whole < 0) {
        pending_error_ = GNUTLS_E_UNEXPECTED_PACKET;
        lent_len_ = 0;
        records_->set_failure_alert_unexpected();
        records_->SealFailureAlert(mem_out_);  // sent before the connection closes
        return produced > 0 ? static_cast<ssize_t>(produced) : -1;
      }
      if (whole == 0) return static_cast<ssize_t>(produced);  // every lent byte is kept now
      record = {mem_in_.data() + mem_in_pos_, static_cast<size_t>(whole)};
    } else {
      const ssize_t whole = TlsRecords::WholeRecord({lent_, lent_len_});
      if (whole < 0) {
        pending_error_ = GNUTLS_E_UNEXPECTED_PACKET;
        lent_len_ = 0;
        records_->set_failure_alert_unexpected();
        records_->SealFailureAlert(mem_out_);  // sent before the connection closes
        return produced > 0 ? static_cast<ssize_t>(produced) : -1;
      }
      if (whole == 0) {
        // The start of a record: kept until the next Feed brings the rest.
        mem_in_.assign(lent_, lent_ + lent_len_);
        mem_in_pos_ = 0;
        lent_len_ = 0;
        return static_cast<ssize_t>(produced);
      }
      record = {lent_, static_cast<size_t>(whole)};
    }
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
