// IP address management for one subnet, with AWS's reservations: the network address, .1 (the VPC
// router), .2 (DNS), .3 (reserved for future use) and the broadcast address are never handed out.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "core/error.h"
#include "net/cidr.h"

namespace corral::net {

class SubnetIpam;

// One allocated address; gives it back to its pool when dropped unless released into the caller's keeping
// (for example once the address is persisted and owned by an instance record).
class IpLease {
 public:
  IpLease() = default;
  IpLease(const IpLease&) = delete;
  IpLease& operator=(const IpLease&) = delete;
  IpLease(IpLease&& other) noexcept;
  IpLease& operator=(IpLease&& other) noexcept;
  ~IpLease();

  Ipv4Address address() const { return address_; }
  // Keeps the address allocated after this lease is gone; returns it.
  Ipv4Address keep();

 private:
  friend class SubnetIpam;
  IpLease(std::weak_ptr<SubnetIpam*> pool, Ipv4Address address) : pool_(std::move(pool)), address_(address) {}
  void giveBack();
  std::weak_ptr<SubnetIpam*> pool_;
  Ipv4Address address_;
};

class SubnetIpam {
 public:
  explicit SubnetIpam(Cidr subnet);
  SubnetIpam(const SubnetIpam&) = delete;
  SubnetIpam& operator=(const SubnetIpam&) = delete;

  const Cidr& subnet() const { return subnet_; }
  Ipv4Address router() const;  // .1: the subnet's gateway
  Ipv4Address dns() const;     // .2
  // Addresses an instance may ever get: size - 5 (a /28 offers 11, a /24 offers 251).
  uint64_t usableCount() const;
  uint64_t freeCount() const;
  std::vector<Ipv4Address> allocated() const;
  bool isReserved(Ipv4Address address) const;
  bool isAllocated(Ipv4Address address) const;

  // The lowest free usable address (deterministic). Conflict when the subnet is full.
  Result<IpLease> allocate();
  // That exact address, or a reason: outside the subnet, reserved (and for what), or already in use.
  Result<IpLease> allocate(Ipv4Address wanted);
  // Marks an address as taken without a lease, e.g. when loading persisted state.
  Status restore(Ipv4Address address);
  // Returns an address; NotFound if it was not allocated.
  Status release(Ipv4Address address);

 private:
  Cidr subnet_;
  std::set<uint32_t> allocated_;
  std::shared_ptr<SubnetIpam*> self_;  // leases hold a weak_ptr to this, so a lease outliving its pool is harmless
};

}  // namespace corral::net
