#include "common/flags.h"

#include <gtest/gtest.h>

namespace tmem {
namespace {

TEST(ParseSizeTest, AcceptsUnitsAndRejectsGarbage) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("64K"), 64u << 10);
  EXPECT_EQ(*ParseSize("1M"), 1u << 20);
  EXPECT_EQ(*ParseSize("10G"), 10ull << 30);
  EXPECT_EQ(*ParseSize("2TiB"), 2ull << 40);
  EXPECT_EQ(*ParseSize("3gb"), 3ull << 30);
  for (const char* bad : {"", "G", "10X", "1.5G", "-1", "99999999999999999999", "20000000T"}) {
    EXPECT_EQ(ParseSize(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(FlagsTest, ParsesBothFormsAndRejectsUnknownFlags) {
  const char* argv[] = {"tool", "format", "--device=/x", "--size", "1G", "--force", "extra"};
  auto f = Flags::Parse(7, const_cast<char**>(argv), 1, {"device", "size"}, {"force"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->Get("device"), "/x");
  EXPECT_EQ(*f->GetSize("size", 0), 1ull << 30);
  EXPECT_TRUE(f->Has("force"));
  EXPECT_EQ(f->positional(), (std::vector<std::string>{"format", "extra"}));
  EXPECT_EQ(f->Require("missing").status().code(), absl::StatusCode::kInvalidArgument);

  const char* bad[] = {"tool", "--devise=/x"};
  auto g = Flags::Parse(2, const_cast<char**>(bad), 1, {"device"}, {});
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find("--devise"), std::string::npos);

  const char* dangling[] = {"tool", "--device"};
  EXPECT_FALSE(Flags::Parse(2, const_cast<char**>(dangling), 1, {"device"}, {}).ok());

  const char* num[] = {"tool", "--count=12a"};
  auto h = Flags::Parse(2, const_cast<char**>(num), 1, {"count"}, {});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->GetUint("count", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tmem
