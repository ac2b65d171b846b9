//! The SSH runtime against real sshd hosts in network namespaces (skipped loudly without root
//! or `ip netns`; an error with SKY_REQUIRE_EMULATORS=1).

mod runner;
mod session;
