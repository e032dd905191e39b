// The NBD request loop in-process, over a socketpair, with a backend whose calls can be held:
// replies leave in the order requests finish, and the in-flight limits stop the reading.
#include "server/nbd/nbd_server.h"

#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server/backend/memory_backend.h"
#include "server/nbd/protocol.h"
#include "server/nbd/socket_io.h"

namespace tmem::nbd {
namespace {

using backend::BackendCaps;
using backend::BlockBackend;
using backend::BufferedOutcome;
using backend::MemoryBackend;

// A memory backend whose reads and writes wait while the gate is closed, counting callers.
class GatedBackend final : public BlockBackend {
 public:
  explicit GatedBackend(uint64_t size, BackendCaps caps = {}) : mem_(size), caps_(caps) {}
  uint64_t size() const override { return mem_.size(); }
  BackendCaps caps() const override { return caps_; }
  absl::Status Pread(void* buf, uint32_t len, uint64_t offset) override {
    Enter(offset);
    return mem_.Pread(buf, len, offset);
  }
  absl::Status Pwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) override {
    pwrites_.fetch_add(1);
    Enter(offset);
    return mem_.Pwrite(buf, len, offset, fua);
  }
  // Serves reads "from memory" once AllowBufferedReads() is called; declines before.
  absl::StatusOr<BufferedOutcome> PreadBuffered(void* buf, uint32_t len, uint64_t offset) override {
    if (!buffered_reads_.load()) return BufferedOutcome::kWouldWait;
    buffered_reads_served_.fetch_add(1);
    Enter(offset);
    if (absl::Status st = mem_.Pread(buf, len, offset); !st.ok()) return st;
    return BufferedOutcome::kDone;
  }
  void AllowBufferedReads() { buffered_reads_ = true; }
  int buffered_reads_served() const { return buffered_reads_served_.load(); }
  // Declines (as a full buffer would) at the offsets given to Decline.
  absl::StatusOr<BufferedOutcome> PwriteBuffered(const void* buf, uint32_t len, uint64_t offset) override {
    buffered_.fetch_add(1);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (std::find(declined_.begin(), declined_.end(), offset) != declined_.end()) {
        return BufferedOutcome::kWouldWait;
      }
    }
    Enter(offset);
    if (absl::Status st = mem_.Pwrite(buf, len, offset, false); !st.ok()) return st;
    return BufferedOutcome::kDone;
  }
  absl::Status Flush() override { return absl::OkStatus(); }
  absl::Status Trim(uint64_t o, uint64_t l, bool f) override { return mem_.Trim(o, l, f); }
  absl::Status Zero(uint64_t o, uint64_t l, bool t, bool f) override { return mem_.Zero(o, l, t, f); }
  std::string Describe() const override { return "gated"; }

  // Calls at `offset` wait until Open(offset) (or OpenAll).
  void Hold(uint64_t offset) {
    std::lock_guard<std::mutex> l(mu_);
    held_.push_back(offset);
  }
  void Open(uint64_t offset) {
    std::lock_guard<std::mutex> l(mu_);
    std::erase(held_, offset);
    cv_.notify_all();
  }
  void OpenAll() {
    std::lock_guard<std::mutex> l(mu_);
    held_.clear();
    cv_.notify_all();
  }
  void Decline(uint64_t offset) {
    std::lock_guard<std::mutex> l(mu_);
    declined_.push_back(offset);
  }
  int entered() const { return entered_.load(); }
  int pwrites() const { return pwrites_.load(); }
  int buffered() const { return buffered_.load(); }

 private:
  void Enter(uint64_t offset) {
    entered_.fetch_add(1);
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return std::find(held_.begin(), held_.end(), offset) == held_.end(); });
  }
  MemoryBackend mem_;
  const BackendCaps caps_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> held_, declined_;
  std::atomic<int> entered_{0}, pwrites_{0}, buffered_{0}, buffered_reads_served_{0};
  std::atomic<bool> buffered_reads_{false};
};

