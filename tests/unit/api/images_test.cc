// The progress stream's lines (api/images.h): what corrald writes is what the CLI reads back.
#include "api/images.h"

#include <gtest/gtest.h>

#include "api/api.h"

namespace corral::api {
namespace {

TEST(ProgressStream, ProgressLinesRoundTrip) {
  ProgressEvent event{"fetching layer 2/3", 1234, 99999, 1, 3};
  auto line = parseStreamLine(progressJson(event).dump());
  ASSERT_TRUE(line) << line.error().message();
  EXPECT_EQ(line->kind, StreamLine::Kind::progress);
  EXPECT_EQ(line->progress, event);
}

TEST(ProgressStream, TheResultAndTheErrorEndAStream) {
  auto result = parseStreamLine(R"({"image": {"name": "app", "digest": "sha256:00"}})");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->kind, StreamLine::Kind::result);
  EXPECT_EQ(result->result["name"], "app");

  Error sent = invalidField("layer", "pull 127.0.0.1:5000/app:1: layer 2/2 sha256:ab: truncated gzip");
  auto error = parseStreamLine(errorJson(sent).dump());
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind, StreamLine::Kind::error);
  ASSERT_TRUE(error->error);
  EXPECT_EQ(error->error->kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(error->error->message(), sent.message());
  EXPECT_EQ(error->error->field(), "layer");
}

TEST(ProgressStream, AnythingElseIsRefused) {
  for (const char* bad : {"", "not json", "[]", R"({"progress": {"bytes_done": 1}})", R"({"other": {}})",
                          R"({"image": {}, "progress": {"step": "x"}})"}) {
    SCOPED_TRACE(bad);
    auto line = parseStreamLine(bad);
    ASSERT_FALSE(line);
    EXPECT_EQ(line.error().field(), "stream");
  }
}

}  // namespace
}  // namespace corral::api
