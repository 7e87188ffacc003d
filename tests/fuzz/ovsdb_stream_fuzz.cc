// libFuzzer target: what an OVSDB server sends (net/ovsdb.h), as a byte stream. The stream is split into
// JSON values whole and in chunks (sizes from the input's first byte): both give the same values and the
// same verdict. Each value goes through the table-update and transact-result decoders, and the whole stream
// is read by an OvsdbClient waiting for monitor updates over a transport that plays it back.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/ovsdb.h"
#include "tests/fuzz/fuzz_check.h"

using namespace corral;
using namespace corral::net::ovsdb;

namespace {

struct Split {
  std::vector<Json> values;
  bool failed = false;
};

Split splitInChunks(std::string_view stream, size_t chunk) {
  JsonStreamSplitter splitter;
  Split split;
  for (size_t at = 0; at < stream.size() && !split.failed; at += chunk) {
    splitter.feed(stream.substr(at, chunk));
    while (auto next = splitter.next()) {
      if (!*next) {
        split.failed = true;
        break;
      }
      FUZZ_REQUIRE(next->value().is_object() || next->value().is_array(), next->value().dump());
      split.values.push_back(std::move(next->value()));
    }
  }
  return split;
}

class PlaybackTransport final : public OvsdbTransport {
 public:
  PlaybackTransport(std::string_view stream, size_t chunk) : stream_(stream), chunk_(chunk) {}
  Status send(std::string_view bytes) override {
    FUZZ_REQUIRE(Json::accept(bytes), "the client sent invalid JSON");
    return {};
  }
  Result<std::optional<std::string>> receive(std::chrono::milliseconds) override {
    if (stream_.empty()) return fail(unavailable("end of the played-back stream"));
    std::string chunk(stream_.substr(0, chunk_));
    stream_.remove_prefix(chunk.size());
    return std::optional<std::string>(std::move(chunk));
  }

 private:
  std::string_view stream_;
  size_t chunk_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = data[0] % 16 + 1;
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  Split whole = splitInChunks(stream, stream.size() + 1);
  Split chunked = splitInChunks(stream, chunk);
  FUZZ_REQUIRE(whole.failed == chunked.failed, "chunking changed the verdict");
  FUZZ_REQUIRE(whole.values == chunked.values, "chunking changed the values");

  const std::vector<Json> operations = {insertOp("T", Json::object()), deleteOp("T", {})};
  for (const Json& value : whole.values) {
    (void)decodeTableUpdates(value, false);
    (void)decodeTableUpdates2(value);
    (void)decodeSet(value);
    (void)decodeMap(value);
    (void)decodeUuid(value);
    auto checked = checkTransactResult("Db", operations, value);
    if (!checked) FUZZ_REQUIRE(!checked.error().message().empty(), "an error without a message");
    if (value.is_object() && value.contains("params") && value["params"].is_array() &&
        value["params"].size() == 2) {
      (void)decodeTableUpdates(value["params"][1], false);
      (void)decodeTableUpdates2(value["params"][1]);
    }
  }

  OvsdbClient client(std::make_unique<PlaybackTransport>(stream, chunk), std::chrono::milliseconds(0));
  for (int i = 0; i < 1000; ++i) {  // until the stream ends (an error) or breaks
    auto update = client.nextUpdate(std::chrono::milliseconds(0));
    if (!update) break;
  }
  return 0;
}