class NbdServerTest : public ::testing::Test {
 protected:
  void Start(NbdServerOptions o, uint64_t size = 64 << 20, BackendCaps caps = {}) {
    auto e = std::make_unique<Export>();
    e->name = "disk0";
    auto b = std::make_unique<GatedBackend>(size, caps);
    backend_ = b.get();
    e->backend = std::move(b);
    std::vector<std::unique_ptr<Export>> exports;
    exports.push_back(std::move(e));
    auto s = NbdServer::Start(o, std::move(exports));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client_ = sv[0];
    serving_ = std::thread([this, fd = sv[1]] {
      ServeConnection(*server_, fd);
      ::close(fd);
    });
    // Handshake: fixed newstyle, no zeroes, EXPORT_NAME.
    uint8_t hello[18];
    ASSERT_TRUE(ReadFull(client_, hello, sizeof(hello)));
    ASSERT_EQ(Get64(hello), kNbdMagic);
    uint8_t b4[4];
    Put32(b4, kClientFlagFixedNewstyle | kClientFlagNoZeroes);
    ASSERT_TRUE(WriteFull(client_, b4, 4));
    uint8_t opt[16 + 5];
    Put64(opt, kOptMagic);
    Put32(opt + 8, kOptExportName);
    Put32(opt + 12, 5);
    std::memcpy(opt + 16, "disk0", 5);
    ASSERT_TRUE(WriteFull(client_, opt, sizeof(opt)));
    uint8_t reply[10];
    ASSERT_TRUE(ReadFull(client_, reply, sizeof(reply)));
    ASSERT_EQ(Get64(reply), size);
  }
  void TearDown() override {
    if (backend_ != nullptr) backend_->OpenAll();
    if (client_ >= 0) ::shutdown(client_, SHUT_RDWR);
    if (serving_.joinable()) serving_.join();
    if (client_ >= 0) ::close(client_);
  }
  void Send(uint16_t cmd, uint64_t cookie, uint64_t offset, uint32_t len, const std::string& payload = "") {
    std::string r;
    AppendRequest(&r, cmd, cookie, offset, len, payload);
    ASSERT_TRUE(WriteFull(client_, r.data(), r.size()));
  }
  static void AppendRequest(std::string* out, uint16_t cmd, uint64_t cookie, uint64_t offset, uint32_t len,
                            const std::string& payload = "", uint16_t flags = 0) {
    uint8_t h[kRequestBytes];
    Put32(h, kRequestMagic);
    Put16(h + 4, flags);
    Put16(h + 6, cmd);
    Put64(h + 8, cookie);
    Put64(h + 16, offset);
    Put32(h + 24, len);
    out->append(reinterpret_cast<const char*>(h), sizeof(h));
    out->append(payload);
  }
  // Holds a first write in the backend (so that nothing more is read), then puts `burst` into
  // the socket in one piece and lets the first write go: the next read takes the whole burst.
  void SendBurstBehindAHeldWrite(const std::string& burst, uint64_t held_offset) {
    backend_->Hold(held_offset);
    const int before = backend_->entered();
    Send(kCmdWrite, 1, held_offset, 4096, std::string(4096, 'h'));
    ASSERT_TRUE(WaitFor([&] { return backend_->entered() == before + 1; }));
    ASSERT_TRUE(WriteFull(client_, burst.data(), burst.size()));  // a unix socket: all queued now
    backend_->Open(held_offset);
    uint32_t err;
    ASSERT_EQ(Reply(&err), 1u);
    ASSERT_EQ(err, 0u);
  }
  const Export& exp() const { return *server_->FindExport("disk0"); }
  // Reads `n` simple replies without data, expecting success; returns their cookies, sorted.
  std::vector<uint64_t> SortedSuccessfulReplies(int n) {
    std::vector<uint64_t> cookies;
    for (int i = 0; i < n; ++i) {
      uint32_t err;
      cookies.push_back(Reply(&err));
      EXPECT_EQ(err, 0u) << "cookie " << cookies.back();
    }
    std::sort(cookies.begin(), cookies.end());
    return cookies;
  }
  // Reads the 4 KiB block at `offset` and expects it filled with `fill`.
  void ExpectBlock(uint64_t cookie, uint64_t offset, char fill) {
    Send(kCmdRead, cookie, offset, 4096);
    uint8_t r[16];
    ASSERT_TRUE(ReadFull(client_, r, sizeof(r)));
    ASSERT_EQ(Get32(r + 4), 0u);
    ASSERT_EQ(Get64(r + 8), cookie);
    std::string data(4096, '\0');
    ASSERT_TRUE(ReadFull(client_, data.data(), data.size()));
    EXPECT_EQ(data, std::string(4096, fill)) << "at " << offset;
  }
  // Reads one simple reply; returns its cookie (and the error through `error`).
  uint64_t Reply(uint32_t* error, uint32_t read_len = 0) {
    uint8_t r[16];
    EXPECT_TRUE(ReadFull(client_, r, sizeof(r)));
    EXPECT_EQ(Get32(r), kSimpleReplyMagic);
    *error = Get32(r + 4);
    if (*error == 0 && read_len > 0) {
      std::string data(read_len, '\0');
      EXPECT_TRUE(ReadFull(client_, data.data(), read_len));
    }
    return Get64(r + 8);
  }
  template <typename F>
  static bool WaitFor(F cond) {
    for (int i = 0; i < 500 && !cond(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return cond();
  }

  std::unique_ptr<NbdServer> server_;
  GatedBackend* backend_ = nullptr;
  int client_ = -1;
  std::thread serving_;
};

TEST_F(NbdServerTest, RepliesLeaveInTheOrderRequestsFinish) {
  Start({.threads_per_connection = 4});
  backend_->Hold(0);
  Send(kCmdRead, 1, 0, 4096);     // held in the backend
  Send(kCmdRead, 2, 8192, 4096);  // free
  uint32_t err;
  EXPECT_EQ(Reply(&err, 4096), 2u) << "the second request's reply must not wait for the first";
  EXPECT_EQ(err, 0u);
  backend_->Open(0);
  EXPECT_EQ(Reply(&err, 4096), 1u);
  EXPECT_EQ(err, 0u);
}

TEST_F(NbdServerTest, BytesInFlightStopTheReading) {
  // 32 MiB in flight at most: two 16 MiB writes held in the backend, a third is not taken in.
  Start({.max_requests_in_flight = 16, .max_bytes_in_flight = 32u << 20, .threads_per_connection = 8});
  for (uint64_t off : {0ull, 16ull << 20, 32ull << 20}) backend_->Hold(off);
  std::thread writer([&] {
    for (uint64_t i = 0; i < 3; ++i) Send(kCmdWrite, 10 + i, i * (16 << 20), 16 << 20, std::string(16 << 20, 'w'));
  });
  ASSERT_TRUE(WaitFor([&] { return backend_->entered() == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(backend_->entered(), 2) << "a third 16 MiB write was read past the 32 MiB limit";
  backend_->OpenAll();
  writer.join();
  EXPECT_EQ(SortedSuccessfulReplies(3), (std::vector<uint64_t>{10, 11, 12}));
}

TEST_F(NbdServerTest, RequestsInFlightAreBounded) {
  Start({.max_requests_in_flight = 3, .threads_per_connection = 16});
  for (uint64_t i = 0; i < 6; ++i) backend_->Hold(i * 4096);
  for (uint64_t i = 0; i < 6; ++i) Send(kCmdRead, 100 + i, i * 4096, 4096);
  ASSERT_TRUE(WaitFor([&] { return backend_->entered() == 3; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(backend_->entered(), 3);
  backend_->OpenAll();
  for (int i = 0; i < 6; ++i) {
    uint32_t err;
    Reply(&err, 4096);
    EXPECT_EQ(err, 0u);
  }
}

TEST_F(NbdServerTest, RepliesQueuedWhileAnotherIsBeingSentAllArriveWhole) {
  Start({.threads_per_connection = 8});
  timeval tv{.tv_sec = 10, .tv_usec = 0};  // a lost reply fails the test instead of hanging it
  ASSERT_EQ(::setsockopt(client_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
  uint32_t err;
  for (uint64_t i = 0; i < 6; ++i) {
    Send(kCmdWrite, 50 + i, i * 4096, 4096, std::string(4096, static_cast<char>('a' + i)));
    Reply(&err);
    ASSERT_EQ(err, 0u);
  }
  // A 4 MiB read whose reply fills the socket (the client reads nothing yet): its thread stays
  // on the socket while six small reads complete, so their replies are queued behind it.
  Send(kCmdRead, 1, 1 << 20, 4 << 20);
  // Its reply has started (bytes wait in the client's socket) before the small reads are sent.
  ASSERT_TRUE(WaitFor([&] {
    int n = 0;
    return ::ioctl(client_, FIONREAD, &n) == 0 && n > 0;
  }));
  for (uint64_t i = 0; i < 6; ++i) Send(kCmdRead, 100 + i, i * 4096, 4096);
  ASSERT_TRUE(WaitFor([&] { return backend_->entered() == 13; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(Reply(&err, 4 << 20), 1u);
  EXPECT_EQ(err, 0u);
  std::vector<uint64_t> cookies;
  for (int i = 0; i < 6; ++i) {
    uint8_t r[16];
    ASSERT_TRUE(ReadFull(client_, r, sizeof(r))) << "reply " << i << " of the queued six never came";
    ASSERT_EQ(Get32(r), kSimpleReplyMagic);
    ASSERT_EQ(Get32(r + 4), 0u);
    const uint64_t cookie = Get64(r + 8);
    ASSERT_GE(cookie, 100u);
    ASSERT_LT(cookie, 106u);
    std::string data(4096, '\0');
    ASSERT_TRUE(ReadFull(client_, data.data(), data.size()));
    EXPECT_EQ(data, std::string(4096, static_cast<char>('a' + (cookie - 100)))) << "cookie " << cookie;
    cookies.push_back(cookie);
  }
  std::sort(cookies.begin(), cookies.end());
  EXPECT_EQ(cookies, (std::vector<uint64_t>{100, 101, 102, 103, 104, 105}));
}

// Small writes that arrive together at a backend with buffered writes run as one batch on the
// reading thread: every one answered, every byte where it belongs.
TEST_F(NbdServerTest, SmallWritesArrivingTogetherRunAsOneBatch) {
  Start({.threads_per_connection = 4}, 64 << 20, {.buffered_writes = true});
  std::string burst;
  for (uint64_t i = 0; i < 20; ++i) {
    AppendRequest(&burst, kCmdWrite, 100 + i, (10 + i) * 4096, 4096, std::string(4096, static_cast<char>('A' + i)));
  }
  SendBurstBehindAHeldWrite(burst, 0);
  const std::vector<uint64_t> cookies = SortedSuccessfulReplies(20);
  for (uint64_t i = 0; i < 20; ++i) EXPECT_EQ(cookies[i], 100 + i);
  EXPECT_EQ(exp().batched_requests.load(), 20u) << "the 20 writes did not run as one batch";
  EXPECT_EQ(backend_->buffered(), 21) << "a batched write did not go through PwriteBuffered";
  for (uint64_t i = 0; i < 20; ++i) ExpectBlock(200 + i, (10 + i) * 4096, static_cast<char>('A' + i));
}

// A batch ends at the first request it cannot take (an invalid write, a FUA write) or run (a
// read the backend cannot serve from memory): each of those gets its own answer on the usual
// path, and the writes after them batch again.
TEST_F(NbdServerTest, ABatchStopsAtARequestItCannotTakeAndEachGetsItsOwnAnswer) {
  Start({.threads_per_connection = 4}, 1 << 20, {.buffered_writes = true});
  std::string burst;
  AppendRequest(&burst, kCmdWrite, 11, 4096, 4096, std::string(4096, 'a'));
  AppendRequest(&burst, kCmdWrite, 12, (1 << 20) - 2048, 4096, std::string(4096, 'b'));  // past the end
  AppendRequest(&burst, kCmdWrite, 13, 8192, 4096, std::string(4096, 'c'), kCmdFlagFua);
  AppendRequest(&burst, kCmdRead, 14, 4096, 4096);
  AppendRequest(&burst, kCmdWrite, 15, 12288, 4096, std::string(4096, 'e'));
  AppendRequest(&burst, kCmdWrite, 16, 16384, 4096, std::string(4096, 'f'));
  AppendRequest(&burst, kCmdWrite, 17, 20480, 0);  // empty: valid, and it must not reach the backend as null
  SendBurstBehindAHeldWrite(burst, 0);
  std::map<uint64_t, uint32_t> errors;
  for (int i = 0; i < 7; ++i) {
    uint8_t r[16];
    ASSERT_TRUE(ReadFull(client_, r, sizeof(r)));
    const uint64_t cookie = Get64(r + 8);
    errors[cookie] = Get32(r + 4);
    if (cookie == 14 && errors[cookie] == 0) {
      std::string data(4096, '\0');
      ASSERT_TRUE(ReadFull(client_, data.data(), data.size()));
      EXPECT_EQ(data, std::string(4096, 'a')) << "the read did not see the write before it";
    }
  }
  EXPECT_EQ(errors,
            (std::map<uint64_t, uint32_t>{{11, 0}, {12, kEnospc}, {13, 0}, {14, 0}, {15, 0}, {16, 0}, {17, 0}}));
  EXPECT_EQ(exp().batched_requests.load(), 3u) << "only writes 15, 16 and 17 could run together";
  EXPECT_EQ(backend_->pwrites(), 1) << "only the FUA write goes through Pwrite";
  for (auto [off, ch] : std::vector<std::pair<uint64_t, char>>{{8192, 'c'}, {12288, 'e'}, {16384, 'f'}}) {
    ExpectBlock(99, off, ch);
  }
}

// A buffered write that would wait (no room) runs through Pwrite after the reading thread lets
// go of the socket: while it is held there, the requests behind it are still read, run and
// answered.
TEST_F(NbdServerTest, AWriteThatWouldWaitRunsAfterTheSocketIsLetGo) {
  Start({.threads_per_connection = 4}, 1 << 20, {.buffered_writes = true});
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  ASSERT_EQ(::setsockopt(client_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
  backend_->Decline(3 * 4096);
  backend_->Hold(3 * 4096);  // and its Pwrite waits
  std::string burst;
  for (uint64_t i = 1; i <= 5; ++i) {
    AppendRequest(&burst, kCmdWrite, 20 + i, i * 4096, 4096, std::string(4096, static_cast<char>('0' + i)));
  }
  SendBurstBehindAHeldWrite(burst, 0);
  // 1 and 2 in the first batch; 4 and 5 while 3 waits.
  EXPECT_EQ(SortedSuccessfulReplies(4), (std::vector<uint64_t>{21, 22, 24, 25}))
      << "the requests behind a waiting write were not served";
  uint32_t err;
  Send(kCmdRead, 30, 1 * 4096, 4096);
  EXPECT_EQ(Reply(&err, 4096), 30u) << "a waiting write kept the socket";
  EXPECT_EQ(err, 0u);
  backend_->Open(3 * 4096);
  EXPECT_EQ(Reply(&err), 23u);
  EXPECT_EQ(err, 0u);
  EXPECT_EQ(backend_->buffered(), 6) << "the held write, 1-5 (3 declined)";
  EXPECT_EQ(backend_->pwrites(), 1) << "only 3 through Pwrite";
  for (uint64_t i = 1; i <= 5; ++i) ExpectBlock(40 + i, i * 4096, static_cast<char>('0' + i));
}

// Reads the backend can serve from memory run in the batch too, their data in the one send.
TEST_F(NbdServerTest, ReadsServedFromMemoryRunInTheBatch) {
  Start({.threads_per_connection = 4}, 1 << 20, {.buffered_writes = true});
  uint32_t err;
  for (uint64_t i = 1; i <= 8; ++i) {
    Send(kCmdWrite, 50 + i, i * 4096, 4096, std::string(4096, static_cast<char>('k' + i)));
    ASSERT_EQ(Reply(&err), 50 + i);
    ASSERT_EQ(err, 0u);
  }
  backend_->AllowBufferedReads();
  std::string burst;
  for (uint64_t i = 1; i <= 8; ++i) AppendRequest(&burst, kCmdRead, 60 + i, i * 4096, 4096);
  SendBurstBehindAHeldWrite(burst, 0);
  std::set<uint64_t> seen;
  for (int i = 0; i < 8; ++i) {
    uint8_t r[16];
    ASSERT_TRUE(ReadFull(client_, r, sizeof(r)));
    ASSERT_EQ(Get32(r + 4), 0u);
    const uint64_t cookie = Get64(r + 8);
    ASSERT_TRUE(cookie > 60 && cookie <= 68) << cookie;
    std::string data(4096, '\0');
    ASSERT_TRUE(ReadFull(client_, data.data(), data.size()));
    EXPECT_EQ(data, std::string(4096, static_cast<char>('k' + (cookie - 60)))) << "cookie " << cookie;
    seen.insert(cookie);
  }
  EXPECT_EQ(seen.size(), 8u);
  EXPECT_EQ(backend_->buffered_reads_served(), 8);
  EXPECT_EQ(exp().batched_requests.load(), 8u) << "the 8 reads did not run as one batch";
}

TEST(ExportTest, MultiConnIsAdvertisedOnlyWhenTheBackendFlushCoversEveryConnection) {
  Export shared;
  shared.backend = std::make_unique<GatedBackend>(1 << 20, BackendCaps{.multi_conn = true});
  EXPECT_NE(shared.TransmissionFlags() & kFlagCanMultiConn, 0);
  Export single;
  single.backend = std::make_unique<GatedBackend>(1 << 20, BackendCaps{.multi_conn = false});
  EXPECT_EQ(single.TransmissionFlags() & kFlagCanMultiConn, 0);
  Export ro;
  ro.read_only = true;
  ro.backend = std::make_unique<GatedBackend>(1 << 20, BackendCaps{.trim = true});
  const uint16_t f = ro.TransmissionFlags();
  EXPECT_NE(f & kFlagReadOnly, 0);
  EXPECT_EQ(f & (kFlagSendTrim | kFlagSendWriteZeroes), 0) << "a read-only export offers no writing commands";
}

// The reader under the request loop: every byte in order whatever the mix of read sizes.
TEST(BufferedReaderTest, ReturnsEveryByteInOrderForAnyMixOfReadSizes) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::vector<uint8_t> data(4 << 20);
  std::mt19937 rng(7);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  std::thread writer([&] {
    size_t off = 0;
    while (off < data.size()) {  // uneven sends, so reads straddle them
      const size_t n = std::min<size_t>(data.size() - off, 1 + rng() % 90000);
      ASSERT_TRUE(WriteFull(sv[1], data.data() + off, n));
      off += n;
    }
  });
  SocketTransport socket(sv[0]);
  BufferedReader in(socket, 64 << 10);
  std::mt19937 sizes(11);
  std::vector<uint8_t> got(data.size());
  size_t off = 0;
  while (off < data.size()) {
    // Headers, small payloads and payloads larger than a quarter of the buffer.
    const size_t pick = sizes() % 3;
    size_t n = pick == 0 ? kRequestBytes : pick == 1 ? 1 + sizes() % 8192 : 16384 + sizes() % 200000;
    n = std::min(n, data.size() - off);
    ASSERT_TRUE(in.Read(got.data() + off, n)) << "at " << off;
    off += n;
  }
  writer.join();
  EXPECT_TRUE(got == data);
  ::close(sv[1]);
  uint8_t b;
  EXPECT_FALSE(in.Read(&b, 1));  // EOF
  ::close(sv[0]);
}

// After a large payload the next header is read alone, so the following payload is not pulled
// into the buffer (and copied out again) but left in the socket for a direct read.
TEST(BufferedReaderTest, AfterALargePayloadTheNextHeaderIsReadAlone) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  SocketTransport socket(sv[0]);
  BufferedReader in(socket, 64 << 10);
  const std::vector<uint8_t> header(kRequestBytes, 0x11), payload(40 << 10, 0x22);
  uint8_t h[kRequestBytes];
  ASSERT_TRUE(WriteFull(sv[1], header.data(), header.size()));
  ASSERT_TRUE(in.Read(h, sizeof(h)));
  ASSERT_TRUE(WriteFull(sv[1], payload.data(), payload.size()));
  ASSERT_TRUE(WriteFull(sv[1], header.data(), header.size()));
  ASSERT_TRUE(WriteFull(sv[1], payload.data(), payload.size()));
  std::vector<uint8_t> p(payload.size());
  ASSERT_TRUE(in.Read(p.data(), p.size()));
  EXPECT_TRUE(p == payload);
  ASSERT_TRUE(in.Read(h, sizeof(h)));
  EXPECT_EQ(h[0], 0x11);
  int left = -1;
  ASSERT_EQ(::ioctl(sv[0], FIONREAD, &left), 0);
  EXPECT_EQ(left, static_cast<int>(payload.size())) << "the header refill took part of the next payload";
  ASSERT_TRUE(in.Read(p.data(), p.size()));
  EXPECT_TRUE(p == payload);
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace tmem::nbd
