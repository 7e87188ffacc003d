// libFuzzer target: image references as users type them (`corral pull nginx:1.25`, docker's grammar) and
// the digests inside them (images/oci/reference.h, digest.h). Beyond the sanitizers: a refusal is the
// user's mistake, named by field; a parsed reference prints as a normal form that parses to the same
// reference and prints the same again; a parsed digest prints as exactly the text it came from.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "images/oci/digest.h"
#include "images/oci/reference.h"
#include "tests/fuzz/fuzz_check.h"

using namespace corral;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  Result<images::Reference> reference = images::parseReference(text);
  if (!reference) {
    FUZZ_REQUIRE(reference.error().kind() == ErrorKind::InvalidArgument, reference.error().message());
    FUZZ_REQUIRE(reference.error().field() == "reference", reference.error().field());
  } else {
    FUZZ_REQUIRE(!reference->registry.empty() && !reference->repository.empty(), reference->text());
    FUZZ_REQUIRE(!reference->tag.empty() || reference->digest, reference->text());
    FUZZ_REQUIRE(reference->registry != "docker.io" || reference->repository.find('/') != std::string::npos,
                 reference->text());
    std::string normal = reference->text();
    Result<images::Reference> again = images::parseReference(normal);
    FUZZ_REQUIRE(again.has_value(), normal + ": " + (again ? "" : again.error().message()));
    FUZZ_REQUIRE(*again == *reference, normal + " -> " + again->text());
    FUZZ_REQUIRE(again->text() == normal, normal + " -> " + again->text());
    FUZZ_REQUIRE(!reference->manifestReference().empty(), normal);
    (void)reference->apiHost();
    (void)images::isLoopbackRegistry(reference->registry);
  }
  (void)images::isLoopbackRegistry(text);

  Result<images::Digest> digest = images::parseDigest(text, "digest");
  if (digest) {
    FUZZ_REQUIRE(digest->text() == text, digest->text());
  } else {
    FUZZ_REQUIRE(digest.error().kind() == ErrorKind::InvalidArgument && digest.error().field() == "digest",
                 digest.error().message());
  }
  return 0;
}
