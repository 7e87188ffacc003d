// The registry v2 client (see registry.h).
#include "images/oci/registry.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/text.h"

namespace corral::images {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMaxDocumentBytes = 4 << 20;

void initCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string base64Decode(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  int length =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (length < 0) return {};
  size_t padding = 0;
  for (size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) ++padding;
  out.resize(static_cast<size_t>(length) - std::min<size_t>(padding, 2));
  return out;
}

// The Authorization header value of HTTP basic auth (RFC 7617).
std::string basicAuthorization(const Credentials& credentials) {
  std::string plain = credentials.username + ":" + credentials.password;
  std::string encoded(4 * ((plain.size() + 2) / 3) + 1, '\0');
  int length =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                      reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size()));
  encoded.resize(static_cast<size_t>(length));
  return "Basic " + encoded;
}

std::string urlEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

struct Registry::Response {
  long status = 0;
  std::string body;  // documents and error bodies; blobs go to the sink
  std::string contentType;
  std::string wwwAuthenticate;
};

std::optional<Challenge> parseChallenge(std::string_view header) {
  size_t space = header.find(' ');
  if (space == std::string_view::npos || space == 0) return std::nullopt;
  Challenge challenge;
  challenge.scheme = std::string(header.substr(0, space));
  std::string_view rest = header.substr(space + 1);
  while (!rest.empty()) {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == ',')) rest.remove_prefix(1);
    size_t equals = rest.find('=');
    if (equals == std::string_view::npos) break;
    std::string key = lower(rest.substr(0, equals));
    rest.remove_prefix(equals + 1);
    std::string value;
    if (!rest.empty() && rest.front() == '"') {
      rest.remove_prefix(1);
      while (!rest.empty() && rest.front() != '"') {
        if (rest.front() == '\\' && rest.size() > 1) rest.remove_prefix(1);
        value += rest.front();
        rest.remove_prefix(1);
      }
      if (!rest.empty()) rest.remove_prefix(1);
    } else {
      size_t end = rest.find(',');
      value = std::string(rest.substr(0, end));
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    }
    challenge.parameters[key] = value;
  }
  return challenge;
}

Result<std::optional<Credentials>> credentialsFor(const fs::path& authFile, std::string_view registry) {
  if (authFile.empty() || !fs::exists(authFile)) return std::optional<Credentials>();
  std::ifstream in(authFile);
  json config = json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return fail(invalidField("auth_file", "\"{}\" is not a JSON object", authFile.string()));
  }
  auto auths = config.find("auths");
  if (auths == config.end() || !auths->is_object()) return std::optional<Credentials>();
  std::vector<std::string> keys{std::string(registry), "https://" + std::string(registry),
                                "http://" + std::string(registry)};
  if (registry == "docker.io") keys.push_back("https://index.docker.io/v1/");
  for (const std::string& key : keys) {
    auto entry = auths->find(key);
    if (entry == auths->end() || !entry->is_object()) continue;
    Credentials credentials;
    if (entry->contains("auth") && (*entry)["auth"].is_string()) {
      std::string decoded = base64Decode((*entry)["auth"].get<std::string>());
      size_t colon = decoded.find(':');
      if (colon == std::string::npos) {
        return fail(invalidField("auth_file", "\"{}\": auths[\"{}\"].auth is not base64 of user:password",
                                 authFile.string(), terminalSafe(key)));
      }
      credentials.username = decoded.substr(0, colon);
      credentials.password = decoded.substr(colon + 1);
    } else {
      credentials.username = entry->value("username", "");
      credentials.password = entry->value("password", "");
    }
    if (!credentials.username.empty()) return std::optional<Credentials>(credentials);
  }
  return std::optional<Credentials>();
}

Registry::Registry(Reference reference, RegistryOptions options)
    : reference_(std::move(reference)), options_(std::move(options)), scheme_("https") {
  initCurlOnce();
}
Registry::~Registry() = default;

std::string Registry::baseUrl() const {
  return fmt::format("{}://{}/v2/{}", scheme_, reference_.apiHost(), reference_.repository);
}

