#include "common/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tmem::crc32c {
namespace {

// Check values from RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32cTest, MatchesRfc3720Vectors) {
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<uint8_t>(i);
    dec[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(Value(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(Value(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(Value(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(Value(dec.data(), 32), 0x113FDB5Cu);
  EXPECT_EQ(Value("123456789", 9), 0xE3069283u);
}

TEST(Crc32cTest, ExtendEqualsWholeValueAndPortableEqualsHardware) {
  std::mt19937_64 rng(7);
  std::string data(70000, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  for (size_t n : {0ul, 1ul, 7ul, 8ul, 31ul, 32ul, 33ul, 4096ul, 65536ul, 69999ul}) {
    uint32_t whole = Value(data.data(), n);
    size_t cut = n / 3;
    EXPECT_EQ(Extend(Value(data.data(), cut), data.data() + cut, n - cut), whole) << n;
    EXPECT_EQ(internal::ExtendPortable(0, data.data(), n), whole) << n;
  }
}

TEST(Crc32cTest, SingleBitFlipChangesChecksum) {
  std::string page(4096, 'a');
  uint32_t good = Value(page.data(), page.size());
  page[1234] ^= 0x10;
  EXPECT_NE(Value(page.data(), page.size()), good);
}

}  // namespace
}  // namespace tmem::crc32c
