#include "server/nbd/handshake.h"

#include <string>
#include <vector>

#include "server/nbd/protocol.h"
#include "server/nbd/socket_io.h"

namespace tmem::nbd {
namespace {

// Option data longer than this is a broken or hostile client: the connection is dropped.
constexpr uint32_t kMaxOptionBytes = 64 << 10;
// More options than this in one handshake: dropped too.
constexpr int kMaxOptions = 256;

bool Reply(int fd, uint32_t option, uint32_t type, const void* data, uint32_t len) {
  uint8_t h[20];
  Put64(h, kOptReplyMagic);
  Put32(h + 8, option);
  Put32(h + 12, type);
  Put32(h + 16, len);
  iovec iov[2] = {{h, sizeof(h)}, {const_cast<void*>(data), len}};
  return WriteFullV(fd, iov, len > 0 ? 2 : 1);
}

bool ReplyError(int fd, uint32_t option, uint32_t type, const std::string& message) {
  return Reply(fd, option, type, message.data(), static_cast<uint32_t>(message.size()));
}

bool SendInfoExport(int fd, uint32_t option, const Export& e) {
  uint8_t b[12];
  Put16(b, kInfoExport);
  Put64(b + 2, e.backend->size());
  Put16(b + 10, e.TransmissionFlags());
  return Reply(fd, option, kRepInfo, b, sizeof(b));
}

bool SendInfoString(int fd, uint32_t option, uint16_t info, const std::string& s) {
  std::vector<uint8_t> b(2 + s.size());
  Put16(b.data(), info);
  std::memcpy(b.data() + 2, s.data(), s.size());
  return Reply(fd, option, kRepInfo, b.data(), static_cast<uint32_t>(b.size()));
}

bool SendInfoBlockSize(int fd, uint32_t option) {
  uint8_t b[14];
  Put16(b, kInfoBlockSize);
  Put32(b + 2, kMinBlock);
  Put32(b + 6, kPreferredBlock);
  Put32(b + 10, kMaxPayload);
  return Reply(fd, option, kRepInfo, b, sizeof(b));
}

Export* Find(NbdServer& server, const std::string& name) {
  // The empty name is the default export: the first one.
  if (name.empty()) return server.exports().empty() ? nullptr : server.exports().front().get();
  return const_cast<Export*>(server.FindExport(name));
}

}  // namespace

Negotiated Handshake(NbdServer& server, int fd) {
  Negotiated out;
  uint8_t hello[18];
  Put64(hello, kNbdMagic);
  Put64(hello + 8, kOptMagic);
  Put16(hello + 16, kFlagFixedNewstyle | kFlagNoZeroes);
  if (!WriteFull(fd, hello, sizeof(hello))) return out;
  uint8_t cf[4];
  if (!ReadFull(fd, cf, 4)) return out;
  const uint32_t client_flags = Get32(cf);
  if ((client_flags & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) != 0) return out;  // unknown: MUST close
  const bool no_zeroes = (client_flags & kClientFlagNoZeroes) != 0;

  for (int n = 0; n < kMaxOptions; ++n) {
    uint8_t h[16];
    if (!ReadFull(fd, h, sizeof(h))) return out;
    if (Get64(h) != kOptMagic) return out;
    const uint32_t option = Get32(h + 8);
    const uint32_t len = Get32(h + 12);
    if (len > kMaxOptionBytes) return out;
    std::vector<uint8_t> data(len);
    if (len > 0 && !ReadFull(fd, data.data(), len)) return out;
    if (server.stopping()) {
      ReplyError(fd, option, 0x80000007u /* NBD_REP_ERR_SHUTDOWN */, "server is shutting down");
      return out;
    }

    switch (option) {
      case kOptExportName: {
        Export* e = Find(server, std::string(data.begin(), data.end()));
        if (e == nullptr) return out;  // this option cannot fail: close
        uint8_t b[10 + 124] = {};
        Put64(b, e->backend->size());
        Put16(b + 8, e->TransmissionFlags());
        if (!WriteFull(fd, b, no_zeroes ? 10 : sizeof(b))) return out;
        out.exp = e;
        return out;
      }
      case kOptAbort:
        Reply(fd, option, kRepAck, nullptr, 0);
        return out;
      case kOptList: {
        if (len != 0) {
          if (!ReplyError(fd, option, kRepErrInvalid, "NBD_OPT_LIST carries no data")) return out;
          break;
        }
        for (const auto& e : server.exports()) {
          std::vector<uint8_t> b(4 + e->name.size() + e->description.size());
          Put32(b.data(), static_cast<uint32_t>(e->name.size()));
          std::memcpy(b.data() + 4, e->name.data(), e->name.size());
          std::memcpy(b.data() + 4 + e->name.size(), e->description.data(), e->description.size());
          if (!Reply(fd, option, kRepServer, b.data(), static_cast<uint32_t>(b.size()))) return out;
        }
        if (!Reply(fd, option, kRepAck, nullptr, 0)) return out;
        break;
      }
      case kOptStructuredReply:
        if (len != 0) {
          if (!ReplyError(fd, option, kRepErrInvalid, "NBD_OPT_STRUCTURED_REPLY carries no data")) return out;
          break;
        }
        out.structured = true;
        if (!Reply(fd, option, kRepAck, nullptr, 0)) return out;
        break;
      case kOptInfo:
      case kOptGo: {
        // 32-bit name length, name, 16-bit request count, requests.
        bool ok = len >= 6;
        uint32_t name_len = ok ? Get32(data.data()) : 0;
        ok = ok && name_len <= len - 6 && name_len <= kMaxString;
        uint16_t count = ok ? Get16(data.data() + 4 + name_len) : 0;
        ok = ok && len == 4 + name_len + 2 + 2u * count;
        if (!ok) {
          if (!ReplyError(fd, option, kRepErrInvalid, "malformed NBD_OPT_INFO/GO")) return out;
          break;
        }
        const std::string name(data.begin() + 4, data.begin() + 4 + name_len);
        Export* e = Find(server, name);
        if (e == nullptr) {
          if (!ReplyError(fd, option, kRepErrUnknown, "no export named '" + name + "'")) return out;
          break;
        }
        bool want_name = false, want_description = false;
        for (uint16_t i = 0; i < count; ++i) {
          const uint16_t info = Get16(data.data() + 4 + name_len + 2 + 2 * i);
          want_name |= info == kInfoName;
          want_description |= info == kInfoDescription;
        }
        if (!SendInfoExport(fd, option, *e)) return out;
        if (want_name && !SendInfoString(fd, option, kInfoName, e->name)) return out;
        if (want_description && !e->description.empty() &&
            !SendInfoString(fd, option, kInfoDescription, e->description)) {
          return out;
        }
        if (!SendInfoBlockSize(fd, option)) return out;
        if (!Reply(fd, option, kRepAck, nullptr, 0)) return out;
        if (option == kOptGo) {
          out.exp = e;
          return out;
        }
        break;
      }
      default:
        if (!ReplyError(fd, option, kRepErrUnsup, "option " + std::to_string(option) + " is not supported")) {
          return out;
        }
        break;
    }
  }
  return out;
}

}  // namespace tmem::nbd