namespace {

struct TransferState {
  std::string* body;
  BlobStore::Writer* sink;
  std::optional<Error> sinkError;
  const std::function<void(int64_t)>* progress;
  int64_t received = 0;
  long status = 0;
  CURL* curl = nullptr;
};

size_t onBody(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  size_t bytes = size * count;
  if (state->status == 0) curl_easy_getinfo(state->curl, CURLINFO_RESPONSE_CODE, &state->status);
  // Only a successful answer is the blob; an error page goes to the body for the message.
  if (state->sink && state->status >= 200 && state->status < 300) {
    if (auto written = state->sink->write(std::as_bytes(std::span(data, bytes))); !written) {
      state->sinkError = written.error();
      return 0;  // aborts the transfer
    }
  } else {
    if (state->body->size() + bytes > kMaxDocumentBytes) {
      state->sinkError =
          invalidField("size", "the registry's answer is larger than {} bytes", kMaxDocumentBytes);
      return 0;
    }
    state->body->append(data, bytes);
  }
  state->received += static_cast<int64_t>(bytes);
  if (state->progress && *state->progress) (*state->progress)(state->received);
  return bytes;
}

}  // namespace

Result<Registry::Response> Registry::getOnce(const std::string& url, const std::string& accept,
                                             BlobStore::Writer* sink,
                                             const std::function<void(int64_t)>& progress) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) return fail(internalError("curl_easy_init failed"));
  Response response;
  TransferState state{&response.body, sink, std::nullopt, &progress, 0, 0, curl.get()};
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(nullptr, &curl_slist_free_all);
  auto addHeader = [&](const std::string& header) {
    headers.reset(curl_slist_append(headers.release(), header.c_str()));
  };
  if (!accept.empty()) addHeader("Accept: " + accept);
  if (!authorization_.empty()) addHeader("Authorization: " + authorization_);
  struct HeaderState {
    Response* response;
  } headerState{&response};
  auto onHeader = +[](char* data, size_t size, size_t count, void* user) -> size_t {
    auto* hs = static_cast<HeaderState*>(user);
    std::string_view line(data, size * count);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string name = lower(line.substr(0, colon));
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.remove_suffix(1);
      // After a redirect the last response's headers win.
      if (name == "content-type") hs->response->contentType = std::string(value);
      if (name == "www-authenticate") hs->response->wwwAuthenticate = std::string(value);
    }
    return size * count;
  };
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, &onBody);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &state);
  // Called about once a second even while nothing arrives: a stalled blob is abandoned as soon as its
  // writer is stopped (the API client went away), not after the low-speed timeout.
  auto onTransferInfo = +[](void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
    auto* transfer = static_cast<TransferState*>(user);
    if (transfer->sink && transfer->sink->stopRequested()) {
      transfer->sinkError = operationCancelled();
      return 1;  // aborts the transfer
    }
    return 0;
  };
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, onTransferInfo);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &state);
  curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_HEADERFUNCTION, onHeader);
  curl_easy_setopt(curl.get(), CURLOPT_HEADERDATA, &headerState);
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);  // blobs are often redirected to storage
  curl_easy_setopt(curl.get(), CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  // A redirect never downgrades an https registry to plain HTTP (unless --insecure).
  bool plainRedirects = options_.insecure || url.starts_with("http://");
  curl_easy_setopt(curl.get(), CURLOPT_REDIR_PROTOCOLS_STR, plainRedirects ? "http,https" : "https");
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, options_.timeoutSeconds);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 30L);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "corral/" CORRAL_VERSION);
  if (!options_.caFile.empty()) curl_easy_setopt(curl.get(), CURLOPT_CAINFO, options_.caFile.c_str());
  if (options_.insecure) {
    curl_easy_setopt(curl.get(), CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl.get(), CURLOPT_SSL_VERIFYHOST, 0L);
  }
  CURLcode code = curl_easy_perform(curl.get());
  if (state.sinkError) return fail(*state.sinkError);
  if (code != CURLE_OK) {
    return fail(unavailable("GET {}: {}", url, curl_easy_strerror(code)));
  }
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

