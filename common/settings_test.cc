#include "common/settings.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tmem::settings {
namespace {

TEST(SettingsTest, IntegersTakeASignAndHexAndRefuseTheRest) {
  EXPECT_EQ(*ParseInt("42"), 42);
  EXPECT_EQ(*ParseInt("+5"), 5);
  EXPECT_EQ(*ParseInt("-7"), -7);
  EXPECT_EQ(*ParseInt("0x10"), 16);
  EXPECT_EQ(*ParseInt("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(*ParseInt("9223372036854775807"), INT64_MAX);
  for (const char* bad : {"", "+", "1.5", "12ms", "0x", " 3", "9223372036854775808", "ten"}) {
    EXPECT_FALSE(ParseInt(bad).ok()) << bad;
  }
}

TEST(SettingsTest, BooleansTakeTheYamlSpellingsInOneCase) {
  for (const char* yes : {"true", "True", "TRUE", "yes", "Yes", "y", "Y", "on", "ON", "1"}) {
    EXPECT_TRUE(*ParseBool(yes)) << yes;
  }
  for (const char* no : {"false", "False", "FALSE", "no", "NO", "n", "off", "Off", "0"}) {
    EXPECT_FALSE(*ParseBool(no)) << no;
  }
  for (const char* bad : {"tRuE", "yep", "", "2", "enabled"}) EXPECT_FALSE(ParseBool(bad).ok()) << bad;
}

TEST(SettingsTest, SizesAndListsRoundTrip) {
  EXPECT_EQ(*ParseSizeValue("64M"), uint64_t{64} << 20);
  EXPECT_FALSE(ParseSizeValue("64Q").ok());
  EXPECT_EQ(ShowSize(uint64_t{64} << 20), "64M");
  EXPECT_EQ(ShowSize(1536), "1536");  // not a whole number of any unit
  EXPECT_EQ(ShowSize(0), "0");
  EXPECT_EQ(SplitList(" a:1 , b:2,,"), (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_TRUE(SplitList("").empty());
  EXPECT_EQ(JoinList({"a", "b"}), "a,b");
}

struct Thing {
  int count = 3;
  uint64_t bytes = 4096;
  bool on = false;
  std::string name = "x";
};

TEST(SettingsTest, ATableSetsChecksAndShowsEachKindAndNamesTheCulprit) {
  Table<Thing> t;
  t.Int("count", "count", &Thing::count, 1, 10, "How many.")
      .Size("bytes", "bytes", &Thing::bytes, 512, uint64_t{1} << 20, "How big.")
      .Bool("on", "", &Thing::on, "Whether.")
      .String("name", "name", &Thing::name, "What.", "",
              [](const std::string& v) { return v.empty() ? absl::InvalidArgumentError("empty") : absl::OkStatus(); });
  Thing v;
  ASSERT_TRUE(t.Validate(v).ok());
  EXPECT_EQ(t.Find("bytes")->show(v), "4K");
  EXPECT_EQ(t.FindFlag("count")->key, "count");
  EXPECT_EQ(t.FindFlag("on"), nullptr) << "a setting without a flag has none";
  absl::Status st = t.Set(v, *t.Find("count"), "11", "config count");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "config count: 11 is outside 1..10");
  EXPECT_EQ(v.count, 3) << "a refused value changed the setting";
  st = t.Set(v, *t.Find("bytes"), "2M", "--bytes");
  EXPECT_EQ(st.message(), "--bytes: 2M is outside 512..1M");
  ASSERT_TRUE(t.Set(v, *t.Find("bytes"), "1M", "--bytes").ok());
  EXPECT_EQ(v.bytes, uint64_t{1} << 20);
  ASSERT_TRUE(t.Set(v, *t.Find("on"), "Yes", "on").ok());
  EXPECT_TRUE(v.on);
  EXPECT_FALSE(t.Set(v, *t.Find("name"), "", "name").ok());
  v.count = 0;  // set behind the table's back: Validate finds it
  EXPECT_EQ(t.Validate(v, "thing ").message(), "thing count: 0 is outside 1..10");
}

}  // namespace
}  // namespace tmem::settings
