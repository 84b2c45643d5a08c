//! Deployment state on the root filesystem: the per-deployment directories
//! that composefs-setup-root mounts, cbootc's own record of deployments, and
//! the tracked-image configuration.

pub mod config;
pub mod record;
pub mod state;
