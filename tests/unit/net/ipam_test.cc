// Subnet IPAM: AWS reservations, deterministic allocation, specific requests, release and leases.
#include "net/ipam.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace corral::net {
namespace {

Ipv4Address addr(std::string_view text) {
  return Ipv4Address::parse(text).value();
}
Cidr cidr(std::string_view text) {
  return Cidr::parse(text).value();
}

std::vector<std::string> strings(const std::vector<Ipv4Address>& addresses) {
  std::vector<std::string> out;
  for (Ipv4Address a : addresses) out.push_back(a.str());
  return out;
}

TEST(SubnetIpam, CountsUsableAddressesAfterAwsReservations) {
  struct Case {
    std::string subnet;
    uint64_t usable;
  };
  for (const Case& c : std::vector<Case>{{"10.0.0.0/28", 11},
                                         {"10.0.0.0/27", 27},
                                         {"10.0.0.0/24", 251},
                                         {"10.0.0.0/16", 65531},
                                         {"10.0.0.0/29", 3},
                                         {"10.0.0.0/30", 0}}) {
    SubnetIpam pool(cidr(c.subnet));
    EXPECT_EQ(pool.usableCount(), c.usable) << c.subnet;
    EXPECT_EQ(pool.freeCount(), c.usable) << c.subnet;
  }
}

TEST(SubnetIpam, RouterAndDnsAreDotOneAndDotTwo) {
  SubnetIpam pool(cidr("10.0.1.0/24"));
  EXPECT_EQ(pool.subnet().str(), "10.0.1.0/24");
  EXPECT_EQ(pool.router().str(), "10.0.1.1");
  EXPECT_EQ(pool.dns().str(), "10.0.1.2");
}

TEST(SubnetIpam, ReservedAddresses) {
  SubnetIpam pool(cidr("10.0.1.0/24"));
  for (const char* reserved : {"10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.255"}) {
    EXPECT_TRUE(pool.isReserved(addr(reserved))) << reserved;
  }
  for (const char* usable : {"10.0.1.4", "10.0.1.100", "10.0.1.254"}) {
    EXPECT_FALSE(pool.isReserved(addr(usable))) << usable;
  }
  EXPECT_FALSE(pool.isReserved(addr("10.0.2.1"))) << "outside the subnet is not 'reserved'";
}

TEST(SubnetIpam, AllocatesTheLowestFreeAddressDeterministically) {
  SubnetIpam pool(cidr("10.0.1.0/24"));
  auto a = pool.allocate();
  auto b = pool.allocate();
  auto c = pool.allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->address().str(), "10.0.1.4");
  EXPECT_EQ(b->address().str(), "10.0.1.5");
  EXPECT_EQ(c->address().str(), "10.0.1.6");
  EXPECT_EQ(pool.freeCount(), 248u);
  EXPECT_EQ(strings(pool.allocated()), (std::vector<std::string>{"10.0.1.4", "10.0.1.5", "10.0.1.6"}));

  // A gap left by a release is filled first.
  ASSERT_TRUE(pool.release(b->keep()));
  auto d = pool.allocate();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->address().str(), "10.0.1.5");
  // Then the next one above every allocated address.
  auto e = pool.allocate();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->address().str(), "10.0.1.7");
}

TEST(SubnetIpam, LowestFreeSkipsSpecificallyRequestedAddresses) {
  SubnetIpam pool(cidr("10.0.1.0/24"));
  auto wanted = pool.allocate(addr("10.0.1.4"));
  auto wanted2 = pool.allocate(addr("10.0.1.6"));
  ASSERT_TRUE(wanted && wanted2);
  auto next = pool.allocate();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->address().str(), "10.0.1.5");
  auto after = pool.allocate();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->address().str(), "10.0.1.7");
}

TEST(SubnetIpam, ExhaustionIsAConflictSayingHowManyTheSubnetOffers) {
  SubnetIpam pool(cidr("10.0.0.16/28"));
  std::vector<IpLease> leases;
  for (int i = 0; i < 11; ++i) {
    auto lease = pool.allocate();
    ASSERT_TRUE(lease) << i << ": " << lease.error().message();
    leases.push_back(std::move(*lease));
  }
  EXPECT_EQ(leases.front().address().str(), "10.0.0.20");
  EXPECT_EQ(leases.back().address().str(), "10.0.0.30");
  EXPECT_EQ(pool.freeCount(), 0u);
  auto full = pool.allocate();
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(full.error().message().find("10.0.0.16/28 is full"), std::string::npos) << full.error().message();
  EXPECT_NE(full.error().message().find("11"), std::string::npos) << full.error().message();
}

TEST(SubnetIpam, TinySubnetOffersNothing) {
  SubnetIpam pool(cidr("10.0.0.0/30"));
  auto lease = pool.allocate();
  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(lease.error().message().find("0 usable"), std::string::npos) << lease.error().message();
}

TEST(SubnetIpam, SpecificRequestIsHonoured) {
  SubnetIpam pool(cidr("10.0.1.0/24"));
  auto lease = pool.allocate(addr("10.0.1.200"));
  ASSERT_TRUE(lease) << lease.error().message();
  EXPECT_EQ(lease->address().str(), "10.0.1.200");
  EXPECT_TRUE(pool.isAllocated(addr("10.0.1.200")));
  EXPECT_EQ(pool.freeCount(), 250u);
}

