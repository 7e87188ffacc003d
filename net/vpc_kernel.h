// The kernel calls convergeVpc (net/vpc_datapath.h) makes, behind one interface (ChromiumOS patchpanel's
// `System`): LinuxVpcKernel does them through net/netlink.h and net/nft.h; unit tests use a recording fake
// with a simulated namespace (tests/unit/net/fake_vpc_kernel.h), so the convergence diff runs without root.
// Every call names the namespace it acts in; the empty name is the caller's own (the host as uplink).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/netlink.h"

namespace corral::net {

class VpcKernel {
 public:
  virtual ~VpcKernel() = default;

  // ---- Named namespaces ----
  virtual bool netnsExists(const std::string& netns) = 0;
  virtual Status createNetns(const std::string& netns) = 0;
  // The namespace's identity (the nsfs inode): a namespace deleted and made again under the same name is
  // another one. nullopt when it does not exist.
  virtual std::optional<uint64_t> netnsIdentity(const std::string& netns) = 0;
  // A value per key ("net/ipv4/ip_forward"), nullopt for a key the namespace does not have.
  virtual Result<std::vector<std::optional<std::string>>> readSysctls(
      const std::string& netns, const std::vector<std::string>& keys) = 0;
  virtual Status writeSysctl(const std::string& netns, const std::string& key, const std::string& value) = 0;

  // ---- Links, addresses, routes, rules (as Netlink's calls of the same names) ----
  virtual Result<std::optional<LinkInfo>> link(const std::string& netns, const std::string& name) = 0;
  virtual Result<std::vector<LinkInfo>> links(const std::string& netns) = 0;
  virtual Status createBridge(const std::string& netns, const std::string& name) = 0;
  // A veth pair `name` (in `netns`) <-> `peer`, the peer made directly inside `peerNetns`.
  virtual Status createVethPair(const std::string& netns, const std::string& name,
                                const std::string& peerNetns, const std::string& peer) = 0;
  virtual Status deleteLink(const std::string& netns, const std::string& name) = 0;  // missing: not an error
  virtual Status setUp(const std::string& netns, const std::string& link) = 0;
  virtual Status setMaster(const std::string& netns, const std::string& link, const std::string& bridge) = 0;
  virtual Status addAddress(const std::string& netns, const std::string& link,
                            const std::string& cidrAddress) = 0;
  virtual Status deleteAddress(const std::string& netns, const std::string& link,
                               const std::string& cidrAddress) = 0;
  virtual Result<std::vector<RouteEntry>> routes(const std::string& netns, uint32_t table) = 0;
  virtual Status addRoute(const std::string& netns, const RouteEntry& route) = 0;
  virtual Status deleteRoute(const std::string& netns, const RouteEntry& route) = 0;
  virtual Result<std::vector<RuleEntry>> rules(const std::string& netns) = 0;
  virtual Status addRule(const std::string& netns, const RuleEntry& rule) = 0;
  virtual Status deleteRule(const std::string& netns, const RuleEntry& rule) = 0;

  // ---- nftables (as net/nft.h's calls of the same names) ----
  // Loads table bridge corral; returns the ports whose guards were removed.
  virtual Result<std::vector<std::string>> applyPortGuards(const std::string& netns,
                                                           const std::string& ruleset,
                                                           const std::vector<std::string>& links) = 0;
  // Replaces table inet corral.
  virtual Status applyRuleset(const std::string& netns, const std::string& ruleset) = 0;
};

// The real kernel. Keeps one route netlink socket per namespace it was asked about, for its lifetime (one
// convergence run).
class LinuxVpcKernel final : public VpcKernel {
 public:
  LinuxVpcKernel();
  ~LinuxVpcKernel() override;

  bool netnsExists(const std::string& netns) override;
  Status createNetns(const std::string& netns) override;
  std::optional<uint64_t> netnsIdentity(const std::string& netns) override;
  Result<std::vector<std::optional<std::string>>> readSysctls(const std::string& netns,
                                                              const std::vector<std::string>& keys) override;
  Status writeSysctl(const std::string& netns, const std::string& key, const std::string& value) override;
  Result<std::optional<LinkInfo>> link(const std::string& netns, const std::string& name) override;
  Result<std::vector<LinkInfo>> links(const std::string& netns) override;
  Status createBridge(const std::string& netns, const std::string& name) override;
  Status createVethPair(const std::string& netns, const std::string& name, const std::string& peerNetns,
                        const std::string& peer) override;
  Status deleteLink(const std::string& netns, const std::string& name) override;
  Status setUp(const std::string& netns, const std::string& link) override;
  Status setMaster(const std::string& netns, const std::string& link, const std::string& bridge) override;
  Status addAddress(const std::string& netns, const std::string& link,
                    const std::string& cidrAddress) override;
  Status deleteAddress(const std::string& netns, const std::string& link,
                       const std::string& cidrAddress) override;
  Result<std::vector<RouteEntry>> routes(const std::string& netns, uint32_t table) override;
  Status addRoute(const std::string& netns, const RouteEntry& route) override;
  Status deleteRoute(const std::string& netns, const RouteEntry& route) override;
  Result<std::vector<RuleEntry>> rules(const std::string& netns) override;
  Status addRule(const std::string& netns, const RuleEntry& rule) override;
  Status deleteRule(const std::string& netns, const RuleEntry& rule) override;
  Result<std::vector<std::string>> applyPortGuards(const std::string& netns, const std::string& ruleset,
                                                   const std::vector<std::string>& links) override;
  Status applyRuleset(const std::string& netns, const std::string& ruleset) override;

 private:
  Result<Netlink*> socketIn(const std::string& netns);
  std::map<std::string, Netlink> sockets_;
};

}  // namespace corral::net
