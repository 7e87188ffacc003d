// Instance metadata at 169.254.169.254, IMDSv2-style: an instance asks the platform who it is. corrald
// listens on 169.254.169.254:80 inside each VPC's namespace (the address on the router's lo: instances
// reach it through their default route, the router answers it itself), and knows the asker by (VPC,
// source address), which the port guards make unforgeable. `PUT /latest/api/token` with
// `X-aws-ec2-metadata-token-ttl-seconds: 1..21600` gives a token bound to that (VPC, address); every GET
// needs it in `X-aws-ec2-metadata-token` (401 without, or with another instance's). Every packet the
// listener sends leaves with IP TTL 1 (AWS's default hop limit of 1): an instance gets its answers, a
// namespace or guest it forwards for does not, so nothing nested behind it can get a token.
//
// The answers are pure (answerMetadata, unit-tested); the server is the asio side.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace corral::daemon {

inline constexpr const char* kMetadataAddress = "169.254.169.254";
inline constexpr uint16_t kMetadataPort = 80;
inline constexpr int64_t kMaxMetadataTokenTtlSeconds = 21600;  // AWS's: 6 hours

// What an instance may learn about itself.
struct MetadataIdentity {
  std::string instanceId;  // the instance's name
  std::string localIpv4;
  std::string mac;
  std::string hostname;
  std::string publicIpv4;  // empty: none (404, as in AWS)
  std::vector<std::string> securityGroups;
  std::string availabilityZone;
  std::string userData;  // decoded; empty: none (404)
};
// The instance in `vpc` with private address `source`; nullopt when there is none.
using MetadataLookup =
    std::function<std::optional<MetadataIdentity>(const std::string& vpc, const std::string& source)>;

// The user_data field of a spec: base64 of at most schema::kMaxUserDataBytes bytes; the decoded bytes, or
// InvalidArgument naming "user_data".
Result<std::string> decodeUserData(const std::string& base64);

// Tokens, each bound to the (VPC, address) it was issued to and expiring after its TTL.
class MetadataTokens {
 public:
  using Clock = std::chrono::steady_clock;
  std::string issue(const std::string& vpc, const std::string& source, std::chrono::seconds ttl,
                    Clock::time_point now);
  bool valid(const std::string& token, const std::string& vpc, const std::string& source,
             Clock::time_point now);

 private:
  struct Grant {
    std::string vpc;
    std::string source;
    Clock::time_point expires;
  };
  std::mutex mutex_;
  std::map<std::string, Grant> grants_;
};

struct MetadataRequest {
  std::string method;  // "GET", "PUT", ...
  std::string target;  // "/latest/meta-data/local-ipv4"
  std::optional<std::string> token;
  std::optional<std::string> tokenTtl;
};
struct MetadataResponse {
  int status = 200;
  std::string body;
};
MetadataResponse answerMetadata(const MetadataRequest& request, const std::string& vpc,
                                const std::string& source, MetadataTokens& tokens,
                                const MetadataLookup& lookup, MetadataTokens::Clock::time_point now);

class InstanceMetadataServer {
 public:
  static Result<std::unique_ptr<InstanceMetadataServer>> open(MetadataLookup lookup);
  ~InstanceMetadataServer();
  InstanceMetadataServer(const InstanceMetadataServer&) = delete;
  InstanceMetadataServer& operator=(const InstanceMetadataServer&) = delete;

  // Listens in `vpc`'s namespace `netns` (adds 169.254.169.254/32 to its lo); a no-op when it already
  // does in that namespace.
  Status listen(const std::string& vpc, const std::string& netns);
  void close(const std::string& vpc);

 private:
  struct Listener;
  explicit InstanceMetadataServer(MetadataLookup lookup);
  void accept(const std::shared_ptr<Listener>& listener);

  MetadataLookup lookup_;
  MetadataTokens tokens_;
  boost::asio::io_context io_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Listener>> listeners_;  // by VPC
  std::thread thread_;
};

}  // namespace corral::daemon