Status Registry::authorize(const std::string& header) {
  auto challenge = parseChallenge(header);
  if (!challenge)
    return fail(unavailable("registry {} asks for authentication it does not describe", reference_.registry));
  auto credentials = credentialsFor(options_.authFile, reference_.registry);
  if (!credentials) return fail(credentials.error());
  std::string scheme = lower(challenge->scheme);
  if (scheme == "basic") {
    if (!*credentials) {
      return fail(forbidden(
          "registry {} needs a user name and password; none for it in {}", reference_.registry,
          options_.authFile.empty() ? std::string("(no credentials file)") : options_.authFile.string()));
    }
    authorization_ = basicAuthorization(**credentials);
    return {};
  }
  if (scheme != "bearer") {
    return fail(unavailable("registry {} wants \"{}\" authentication, which corral does not speak",
                            reference_.registry, terminalSafe(challenge->scheme)));
  }
  auto realm = challenge->parameters.find("realm");
  if (realm == challenge->parameters.end() || realm->second.empty()) {
    return fail(unavailable("registry {}: a bearer challenge without a realm", reference_.registry));
  }
  std::string url = realm->second;
  if (!url.starts_with("https://") &&
      !(url.starts_with("http://") && (options_.insecure || isLoopbackRegistry(reference_.registry)))) {
    return fail(unavailable("registry {}: token service \"{}\" is not https", reference_.registry,
                            terminalSafe(url)));
  }
  char separator = url.find('?') == std::string::npos ? '?' : '&';
  if (auto service = challenge->parameters.find("service"); service != challenge->parameters.end()) {
    url += fmt::format("{}service={}", separator, urlEncode(service->second));
    separator = '&';
  }
  std::string scope = fmt::format("repository:{}:pull", reference_.repository);
  if (auto asked = challenge->parameters.find("scope"); asked != challenge->parameters.end())
    scope = asked->second;
  url += fmt::format("{}scope={}", separator, urlEncode(scope));
  // The token request itself: anonymous, or with basic credentials when the file has them.
  std::string saved = std::exchange(authorization_, "");
  if (*credentials) {
    authorization_ = basicAuthorization(**credentials);
  }
  auto response = getOnce(url, "application/json", nullptr, {});
  authorization_ = saved;
  if (!response) return fail(response.error().wrap("token"));
  if (response->status != 200) {
    return fail(forbidden("registry {}: the token service answered {} for {}", reference_.registry,
                          response->status, scope));
  }
  json token = json::parse(response->body, nullptr, false);
  std::string value;
  if (token.is_object()) {
    if (token.contains("token") && token["token"].is_string())
      value = token["token"].get<std::string>();
    else if (token.contains("access_token") && token["access_token"].is_string())
      value = token["access_token"].get<std::string>();
  }
  if (value.empty())
    return fail(unavailable("registry {}: the token service sent no token", reference_.registry));
  authorization_ = "Bearer " + value;
  return {};
}

Result<Registry::Response> Registry::get(const std::string& path, const std::string& accept,
                                         BlobStore::Writer* sink,
                                         const std::function<void(int64_t)>& progress) {
  bool plainAllowed = options_.insecure || isLoopbackRegistry(reference_.registry);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto response = getOnce(baseUrl() + path, accept, sink, progress);
    if (!response && plainAllowed && scheme_ == "https" && (sink == nullptr || sink->written() == 0)) {
      // A loopback (or --insecure) registry that does not speak TLS: the same request over plain HTTP.
      scheme_ = "http";
      continue;
    }
    if (!response) return fail(response.error());
    if (response->status == 401 && !response->wwwAuthenticate.empty() && attempt < 2) {
      if (auto authorized = authorize(response->wwwAuthenticate); !authorized)
        return fail(authorized.error());
      continue;
    }
    return response;
  }
  return fail(forbidden("registry {} refused the credentials it asked for", reference_.registry));
}

namespace {

Error errorFor(const Reference& reference, long status, std::string_view what, std::string_view body) {
  // The distribution API's error body: {"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}
  std::string detail;
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("errors") && parsed["errors"].is_array() &&
      !parsed["errors"].empty()) {
    const json& first = parsed["errors"][0];
    if (first.is_object())
      detail = fmt::format(": {} {}", first.value("code", ""), first.value("message", ""));
  }
  std::string message = fmt::format("{} {}: {} answered {}{}", reference.text(), what, reference.registry,
                                    status, terminalSafe(detail));
  if (status == 404) return Error(ErrorKind::NotFound, message);
  if (status == 401 || status == 403) return Error(ErrorKind::Forbidden, message);
  return Error(ErrorKind::Unavailable, message);
}

}  // namespace

Result<ImageSource::Document> Registry::manifest(std::string_view reference) {
  auto response =
      get(fmt::format("/manifests/{}", reference), std::string(media::kManifestAccept), nullptr, {});
  if (!response) return fail(response.error());
  if (response->status != 200) {
    return fail(errorFor(reference_, response->status, fmt::format("manifest {}", terminalSafe(reference)),
                         response->body));
  }
  return Document{std::move(response->body), std::move(response->contentType)};
}

Status Registry::blob(const Descriptor& descriptor, BlobStore::Writer& writer,
                      const std::function<void(int64_t)>& progress) {
  auto response = get(fmt::format("/blobs/{}", descriptor.digest.text()), "", &writer, progress);
  if (!response) return fail(response.error());
  if (response->status != 200) {
    return fail(errorFor(reference_, response->status, fmt::format("blob {}", descriptor.digest.text()),
                         response->body));
  }
  return {};
}

}  // namespace corral::images
