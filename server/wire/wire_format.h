// The page wire protocol, version 1: the bytes on the wire, shared by the server (server/wire)
// and the client (client/wire_stream). docs/wire.md is the prose; this header is the contract.
//
// Every integer is little-endian. A connection carries requests (client to server) and replies
// (server to client), each a fixed 32-byte header followed by `body_bytes` of body. Replies carry
// the request's id and may come in any order. The first request must be kHello.
#ifndef TMEM_SERVER_WIRE_WIRE_FORMAT_H_
#define TMEM_SERVER_WIRE_WIRE_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tmem::wire {

inline constexpr uint16_t kVersion = 1;

// "tmRq" and "tmRp" in the stream's byte order.
inline constexpr uint32_t kRequestMagic = 0x71526d74;
inline constexpr uint32_t kReplyMagic = 0x70526d74;

enum class Verb : uint8_t {
  kHello = 1,        // body: Hello; reply body: HelloReply + the tenant's name
  kPut = 2,          // body: count x (Entry + page_bytes of page)
  kGet = 3,          // body: count x Entry; reply body: GetReply layout (below)
  kFlushPages = 4,   // body: count x Entry
  kFlushObject = 5,  // body: count x Entry (each entry's object; its index must be 0)
  kFlushPool = 6,    // body: empty, count 0
};
inline constexpr uint8_t kMaxVerb = 6;

// Request header: 32 bytes.
struct RequestHeader {
  uint32_t magic;       // 0: kRequestMagic
  uint8_t verb;         // 4: Verb
  uint8_t flags;        // 5: 0 (others reserved)
  uint16_t count;       // 6: entries in the body (kPut, kGet, kFlushPages, kFlushObject)
  uint32_t pool_id;     // 8: the pool (0 for kHello)
  uint32_t body_bytes;  // 12: bytes after the header; must be exactly what verb and count imply
  uint64_t request_id;  // 16: echoed in the reply; the client's to choose (unique among its unanswered)
  uint32_t page_bytes;  // 24: kPut: every page's size (the pool's); 0 otherwise
  uint32_t reserved;    // 28: 0
};
static_assert(sizeof(RequestHeader) == 32);

// Reply header: 32 bytes.
struct ReplyHeader {
  uint32_t magic;        // 0: kReplyMagic
  uint8_t verb;          // 4: the request's verb (0 when the request's header could not be read)
  uint8_t flags;         // 5: kReplyClosing when the server closes the connection after this reply
  uint16_t count;        // 6: kGet: results in the body; 0 otherwise
  uint32_t status;       // 8: a google.rpc.Code (0 = OK), as gRPC's for the same request
  uint32_t body_bytes;   // 12: bytes after the header (an error's body is its message, UTF-8)
  uint64_t request_id;   // 16: the request's id
  uint64_t instance_id;  // 24: the server's instance id (a change means it restarted)
};
static_assert(sizeof(ReplyHeader) == 32);
inline constexpr uint8_t kReplyClosing = 1;

// One handle: 40 bytes.
struct Entry {
  uint64_t index;        // 0: the page's index within its object
  uint8_t object_bytes;  // 8: 1 to 24
  uint8_t reserved[7];   // 9: 0
  uint8_t object[24];    // 16: the object key; bytes past object_bytes are 0
};
static_assert(sizeof(Entry) == 40);

// kHello body: 16 bytes.
struct Hello {
  uint16_t min_version;  // 0: the oldest version the client speaks
  uint16_t max_version;  // 2: the newest
  uint32_t flags;        // 4: 0
  uint64_t reserved;     // 8: 0
};
static_assert(sizeof(Hello) == 16);

// kHello reply body: 32 bytes, then tenant_bytes of the tenant's name.
struct HelloReply {
  uint16_t version;         // 0: the version this connection speaks from now on
  uint16_t reserved0;       // 2
  uint32_t max_batch;       // 4: entries per request at most
  uint32_t max_in_flight;   // 8: requests a client should keep unanswered at most
  uint32_t max_page_bytes;  // 12: the largest page size
  uint32_t max_body_bytes;  // 16: the largest request body
  uint32_t tenant_bytes;    // 20: the length of the tenant's name after this struct
  uint64_t reserved1;       // 24
};
static_assert(sizeof(HelloReply) == 32);

// kGet reply body: `count` result bytes (1 = hit, 0 = miss), padded with zeros to a multiple
// of 8, then the hits' pages, in request order.
inline constexpr size_t GetResultBytes(size_t count) { return (count + 7) & ~size_t{7}; }

inline constexpr uint32_t kMaxBatch = 256;
inline constexpr uint32_t kMaxObjectBytes = 24;
inline constexpr uint32_t kMaxPageBytes = 64 << 10;
// The largest request: a put of kMaxBatch pages of kMaxPageBytes.
inline constexpr uint32_t kMaxBodyBytes = kMaxBatch * (sizeof(Entry) + kMaxPageBytes);
// Error messages are cut to this.
inline constexpr size_t kMaxMessageBytes = 1024;

// Little-endian hosts only (x86-64, arm64): the structs are the wire bytes.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire structs are little-endian");

template <typename T>
inline T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace tmem::wire

#endif  // TMEM_SERVER_WIRE_WIRE_FORMAT_H_
