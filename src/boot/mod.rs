//! Boot entries and bootloaders: BLS Type 1 entries, GRUB configuration,
//! the GRUB environment block and the GRUB EFI binary.

pub mod bls;
pub mod efivars;
pub mod grub_cfg;
pub mod grub_efi;
pub mod grubenv;
pub mod menu;
pub mod os_release;
pub mod secureboot;
pub mod shim;
pub mod systemd_boot;
pub mod uki;

#[cfg(test)]
mod qemu_test;
