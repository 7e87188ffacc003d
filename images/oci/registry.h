// A client of the OCI distribution API (registry v2) for one repository, as an ImageSource: manifests
// with the Accept list of both OCI and Docker schema 2, blobs streamed into the blob store (redirects
// followed, as registries send blobs to storage), the anonymous bearer-token challenge flow Docker Hub
// and GHCR use, and basic auth from a docker-style credentials file. HTTPS with the system's CAs; plain
// HTTP only for loopback registries or when `insecure` is set. libcurl underneath.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "images/oci/image_store.h"
#include "images/oci/reference.h"

namespace corral::images {

struct Credentials {
  std::string username;
  std::string password;
};

struct RegistryOptions {
  bool insecure = false;  // allow plain HTTP and unverified TLS for any registry
  // A docker config.json ({"auths": {"host": {"auth": base64(user:pass)}}}); empty: none.
  std::filesystem::path authFile;
  std::filesystem::path caFile;  // an extra CA bundle (a private registry's); empty: the system's
  long timeoutSeconds = 600;     // per request; a stalled transfer (< 1 KiB/s for 30 s) fails sooner
};

// The credentials `authFile` holds for `registry` (docker.io also under https://index.docker.io/v1/).
Result<std::optional<Credentials>> credentialsFor(const std::filesystem::path& authFile,
                                                  std::string_view registry);

// One WWW-Authenticate challenge: the scheme ("Bearer", "Basic") and its parameters (realm, service,
// scope). Pure, for tests.
struct Challenge {
  std::string scheme;
  std::map<std::string, std::string> parameters;
};
std::optional<Challenge> parseChallenge(std::string_view header);

class Registry : public ImageSource {
 public:
  Registry(Reference reference, RegistryOptions options);
  ~Registry() override;

  Result<Document> manifest(std::string_view reference) override;
  Status blob(const Descriptor& descriptor, BlobStore::Writer& writer,
              const std::function<void(int64_t bytes)>& progress) override;

 private:
  struct Response;
  Result<Response> get(const std::string& path, const std::string& accept, BlobStore::Writer* sink,
                       const std::function<void(int64_t)>& progress);
  Result<Response> getOnce(const std::string& url, const std::string& accept, BlobStore::Writer* sink,
                           const std::function<void(int64_t)>& progress);
  Status authorize(const std::string& challengeHeader);
  std::string baseUrl() const;

  Reference reference_;
  RegistryOptions options_;
  std::string scheme_;         // "https" or, for loopback/insecure registries that do not speak TLS, "http"
  std::string authorization_;  // the Authorization header value once a challenge was answered
};

}  // namespace corral::images