TEST(SubnetIpam, SpecificRequestIsRefusedWithTheReason) {
  SubnetIpam pool(cidr("10.0.1.0/24"));
  struct Case {
    std::string address;
    ErrorKind kind;
    std::string why;
  };
  for (const Case& c :
       std::vector<Case>{{"10.0.2.4", ErrorKind::InvalidArgument, "outside the subnet 10.0.1.0/24"},
                         {"10.0.1.0", ErrorKind::InvalidArgument, "reserved for the network address"},
                         {"10.0.1.1", ErrorKind::InvalidArgument, "reserved for the router"},
                         {"10.0.1.2", ErrorKind::InvalidArgument, "reserved for DNS"},
                         {"10.0.1.3", ErrorKind::InvalidArgument, "reserved for future use"},
                         {"10.0.1.255", ErrorKind::InvalidArgument, "reserved for the broadcast address"}}) {
    auto lease = pool.allocate(addr(c.address));
    ASSERT_FALSE(lease) << c.address;
    EXPECT_EQ(lease.error().kind(), c.kind) << c.address;
    EXPECT_EQ(lease.error().field(), "address") << c.address;
    EXPECT_NE(lease.error().message().find(c.address), std::string::npos) << lease.error().message();
    EXPECT_NE(lease.error().message().find(c.why), std::string::npos) << lease.error().message();
  }
  EXPECT_EQ(pool.freeCount(), 251u) << "refusals allocate nothing";

  auto first = pool.allocate(addr("10.0.1.50"));
  ASSERT_TRUE(first);
  auto again = pool.allocate(addr("10.0.1.50"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(again.error().message().find("10.0.1.50 is already allocated"), std::string::npos)
      << again.error().message();
}

TEST(SubnetIpam, ReleaseReturnsTheAddressAndRefusesUnknownOnes) {
  SubnetIpam pool(cidr("10.0.1.0/24"));
  Ipv4Address kept = pool.allocate(addr("10.0.1.9")).value().keep();
  EXPECT_TRUE(pool.isAllocated(kept));
  ASSERT_TRUE(pool.release(kept));
  EXPECT_FALSE(pool.isAllocated(kept));
  EXPECT_EQ(pool.freeCount(), 251u);

  auto again = pool.release(kept);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind(), ErrorKind::NotFound);
  EXPECT_NE(again.error().message().find("10.0.1.9 is not allocated"), std::string::npos)
      << again.error().message();
}

TEST(SubnetIpam, RestoreMarksAnAddressTakenWithTheSameChecks) {
  SubnetIpam pool(cidr("10.0.1.0/24"));
  ASSERT_TRUE(pool.restore(addr("10.0.1.4")));
  EXPECT_TRUE(pool.isAllocated(addr("10.0.1.4")));
  auto next = pool.allocate();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->address().str(), "10.0.1.5");

  auto twice = pool.restore(addr("10.0.1.4"));
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().kind(), ErrorKind::Conflict);
  auto reserved = pool.restore(addr("10.0.1.1"));
  ASSERT_FALSE(reserved);
  EXPECT_EQ(reserved.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_NE(reserved.error().message().find("router"), std::string::npos);
  auto outside = pool.restore(addr("192.168.0.4"));
  ASSERT_FALSE(outside);
  EXPECT_EQ(outside.error().kind(), ErrorKind::InvalidArgument);
}

TEST(IpLease, GivesTheAddressBackWhenDropped) {
  SubnetIpam pool(cidr("10.0.1.0/28"));
  {
    auto lease = pool.allocate();
    ASSERT_TRUE(lease);
    EXPECT_TRUE(pool.isAllocated(addr("10.0.1.4")));
    EXPECT_EQ(pool.freeCount(), 10u);
  }
  EXPECT_FALSE(pool.isAllocated(addr("10.0.1.4")));
  EXPECT_EQ(pool.freeCount(), 11u);
}

TEST(IpLease, KeepLeavesTheAddressAllocated) {
  SubnetIpam pool(cidr("10.0.1.0/28"));
  Ipv4Address kept;
  {
    auto lease = pool.allocate();
    ASSERT_TRUE(lease);
    kept = lease->keep();
    EXPECT_EQ(lease->address(), kept) << "the lease still reports its address";
  }
  EXPECT_EQ(kept.str(), "10.0.1.4");
  EXPECT_TRUE(pool.isAllocated(kept));
}

TEST(IpLease, MovingTransfersOwnershipOnce) {
  SubnetIpam pool(cidr("10.0.1.0/28"));
  IpLease outer;
  {
    auto lease = pool.allocate();
    ASSERT_TRUE(lease);
    IpLease moved(std::move(*lease));
    outer = std::move(moved);
  }
  EXPECT_TRUE(pool.isAllocated(addr("10.0.1.4"))) << "moved-from leases must not give the address back";
  EXPECT_EQ(outer.address().str(), "10.0.1.4");

  // Assigning over a live lease gives the old address back.
  auto second = pool.allocate();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->address().str(), "10.0.1.5");
  outer = std::move(*second);
  EXPECT_FALSE(pool.isAllocated(addr("10.0.1.4")));
  EXPECT_TRUE(pool.isAllocated(addr("10.0.1.5")));
  outer = IpLease();
  EXPECT_FALSE(pool.isAllocated(addr("10.0.1.5")));
  EXPECT_EQ(pool.freeCount(), 11u);
}

TEST(IpLease, OutlivingItsPoolIsHarmless) {
  IpLease survivor;
  {
    auto pool = std::make_unique<SubnetIpam>(cidr("10.0.1.0/28"));
    auto lease = pool->allocate();
    ASSERT_TRUE(lease);
    survivor = std::move(*lease);
  }
  EXPECT_EQ(survivor.address().str(), "10.0.1.4");
  survivor = IpLease();  // drops the lease after the pool is gone: must not touch freed memory
  SUCCEED();
}

TEST(IpLease, DefaultLeaseOwnsNothing) {
  IpLease empty;
  EXPECT_EQ(empty.address().value(), 0u);
  EXPECT_EQ(empty.keep().value(), 0u);
}

}  // namespace
}  // namespace corral::net
