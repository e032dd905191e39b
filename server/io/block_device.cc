#include "server/io/block_device.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/mutex.h"

namespace tmem::io {

absl::Status CheckIo(const BlockDevice& dev, uint64_t offset, const void* buf, size_t len) {
  const uint64_t a = dev.alignment();
  if (offset % a != 0 || len % a != 0 || reinterpret_cast<uintptr_t>(buf) % a != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unaligned I/O on ", dev.Describe(), ": offset ", offset, ", length ", len, ", alignment ", a));
  }
  if (offset > dev.size_bytes() || len > dev.size_bytes() - offset) {
    return absl::OutOfRangeError(
        absl::StrCat("I/O past the end of ", dev.Describe(), ": offset ", offset, " + ", len, " > ", dev.size_bytes()));
  }
  return absl::OkStatus();
}

void BlockDevice::ReadMany(std::span<ReadOp> ops) {
  for (ReadOp& op : ops) op.status = Read(op.offset, op.buf, op.len);
}

namespace {

// The default ReadQueue: one thread of its own runs the batches in order through ReadMany.
class ThreadReadQueue final : public ReadQueue {
 public:
  ThreadReadQueue(BlockDevice* device, int event_fd) : device_(device), event_fd_(event_fd) {
    worker_ = std::thread([this] { Work(); });
  }
  ~ThreadReadQueue() override {
    {
      MutexLock lock(&mu_);
      stop_ = true;
      cv_.SignalAll();
    }
    worker_.join();  // after the batches queued before
    ::close(event_fd_);
  }
  void Submit(std::span<BlockDevice::ReadOp> ops, uint64_t tag) override {
    MutexLock lock(&mu_);
    todo_.emplace_back(ops, tag);
    ++in_flight_;
    cv_.SignalAll();
  }
  void Reap(std::vector<uint64_t>* done) override {
    uint64_t n;
    [[maybe_unused]] ssize_t r = ::read(event_fd_, &n, sizeof(n));
    MutexLock lock(&mu_);
    in_flight_ -= done_.size();
    done->insert(done->end(), done_.begin(), done_.end());
    done_.clear();
  }
  int event_fd() const override { return event_fd_; }
  size_t in_flight() const override {
    MutexLock lock(&mu_);
    return in_flight_;
  }

 private:
  void Work() {
    while (true) {
      std::pair<std::span<BlockDevice::ReadOp>, uint64_t> batch;
      {
        MutexLock lock(&mu_);
        while (todo_.empty() && !stop_) cv_.Wait(&mu_);
        if (todo_.empty()) return;
        batch = todo_.front();
        todo_.pop_front();
      }
      device_->ReadMany(batch.first);
      {
        MutexLock lock(&mu_);
        done_.push_back(batch.second);
      }
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t w = ::write(event_fd_, &one, sizeof(one));
    }
  }

  BlockDevice* const device_;
  const int event_fd_;
  std::thread worker_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<std::pair<std::span<BlockDevice::ReadOp>, uint64_t>> todo_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> done_ ABSL_GUARDED_BY(mu_);
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

std::unique_ptr<ReadQueue> BlockDevice::NewReadQueue() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return nullptr;
  return std::make_unique<ThreadReadQueue>(this, fd);
}

absl::Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    case EAGAIN:
    case EINTR:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

AlignedBuffer::AlignedBuffer(size_t size, size_t alignment) : size_(AlignUp(size, alignment)) {
  if (size_ == 0) return;
  void* p = nullptr;
  if (posix_memalign(&p, alignment, size_) != 0) throw std::bad_alloc();
  std::memset(p, 0, size_);
  data_ = static_cast<uint8_t*>(p);
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

}  // namespace tmem::io
