//! Image sources: parsing image references, finding the running container's
//! image, importing into the composefs repository, and extracting parts of an
//! image (such as `/var`) onto disk.

pub mod containerenv;
pub mod extract;
pub mod imgref;
pub mod import;
pub mod registry;
pub mod tools;
