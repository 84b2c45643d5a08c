//! Deployment state on the root filesystem: the per-deployment directories
//! that composefs-setup-root mounts, cbootc's own record of deployments, and
//! the tracked-image configuration.

pub mod boot_files;
pub mod config;
pub mod etc_merge;
pub mod lock;
pub mod prune;
pub mod record;
pub mod rollback;
pub mod stage;
pub mod state;
pub mod status;
pub mod trial;
