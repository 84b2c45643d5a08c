//! The target disk: partition layout, GPT, loop devices, filesystems, mounts.
//!
//! Partitions are reached through loop devices with an offset and size limit
//! (set by ioctl in [`loopdev`]) rather than `/dev/sdX1` nodes, because inside
//! a privileged container udev does not run and partition nodes created after
//! the container started never appear in its `/dev`.

pub mod fat;
pub mod gpt;
pub mod layout;
pub mod loopdev;
pub mod mkfs;
pub mod mount;
pub mod mountinfo;
pub mod probe;
#[cfg(test)]
mod testutil;
