//! cbootc: install and update image-based Linux systems built on composefs.
//!
//! The library is layered the way a deployment flows:
//! image source ([`image`]) → composefs repository ([`repo`]) → deployment
//! state ([`deploy`]) → boot entries and bootloader ([`boot`]) → disk
//! ([`disk`]). The binary's subcommands (`src/cmd/`) only parse arguments and
//! call into these layers.

#![deny(unsafe_code)]

pub mod boot;
pub mod deploy;
pub mod disk;
pub mod host;
pub mod image;
pub mod install;
pub mod repo;
pub mod util;
