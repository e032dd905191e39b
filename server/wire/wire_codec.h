// Building requests and reading replies of the page wire protocol (wire_format.h): what a client
// sends, used by libtmemclient, the tests and the fuzzer's seeds. The server reads requests
// itself (request_loop.cc), with every check.
#ifndef TMEM_SERVER_WIRE_WIRE_CODEC_H_
#define TMEM_SERVER_WIRE_WIRE_CODEC_H_

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/wire/wire_format.h"

namespace tmem::wire {

// Appends the bytes of `v` to `out`.
template <typename T>
inline void AppendPod(std::vector<uint8_t>& out, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

// Appends a request header; its body_bytes is set by FinishRequest.
inline size_t BeginRequest(std::vector<uint8_t>& out, Verb verb, uint64_t request_id, uint32_t pool_id, uint16_t count,
                           uint32_t page_bytes = 0) {
  const size_t at = out.size();
  RequestHeader h{};
  h.magic = kRequestMagic;
  h.verb = static_cast<uint8_t>(verb);
  h.count = count;
  h.pool_id = pool_id;
  h.request_id = request_id;
  h.page_bytes = page_bytes;
  AppendPod(out, h);
  return at;
}

inline void FinishRequest(std::vector<uint8_t>& out, size_t at) {
  const auto body = static_cast<uint32_t>(out.size() - at - sizeof(RequestHeader));
  std::memcpy(out.data() + at + offsetof(RequestHeader, body_bytes), &body, sizeof(body));
}

// An entry for `object` (at most kMaxObjectBytes; longer keys are cut, which the caller must
// have refused) and `index`.
inline void AppendEntry(std::vector<uint8_t>& out, std::string_view object, uint64_t index) {
  Entry e{};
  e.index = index;
  const size_t n = object.size() < kMaxObjectBytes ? object.size() : kMaxObjectBytes;
  e.object_bytes = static_cast<uint8_t>(n);
  std::memcpy(e.object, object.data(), n);
  AppendPod(out, e);
}

inline void AppendHello(std::vector<uint8_t>& out, uint64_t request_id, uint16_t min_version = kVersion,
                        uint16_t max_version = kVersion) {
  const size_t at = BeginRequest(out, Verb::kHello, request_id, 0, 0);
  Hello hello{};
  hello.min_version = min_version;
  hello.max_version = max_version;
  AppendPod(out, hello);
  FinishRequest(out, at);
}

// A reply whose header and body are whole at the front of `bytes`, or nothing yet.
struct Reply {
  ReplyHeader header;
  std::span<const uint8_t> body;
  size_t bytes = 0;  // header + body: what to drop from the front
};
inline bool TakeReply(std::span<const uint8_t> bytes, Reply* r) {
  if (bytes.size() < sizeof(ReplyHeader)) return false;
  std::memcpy(&r->header, bytes.data(), sizeof(ReplyHeader));
  if (bytes.size() - sizeof(ReplyHeader) < r->header.body_bytes) return false;
  r->body = bytes.subspan(sizeof(ReplyHeader), r->header.body_bytes);
  r->bytes = sizeof(ReplyHeader) + r->header.body_bytes;
  return true;
}

}  // namespace tmem::wire

#endif  // TMEM_SERVER_WIRE_WIRE_CODEC_H_
